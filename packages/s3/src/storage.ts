import {
  BaseStorage,
  type Capabilities,
  type Entry,
  type GetRequest,
  type GetResult,
  isStorageError,
  iterableToStream,
  joinKey,
  type PutRequest,
  StorageError,
} from "@stowage/core";
import { type CallContext, type GetResponse, type ObjectInfo, S3Api } from "./api.js";
import { createS3Client } from "./client.js";
import type { ResolvedS3Options } from "./index.js";
import { MAX_OBJECT_SIZE, uploadObject } from "./upload.js";

function toEntry(key: string, info: ObjectInfo): Entry {
  const entry: Entry = { key, kind: "file" };
  if (info.size !== undefined) entry.size = info.size;
  if (info.modified !== undefined) entry.modified = info.modified;
  if (info.etag !== undefined) entry.etag = info.etag;
  if (info.md5 !== undefined) entry.hashes = { md5: info.md5 };
  return entry;
}

/**
 * Yields `take` bytes after skipping `skip`, and stops reading there. Servers that ignore a Range
 * header (a 200 with the whole object) or widen it (s3rver answers `bytes=0-0` with everything) are
 * cut down to what was asked, so callers never see bytes they did not request.
 */
async function* slice(
  source: AsyncIterable<Uint8Array>,
  skip: number,
  take: number | undefined,
): AsyncGenerator<Uint8Array> {
  let toSkip = skip;
  let left = take ?? Number.POSITIVE_INFINITY;
  if (left <= 0) return;
  for await (const piece of source) {
    let bytes = piece;
    if (toSkip > 0) {
      if (bytes.byteLength <= toSkip) {
        toSkip -= bytes.byteLength;
        continue;
      }
      bytes = bytes.subarray(toSkip);
      toSkip = 0;
    }
    if (bytes.byteLength >= left) {
      yield bytes.subarray(0, left);
      return;
    }
    left -= bytes.byteLength;
    yield bytes;
  }
}

const emptyBody = () => new ReadableStream<Uint8Array>({ start: (controller) => controller.close() });

/**
 * A storage on an S3 bucket, under an optional key prefix. Create it with `createS3Storage` or
 * `connect("s3://bucket/prefix?…")`; see the package README for options and server quirks.
 *
 * Folders are virtual (prefixes), a put is atomic (S3 shows objects whole), and entries carry the MD5
 * when the ETag is one.
 */
export class S3Storage extends BaseStorage {
  readonly bucket: string;
  /** The key prefix of the root, without a trailing `/` (`""` for the whole bucket). */
  readonly prefix: string;
  private readonly api: S3Api;
  private readonly options: ResolvedS3Options;

  constructor(options: ResolvedS3Options) {
    const capabilities: Capabilities = {
      caseSensitive: true,
      rangeRead: true,
      atomicPut: true,
      conditionalPut: options.conditionalPut,
      resumableUpload: false,
      hashes: ["md5"],
      folders: "virtual",
      maxObjectSize: MAX_OBJECT_SIZE,
    };
    super({
      provider: "s3",
      location: options.location,
      capabilities,
      createRoot: options.createRoot,
      logger: options.logger,
    });
    this.bucket = options.bucket;
    this.prefix = options.prefix;
    this.options = options;
    const client = createS3Client({
      region: options.region,
      endpoint: options.endpoint,
      forcePathStyle: options.forcePathStyle,
      credentials: options.credentials,
      checksums: options.checksums,
      followRegionRedirects: options.followRegionRedirects,
    });
    this.api = new S3Api({
      client,
      bucket: options.bucket,
      provider: "s3",
      concurrency: options.concurrency,
      retry: options.retry,
      checksums: options.checksums,
    });
  }

  private objectKey(key: string): string {
    return joinKey(this.prefix, key);
  }

  /** The listing prefix for a folder below the root: `""` or ending with `/`. */
  private folderPrefix(folder: string): string {
    const base = joinKey(this.prefix, folder);
    return base === "" ? "" : `${base}/`;
  }

  private storageKey(objectKey: string): string {
    return this.prefix === "" ? objectKey : objectKey.slice(this.prefix.length + 1);
  }

  protected async *listEntries(
    folder: string,
    recursive: boolean,
    signal?: AbortSignal,
  ): AsyncGenerator<Entry> {
    const prefix = this.folderPrefix(folder);
    const context: CallContext = { operation: "list", ...(folder === "" ? {} : { key: folder }), signal };
    let token: string | undefined;
    // s3rver (and possibly other servers) repeats a common prefix on the next page when its keys
    // straddle the page boundary; S3 never does. Remembering the previous page's prefixes is enough to
    // drop the repeat, and keeps memory to one page.
    let previousPrefixes = new Set<string>();
    do {
      const page = await this.api.listPage(
        { prefix, delimiter: recursive ? undefined : "/", token, maxKeys: this.options.pageSize },
        context,
      );
      const currentPrefixes = new Set<string>();
      for (const common of page.prefixes) {
        currentPrefixes.add(common);
        if (previousPrefixes.has(common) || !common.startsWith(prefix)) continue;
        const key = this.storageKey(common.slice(0, -1));
        if (key !== "") yield { key, kind: "folder" };
      }
      for (const object of page.objects) {
        // A key ending in "/" is a folder marker some tools (the S3 console) create; it is no object.
        if (object.objectKey.endsWith("/") || !object.objectKey.startsWith(prefix)) continue;
        yield toEntry(this.storageKey(object.objectKey), object);
      }
      previousPrefixes = currentPrefixes;
      token = page.nextToken;
    } while (token !== undefined);
  }

