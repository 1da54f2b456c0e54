import {
  AbortMultipartUploadCommand,
  type BucketLocationConstraint,
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import {
  abortedError,
  channels,
  createLimiter,
  isStorageError,
  type Limiter,
  publish,
  type RetryOptions,
  retry,
  StorageError,
  streamPieces,
} from "@stowage/core";
import { withSignal } from "./client.js";
import { s3ErrorCode, toS3StorageError } from "./errors.js";
import type { S3ChecksumMode } from "./presets.js";

/** What every call names: the storage operation, the storage key (for messages) and the signal. */
export interface CallContext {
  operation: string;
  key?: string;
  signal?: AbortSignal;
}

/** An object's metadata as S3 reports it. */
export interface ObjectInfo {
  size?: number;
  modified?: Date;
  etag?: string;
  /** Set only when the ETag is the MD5 of the content (see {@link md5FromEtag}). */
  md5?: string;
}

export interface ListedObject extends ObjectInfo {
  objectKey: string;
}

export interface ListPage {
  objects: ListedObject[];
  /** Common prefixes, each ending with the delimiter. */
  prefixes: string[];
  /** Present when there is a next page. */
  nextToken?: string;
}

export interface GetResponse {
  info: ObjectInfo;
  /** `Content-Range` of a ranged response, parsed. */
  range?: { start: number; end: number; total?: number };
  body: AsyncIterable<Uint8Array>;
}

export interface UploadedPart {
  PartNumber: number;
  ETag: string;
  ChecksumCRC32?: string;
}

/**
 * The MD5 an ETag stands for, when it stands for one. An ETag is the hex MD5 of the content for
 * objects uploaded in one PUT without SSE-KMS or SSE-C; a multipart ETag has a `-N` suffix, and
 * KMS/customer-key encryption makes it opaque (AWS: "Objects created by ... and encrypted by SSE-C or
 * SSE-KMS have ETags that are not an MD5 digest"). Listings carry no encryption details, so a listed
 * entry of a KMS-encrypted bucket may carry an MD5 that is not one; `get` and `stat` know better.
 */
export function md5FromEtag(
  etag: string | undefined,
  sse?: string,
  sseCustomerAlgorithm?: string,
): string | undefined {
  if (etag === undefined) return undefined;
  const match = /^"?([0-9a-fA-F]{32})"?$/.exec(etag.trim());
  if (!match) return undefined;
  if (sse === "aws:kms" || sse === "aws:kms:dsse" || sseCustomerAlgorithm) return undefined;
  return match[1]!.toLowerCase();
}

function info(
  size: number | undefined,
  modified: Date | undefined,
  etag: string | undefined,
  sse?: string,
  sseCustomerAlgorithm?: string,
): ObjectInfo {
  const out: ObjectInfo = {};
  if (size !== undefined) out.size = size;
  if (modified !== undefined) out.modified = modified;
  if (etag !== undefined) out.etag = etag;
  const md5 = md5FromEtag(etag, sse, sseCustomerAlgorithm);
  if (md5 !== undefined) out.md5 = md5;
  return out;
}

/** Parses `bytes START-END/TOTAL` (TOTAL may be `*`). */
export function parseContentRange(value: string | undefined): GetResponse["range"] {
  const match = value === undefined ? null : /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(value.trim());
  if (!match) return undefined;
  const total = match[3] === "*" ? undefined : Number(match[3]);
  return { start: Number(match[1]), end: Number(match[2]), ...(total === undefined ? {} : { total }) };
}

function isAsyncIterable(value: unknown): value is AsyncIterable<Uint8Array> {
  return typeof (value as AsyncIterable<Uint8Array> | null)?.[Symbol.asyncIterator] === "function";
}

function isWebStream(value: unknown): value is ReadableStream<Uint8Array> {
  return typeof (value as ReadableStream<Uint8Array> | null)?.getReader === "function";
}

export interface S3ApiOptions {
  client: S3Client;
  bucket: string;
  provider: string;
  /** Requests in flight at once for this storage. */
  concurrency: number;
  /** Core retry settings, or `false` for one attempt per call. */
  retry: RetryOptions | false;
  checksums: S3ChecksumMode;
}

/**
 * Typed calls to S3 for one bucket. Each call takes a slot of the storage's limiter for one attempt,
 * is retried by core's `retry` when the mapped error is retryable (the SDK's own retry is off, see
 * client.ts), maps failures through the errors table, and publishes a `stowage:request` event.
 */
export class S3Api {
  readonly bucket: string;
  private readonly client: S3Client;
  private readonly provider: string;
  private readonly limiter: Limiter;
  private readonly retryOptions: RetryOptions | false;
  private readonly checksums: S3ChecksumMode;

  constructor(options: S3ApiOptions) {
    this.client = options.client;
    this.bucket = options.bucket;
    this.provider = options.provider;
    this.limiter = createLimiter(options.concurrency);
    this.retryOptions = options.retry;
    this.checksums = options.checksums;
  }

  private async call<T>(
    context: CallContext,
    command: string,
    target: "object" | "bucket",
    send: () => Promise<T>,
  ): Promise<T> {
    const { operation, key, signal } = context;
    const where =
      key === undefined
        ? { provider: this.provider, operation }
        : { provider: this.provider, operation, key };
    const attempt = async (): Promise<T> => {
      const release = await this.limiter.acquire(signal);
      const started = performance.now();
      try {
        const result = await send();
        // Checked here so that no event object is built per request while nobody listens.
        if (channels.request.hasSubscribers) {
          publish("request", { ...where, command, ok: true, ms: Math.round(performance.now() - started) });
        }
        return result;
      } catch (err) {
        const error = signal?.aborted
          ? abortedError(where, signal.reason)
          : toS3StorageError(err, { ...where, bucket: this.bucket, target });
        if (channels.request.hasSubscribers) {
          publish("request", {
            ...where,
            command,
            ok: false,
            code: error.code,
            status: error.status,
            ms: Math.round(performance.now() - started),
          });
        }
        throw error;
      } finally {
        release();
      }
    };
    if (this.retryOptions === false) return attempt();
    return retry(attempt, { ...this.retryOptions, signal, context: where });
  }

  /** One page of ListObjectsV2. */
  async listPage(
    request: { prefix: string; delimiter?: string; token?: string; maxKeys: number },
    context: CallContext,
  ): Promise<ListPage> {
    const output = await this.call(context, "ListObjectsV2", "bucket", () =>
      this.client.send(
        new ListObjectsV2Command(
          withSignal(
            {
              Bucket: this.bucket,
              Prefix: request.prefix === "" ? undefined : request.prefix,
              Delimiter: request.delimiter,
              ContinuationToken: request.token,
              MaxKeys: request.maxKeys,
            },
            context.signal,
          ),
        ),
      ),
    );
    const objects: ListedObject[] = [];
    for (const item of output.Contents ?? []) {
      if (item.Key === undefined) continue;
      objects.push({ objectKey: item.Key, ...info(item.Size, item.LastModified, item.ETag) });
    }
    const prefixes = (output.CommonPrefixes ?? []).flatMap((p) => (p.Prefix === undefined ? [] : [p.Prefix]));
    if (output.IsTruncated && !output.NextContinuationToken) {
      throw new StorageError({
        provider: this.provider,
        operation: context.operation,
        key: context.key,
        code: "Protocol",
        message: "the server said the listing goes on but sent no continuation token",
      });
    }
    return { objects, prefixes, ...(output.IsTruncated ? { nextToken: output.NextContinuationToken } : {}) };
  }

  async headObject(objectKey: string, context: CallContext): Promise<ObjectInfo> {
    try {
      const output = await this.call(context, "HeadObject", "object", () =>
        this.client.send(
          new HeadObjectCommand(withSignal({ Bucket: this.bucket, Key: objectKey }, context.signal)),
        ),
      );
      return info(
        output.ContentLength,
        output.LastModified,
        output.ETag,
        output.ServerSideEncryption,
        output.SSECustomerAlgorithm,
      );
    } catch (err) {
      throw await this.explainForbidden(err, context);
    }
  }

  /**
   * A HEAD response has no body, so a 403 cannot say whether the key id, the secret or the policy is
   * wrong. A listing of zero keys (cheap, and its error has a body) tells: an authentication error is
   * reported instead of the bare 403; otherwise the 403 stands.
   */
  private async explainForbidden(err: unknown, context: CallContext): Promise<unknown> {
    if (
      !isStorageError(err, "PermissionDenied") ||
      err.status !== 403 ||
      s3ErrorCode(err.cause) !== undefined
    )
      return err;
    try {
      await this.listPage({ prefix: "", maxKeys: 0 }, { ...context });
    } catch (probe) {
      if (isStorageError(probe, "Unauthenticated")) return probe;
    }
    return new StorageError({
      provider: err.provider,
      operation: err.operation,
      key: err.key,
      code: "PermissionDenied",
      status: 403,
      message: "access denied (HTTP 403 on HEAD, which carries no reason; listing the bucket works)",
      hint: "check that the key's policy allows s3:GetObject on this prefix",
      cause: err,
    });
  }

  /** GetObject; `range` is an HTTP Range header value. */
  async getObject(objectKey: string, range: string | undefined, context: CallContext): Promise<GetResponse> {
    const output = await this.call(context, "GetObject", "object", () =>
      this.client.send(
        new GetObjectCommand(
          withSignal({ Bucket: this.bucket, Key: objectKey, Range: range }, context.signal),
        ),
      ),
    );
    const parsedRange = parseContentRange(output.ContentRange);
    const total = parsedRange?.total ?? (range === undefined ? output.ContentLength : undefined);
    const body: unknown = output.Body;
    let pieces: AsyncIterable<Uint8Array>;
    if (body === undefined) pieces = (async function* () {})();
    else if (isAsyncIterable(body)) pieces = body;
    else if (isWebStream(body)) pieces = streamPieces(body);
    else {
      throw new StorageError({
        provider: this.provider,
        operation: context.operation,
        key: context.key,
        code: "Protocol",
        message: "the SDK returned a body that is not a stream",
      });
    }
    return {
      info: info(
        total,
        output.LastModified,
        output.ETag,
        output.ServerSideEncryption,
        output.SSECustomerAlgorithm,
      ),
      ...(parsedRange ? { range: parsedRange } : {}),
      body: pieces,
    };
  }

  async putObject(
    request: { objectKey: string; body: Uint8Array; contentType?: string; ifNoneMatch: boolean },
    context: CallContext,
  ): Promise<ObjectInfo> {
    const output = await this.call(context, "PutObject", "object", () =>
      this.client.send(
        new PutObjectCommand(
          withSignal(
            {
              Bucket: this.bucket,
              Key: request.objectKey,
              Body: request.body,
              ContentLength: request.body.byteLength,
              ContentType: request.contentType,
              IfNoneMatch: request.ifNoneMatch ? "*" : undefined,
            },
            context.signal,
          ),
        ),
      ),
    );
    return info(
      request.body.byteLength,
      undefined,
      output.ETag,
      output.ServerSideEncryption,
      output.SSECustomerAlgorithm,
    );
  }

  async createMultipartUpload(
    request: { objectKey: string; contentType?: string },
    context: CallContext,
  ): Promise<string> {
    const output = await this.call(context, "CreateMultipartUpload", "object", () =>
      this.client.send(
        new CreateMultipartUploadCommand(
          withSignal(
            {
              Bucket: this.bucket,
              Key: request.objectKey,
              ContentType: request.contentType,
              // With flexible checksums each part carries a CRC32, which AWS accepts only when the
              // upload was created for it (as @aws-sdk/lib-storage does).
              ChecksumAlgorithm: this.checksums === "when-supported" ? ("CRC32" as const) : undefined,
            },
            context.signal,
          ),
        ),
      ),
    );
    if (!output.UploadId) {
      throw new StorageError({
        provider: this.provider,
        operation: context.operation,
        key: context.key,
        code: "Protocol",
        message: "the server started a multipart upload but sent no upload id",
      });
    }
    return output.UploadId;
  }

  async uploadPart(
    request: { objectKey: string; uploadId: string; partNumber: number; body: Uint8Array },
    context: CallContext,
  ): Promise<UploadedPart> {
    const output = await this.call(context, "UploadPart", "object", () =>
      this.client.send(
        new UploadPartCommand(
          withSignal(
            {
              Bucket: this.bucket,
              Key: request.objectKey,
              UploadId: request.uploadId,
              PartNumber: request.partNumber,
              Body: request.body,
              ContentLength: request.body.byteLength,
            },
            context.signal,
          ),
        ),
      ),
    );
    if (!output.ETag) {
      throw new StorageError({
        provider: this.provider,
        operation: context.operation,
        key: context.key,
        code: "Protocol",
        message: `the server stored part ${request.partNumber} but sent no ETag for it`,
        hint: "behind a browser or proxy, expose the ETag header (CORS ExposeHeaders)",
      });
    }
    return {
      PartNumber: request.partNumber,
      ETag: output.ETag,
      ...(output.ChecksumCRC32 ? { ChecksumCRC32: output.ChecksumCRC32 } : {}),
    };
  }

  async completeMultipartUpload(
    request: { objectKey: string; uploadId: string; parts: UploadedPart[]; ifNoneMatch: boolean },
    context: CallContext,
  ): Promise<void> {
    const parts: CompletedPart[] = [...request.parts].sort((a, b) => a.PartNumber - b.PartNumber);
    await this.call(context, "CompleteMultipartUpload", "object", () =>
      this.client.send(
        new CompleteMultipartUploadCommand(
          withSignal(
            {
              Bucket: this.bucket,
              Key: request.objectKey,
              UploadId: request.uploadId,
              MultipartUpload: { Parts: parts },
              IfNoneMatch: request.ifNoneMatch ? "*" : undefined,
            },
            context.signal,
          ),
        ),
      ),
    );
  }

  async abortMultipartUpload(
    request: { objectKey: string; uploadId: string },
    context: CallContext,
  ): Promise<void> {
    await this.call(context, "AbortMultipartUpload", "object", () =>
      this.client.send(
        new AbortMultipartUploadCommand(
          withSignal(
            { Bucket: this.bucket, Key: request.objectKey, UploadId: request.uploadId },
            context.signal,
          ),
        ),
      ),
    );
  }

  async deleteObject(objectKey: string, context: CallContext): Promise<void> {
    await this.call(context, "DeleteObject", "object", () =>
      this.client.send(
        new DeleteObjectCommand(withSignal({ Bucket: this.bucket, Key: objectKey }, context.signal)),
      ),
    );
  }

  async createBucket(locationConstraint: string | undefined, context: CallContext): Promise<void> {
    await this.call(context, "CreateBucket", "bucket", () =>
      this.client.send(
        new CreateBucketCommand(
          withSignal(
            {
              Bucket: this.bucket,
              ...(locationConstraint === undefined
                ? {}
                : // The SDK's list of regions lags new ones; S3 itself validates the name.
                  {
                    CreateBucketConfiguration: {
                      LocationConstraint: locationConstraint as BucketLocationConstraint,
                    },
                  }),
            },
            context.signal,
          ),
        ),
      ),
    );
  }

  close(): void {
    this.client.destroy();
  }
}
