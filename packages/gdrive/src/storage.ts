import {
  BaseStorage,
  baseName,
  type Capabilities,
  createHttpClient,
  type Entry,
  type GetRequest,
  type GetResult,
  type HttpClient,
  isStorageError,
  joinKey,
  type Logger,
  type PutRequest,
  parentOf,
  type RetryOptions,
  retry,
  StorageError,
  type TokenSource,
  validateKey,
} from "@stowage/core";
import { type CallContext, DriveApi, type DriveFile, isBinary, isFolder } from "./api.js";
import { KeyedMutex } from "./concurrency.js";
import { DuplicateChooser, type DuplicatesPolicy } from "./duplicates.js";
import { classifyDriveResponse } from "./errors.js";
import { PathIndex } from "./path-index.js";
import { type UploadTarget, uploadContent } from "./upload.js";

/** What {@link GoogleDriveStorage} is built from; `createGoogleDriveStorage` validates it. */
export interface GoogleDriveStorageInit {
  auth: TokenSource;
  /** The root's folder names from the top (My Drive or the shared drive). */
  root: readonly string[];
  sharedDriveId?: string;
  chunkSize: number;
  duplicates: DuplicatesPolicy;
  trash: boolean;
  /** Origin (and path prefix) of the metadata API, without a trailing slash. */
  driveUrl: string;
  /** Origin (and path prefix) of the upload API, without a trailing slash. */
  uploadUrl: string;
  createRoot: boolean;
  pageSize: number;
  concurrency: number;
  retry?: RetryOptions | false;
  connectTimeoutMs?: number;
  headersTimeoutMs?: number;
  bodyTimeoutMs?: number;
  location: string;
  logger?: Logger;
}

const capabilities: Capabilities = {
  caseSensitive: true,
  rangeRead: true,
  // A multipart create is one request, and a resumable session makes (or replaces the content of)
  // the file only when its last byte arrives: nothing partial is ever visible under a key.
  atomicPut: true,
  // ifNotExists checks, then writes: another client may create the name in between.
  conditionalPut: false,
  resumableUpload: true,
  hashes: ["md5"],
  folders: "real",
};

const PROVIDER = "gdrive";

/**
 * A storage in a Google Drive folder (My Drive or a shared drive), over Drive API v3. Create it with
 * `createGoogleDriveStorage` or `connect("gdrive://…")`.
 */
export class GoogleDriveStorage extends BaseStorage {
  private readonly init: GoogleDriveStorageInit;
  private readonly http: HttpClient;
  private readonly api: DriveApi;
  private readonly index: PathIndex;
  private readonly chooser: DuplicateChooser;
  private readonly keyLocks = new KeyedMutex();
  /** The body of the put in progress, so an upload whose session expired can read it again. */
  private readonly topId: string;

  constructor(init: GoogleDriveStorageInit) {
    super({
      provider: PROVIDER,
      location: init.location,
      capabilities,
      createRoot: init.createRoot,
      logger: init.logger,
    });
    this.init = init;
    this.http = createHttpClient({
      provider: PROVIDER,
      baseUrl: init.driveUrl,
      tokenSource: init.auth,
      concurrency: init.concurrency,
      retry: init.retry,
      connectTimeoutMs: init.connectTimeoutMs,
      headersTimeoutMs: init.headersTimeoutMs,
      bodyTimeoutMs: init.bodyTimeoutMs,
      logger: this.logger,
      classify: classifyDriveResponse,
    });
    this.api = new DriveApi({ http: this.http, sharedDriveId: init.sharedDriveId, pageSize: init.pageSize });
    this.chooser = new DuplicateChooser(init.duplicates, this.logger);
    // Drive's `root` alias stands for the My Drive root anywhere an id goes (reference §B.1); a
    // shared drive's id is also the id of its root folder.
    this.topId = init.sharedDriveId ?? "root";
    this.index = new PathIndex(this.topId, {
      find: async (parentId, name, path) => {
        const folders = await this.api.findChildren(parentId, name, "folder", { operation: "resolve" });
        return this.chooser.choose(folders, {
          operation: "resolve",
          key: this.keyOfPath(path),
          kind: "folder",
        })?.id;
      },
      create: (parentId, name, path) => this.createFolder(parentId, name, path),
    });
  }

  /** The Drive path of a key's folder: the root's names, then the key's. */
  private segments(folderKey: string): string[] {
    return [...this.init.root, ...(folderKey === "" ? [] : folderKey.split("/"))];
  }

  /** A Drive path as a key when it lies below the root; its Drive path otherwise (a folder above it). */
  private keyOfPath(path: string): string {
    const root = this.init.root.join("/");
    if (root === "") return path;
    return path.startsWith(`${root}/`) ? path.slice(root.length + 1) : path;
  }