  protected async statEntry(key: string, signal?: AbortSignal): Promise<Entry> {
    const info = await this.api.headObject(this.objectKey(key), { operation: "stat", key, signal });
    return toEntry(key, info);
  }

  protected async getObject({ key, range, signal }: GetRequest): Promise<GetResult> {
    const context: CallContext = { operation: "get", key, signal };
    if (range?.length === 0) {
      return { entry: await this.statEntry(key, signal), body: emptyBody() };
    }
    // A range from 0 to the end is the whole object: asking for it as a range would make S3 answer
    // 416 for an empty object.
    const header =
      range === undefined || (range.offset === 0 && range.length === undefined)
        ? undefined
        : `bytes=${range.offset}-${range.length === undefined ? "" : range.offset + range.length - 1}`;
    let response: GetResponse;
    try {
      response = await this.api.getObject(this.objectKey(key), header, context);
    } catch (err) {
      // 416: the range starts at or past the end, which reads as nothing (as a file read would).
      if (header !== undefined && isStorageError(err) && err.status === 416) {
        const entry = await this.statEntry(key, signal);
        if (range !== undefined && entry.size !== undefined && range.offset >= entry.size)
          return { entry, body: emptyBody() };
      }
      throw err;
    }
    const entry = toEntry(key, response.info);
    // An empty set, not none: core's download() treats a missing `hashes` as "any algorithm" and then
    // reads the stored digest from it (reported with a fix for core).
    entry.hashes ??= {};
    if (header === undefined) return { entry, body: iterableToStream(response.body) };
    const offset = range?.offset ?? 0;
    // Without a Content-Range the server ignored the header and sent the object from byte 0.
    const served = response.range?.start ?? 0;
    if (served > offset) {
      throw new StorageError({
        provider: this.provider,
        operation: "get",
        key,
        code: "Protocol",
        message: `asked for bytes from ${offset} but the server sent bytes from ${served}`,
      });
    }
    return { entry, body: iterableToStream(slice(response.body, offset - served, range?.length)) };
  }

  protected async putObject({
    key,
    source,
    size,
    contentType,
    ifNotExists,
    signal,
  }: PutRequest): Promise<Entry> {
    const info = await uploadObject(
      this.api,
      {
        objectKey: this.objectKey(key),
        key,
        source,
        size,
        contentType,
        // Where the server honours If-None-Match, the condition is checked atomically by the server;
        // elsewhere the base class has already checked (check-then-write, see capabilities).
        ifNoneMatch: ifNotExists && this.capabilities.conditionalPut,
        signal,
      },
      { partSize: this.options.partSize, queueSize: this.options.queueSize },
      this.logger,
    );
    return toEntry(key, info);
  }

  protected async deleteObject(key: string, signal?: AbortSignal): Promise<void> {
    await this.api.deleteObject(this.objectKey(key), { operation: "delete", key, signal });
  }

  /** Only the bucket can be missing: a prefix is part of the keys and exists as soon as a key does. */
  protected async rootExists(signal?: AbortSignal): Promise<boolean> {
    try {
      // A one-key listing of the root prefix rather than HeadBucket: its errors have a body (a HEAD
      // 403 cannot say whether the key or the policy is wrong), and policies that grant ListBucket
      // only for a prefix (s3:prefix conditions) allow it.
      await this.api.listPage({ prefix: this.folderPrefix(""), maxKeys: 1 }, { operation: "root", signal });
      return true;
    } catch (err) {
      if (isStorageError(err, "FolderMissing")) return false;
      throw err;
    }
  }

  protected async createRootFolder(signal?: AbortSignal): Promise<void> {
    const context: CallContext = { operation: "createRoot", signal };
    // AWS wants the region as LocationConstraint outside us-east-1; other servers have one region
    // and some reject a constraint they do not know.
    const constraint =
      this.options.preset === "aws" &&
      this.options.region !== undefined &&
      this.options.region !== "us-east-1"
        ? this.options.region
        : undefined;
    try {
      await this.api.createBucket(constraint, context);
    } catch (err) {
      // Someone (or an earlier attempt of this call) created it meanwhile: the root exists, as asked.
      // (s3rver says BucketAlreadyExists even for a bucket it just created for the same caller.)
      if (isStorageError(err, "Conflict") && (await this.rootExists(signal))) return;
      throw err;
    }
  }

  /**
   * Proves the credentials with a signed request: a one-key listing. A missing bucket still proves
   * them (the root step reports it); an authentication error does not.
   */
  protected override async checkCredentials(signal?: AbortSignal): Promise<void> {
    try {
      await this.api.listPage({ prefix: this.folderPrefix(""), maxKeys: 1 }, { operation: "test", signal });
    } catch (err) {
      if (isStorageError(err, "FolderMissing")) return;
      throw err;
    }
  }

  protected override async closeProvider(): Promise<void> {
    this.api.close();
  }
}