  /**
   * Creates a folder. A create whose answer was lost may still have happened; before trying again it
   * looks, so a retry never leaves two folders of one name.
   */
  private async createFolder(parentId: string, name: string, path: string): Promise<string> {
    const call: CallContext = { operation: "createFolder", key: this.keyOfPath(path) };
    const create = async () => (await this.api.createFolder(parentId, name, call)).id;
    if (this.init.retry === false) return create();
    return retry(
      async (attempt) => {
        if (attempt > 1) {
          const found = await this.api.findChildren(parentId, name, "folder", call);
          const chosen = this.chooser.choose(found, {
            operation: "createFolder",
            key: call.key!,
            kind: "folder",
          });
          if (chosen) return chosen.id;
        }
        return create();
      },
      { ...this.init.retry, context: this.context("createFolder", call.key) },
    );
  }

  /** The id of a key's folder, or undefined when it (or the root) does not exist. */
  private folderOf(key: string, operation: string, signal?: AbortSignal): Promise<string | undefined> {
    const segments = this.segments(parentOf(key));
    return this.index.resolve(segments, segments.length, signal, this.context(operation, key));
  }

  /** The one object a key stands for (the duplicates policy applied), or undefined. */
  private async findObject(
    key: string,
    operation: string,
    signal?: AbortSignal,
  ): Promise<DriveFile | undefined> {
    const folderId = await this.folderOf(key, operation, signal);
    if (folderId === undefined) return undefined;
    const call = { operation, key, signal };
    const files = await this.api.findChildren(folderId, baseName(key), "object", call);
    return this.chooser.choose(files, { operation, key, kind: "object" });
  }

  private notFound(operation: string, key: string): StorageError {
    return new StorageError({
      ...this.context(operation, key),
      code: "NotFound",
      message: "no object has this key",
    });
  }

  private toEntry(key: string, file: DriveFile): Entry {
    const entry: Entry = { key, kind: "file", size: Number(file.size ?? 0) };
    if (file.modifiedTime !== undefined) entry.modified = new Date(file.modifiedTime);
    if (file.md5Checksum !== undefined) entry.hashes = { md5: file.md5Checksum.toLowerCase() };
    return entry;
  }

  protected async statEntry(key: string, signal?: AbortSignal): Promise<Entry> {
    const file = await this.findObject(key, "stat", signal);
    if (!file) throw this.notFound("stat", key);
    return this.toEntry(key, file);
  }

  protected async getObject({ key, range, signal }: GetRequest): Promise<GetResult> {
    const file = await this.findObject(key, "get", signal);
    if (!file) throw this.notFound("get", key);
    const entry = this.toEntry(key, file);
    const size = entry.size ?? 0;
    const start = Math.min(range?.offset ?? 0, size);
    const end = range?.length === undefined ? size : Math.min(size, start + range.length);
    // Nothing to read: Drive refuses a Range on an empty file (reference §B.4), and no request is needed.
    if (end <= start) return { entry, body: new ReadableStream({ start: (c) => c.close() }) };
    const partial = start > 0 || end < size;
    const download = await this.api.download(file.id, partial ? { start, end: end - 1 } : undefined, {
      operation: "get",
      key,
      signal,
    });
    // A server may ignore Range and send the whole object (200): keep only the bytes asked for.
    const body = partial && download.status === 200 ? slice(download.body, start, end) : download.body;
    return { entry, body };
  }

  protected async putObject(request: PutRequest): Promise<Entry> {
    const { key, signal } = request;
    return this.keyLocks.run(key, () => this.putLocked(request), signal, this.context("put", key));
  }

  private async putLocked({
    key,
    source,
    size,
    contentType,
    ifNotExists,
    signal,
    rewind,
  }: PutRequest): Promise<Entry> {
    const folder = parentOf(key);
    const name = baseName(key);
    const call = { operation: "put", key, signal };
    const resolveTarget = async (): Promise<UploadTarget> => {
      const segments = this.segments(folder);
      // The root's levels must exist (nothing creates the root silently); the levels below are implicit.
      const parentId = await this.index.resolve(
        segments,
        this.init.root.length,
        signal,
        this.context("put", key),
      );
      if (parentId === undefined) throw this.folderMissing("put", key);
      const existing = this.chooser.choose(await this.api.findChildren(parentId, name, "object", call), {
        operation: "put",
        key,
        kind: "object",
      });
      if (existing && ifNotExists) {
        throw new StorageError({
          ...this.context("put", key),
          code: "AlreadyExists",
          message: "an object with this key already exists",
          hint: "delete it first or put without ifNotExists",
        });
      }
      // Replacing the content keeps the file's id, so a put never adds a second file of the name.
      return existing ? { kind: "update", fileId: existing.id } : { kind: "create", parentId, name };
    };
    const file = await uploadContent(await resolveTarget(), source, {
      http: this.http,
      uploadUrl: `${this.init.uploadUrl}/upload/drive/v3/files`,
      chunkSize: this.init.chunkSize,
      retry: this.init.retry ?? {},
      contentType: contentType ?? "application/octet-stream",
      size,
      key,
      signal,
      logger: this.logger,
      rewind,
      findCreated: async (target, bytes, md5) => {
        const files = await this.api.findChildren(target.parentId, target.name, "object", call);
        return files.find((candidate) => Number(candidate.size) === bytes && candidate.md5Checksum === md5);
      },
      retarget: async () => {
        // A folder (any level down from the root) or the file being replaced was deleted behind
        // this storage's back: forget every id below the root, and look again.
        this.index.invalidate(this.init.root.join("/"));
        return resolveTarget();
      },
    });
    return this.toEntry(key, file);
  }

  protected async deleteObject(key: string, signal?: AbortSignal): Promise<void> {
    const folderId = await this.folderOf(key, "delete", signal);
    if (folderId === undefined) return;
    const call = { operation: "delete", key, signal };
    const files = await this.api.findChildren(folderId, baseName(key), "object", call);
    // Every copy goes: deleting only the newest would let an older duplicate take the key's place.
    if (files.length > 1) {
      this.logger.warn(
        { provider: PROVIDER, key, count: files.length },
        `deleting ${files.length} files that share the name of '${key}'`,
      );
    }
    for (const file of files) {
      try {
        if (this.init.trash) await this.api.trash(file.id, call);
        else await this.api.delete(file.id, call);
      } catch (err) {
        if (!isStorageError(err, "NotFound")) throw err;
      }
    }
  }

  protected async *listEntries(
    folder: string,
    recursive: boolean,
    signal?: AbortSignal,
  ): AsyncGenerator<Entry> {
    const context = this.context("list", folder === "" ? undefined : folder);
    const segments = this.segments(folder);
    const start = await this.index.resolve(segments, segments.length, signal, context);
    // A missing folder below the root lists as nothing.
    if (start === undefined) return;
    const pending = [{ id: start, key: folder }];
    while (pending.length > 0) {
      const current = pending.shift()!;
      // Children come sorted by name, newest first, so the first of a name is the policy's choice.
      const seen = { object: new Set<string>(), folder: new Set<string>() };
      for await (const file of this.api.children(current.id, {
        operation: "list",
        key: context.key,
        signal,
      })) {
        const kind = isFolder(file) ? "folder" : isBinary(file) ? "object" : undefined;
        // Docs, Sheets, shortcuts: no bytes to read, so not objects.
        if (kind === undefined) continue;
        const key = joinKey(current.key, file.name);
        if (!this.usableName(file.name, key)) continue;
        if (seen[kind].has(file.name)) {
          this.chooser.met({ operation: "list", key, kind });
          continue;
        }
        seen[kind].add(file.name);
        if (kind === "object") yield this.toEntry(key, file);
        else if (recursive) pending.push({ id: file.id, key });
        else
          yield {
            key,
            kind: "folder",
            ...(file.modifiedTime ? { modified: new Date(file.modifiedTime) } : {}),
          };
      }
    }
  }

  /** A Drive name no key can stand for ('/' in it, a control character, …) is skipped with a warning. */
  private usableName(name: string, key: string): boolean {
    try {
      if (name.includes("/")) throw new Error("'/' in a name");
      validateKey(key);
      return true;
    } catch {
      this.logger.warn(
        { provider: PROVIDER, name },
        "skipping a Drive item whose name cannot be a key (it holds '/', a control character, or is too long)",
      );
      return false;
    }
  }

  protected async rootExists(signal?: AbortSignal): Promise<boolean> {
    const root = this.init.root;
    return (await this.index.resolve(root, root.length, signal, this.context("root"))) !== undefined;
  }

  protected async createRootFolder(signal?: AbortSignal): Promise<void> {
    await this.index.resolve(this.init.root, 0, signal, this.context("createRoot"));
  }

  /**
   * Fetches a token and makes one small call with it: a listing of My Drive's top (which any Drive
   * scope may make), or a read of the shared drive's root (which also proves access to it).
   */
  protected override async checkCredentials(signal?: AbortSignal): Promise<void> {
    const call = { operation: "test", signal };
    try {
      if (this.init.sharedDriveId === undefined) await this.api.probe(this.topId, call);
      else await this.api.get(this.topId, call);
    } catch (err) {
      if (this.init.sharedDriveId !== undefined && isStorageError(err, "NotFound")) {
        throw new StorageError({
          ...this.context("test"),
          code: "InvalidConfig",
          message: `the shared drive '${this.init.sharedDriveId}' does not exist or this account cannot see it`,
          hint: "check sharedDriveId (the id in the shared drive's web address) and that the account is a member",
          cause: err,
        });
      }
      throw err;
    }
  }

  protected override async closeProvider(): Promise<void> {
    await this.http.close();
  }
}

/** Bytes `[start, end)` of a stream that holds the whole object. */
function slice(body: ReadableStream<Uint8Array>, start: number, end: number): ReadableStream<Uint8Array> {
  let position = 0;
  return body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        const from = Math.max(0, start - position);
        const to = Math.min(chunk.byteLength, end - position);
        position += chunk.byteLength;
        if (to > from) controller.enqueue(chunk.subarray(from, to));
        if (position >= end) controller.terminate();
      },
    }),
  );
}
