import { concatBytes, type Logger, StorageError, throwIfAborted } from "@stowage/core";
import type { CallContext, ObjectInfo, S3Api, UploadedPart } from "./api.js";

/** S3's limits on multipart uploads (the same on every compatible server Stowage has a preset for). */
export const MIN_PART_SIZE = 5 * 1024 * 1024;
export const MAX_PART_SIZE = 5 * 1024 * 1024 * 1024;
export const MAX_PARTS = 10_000;
export const MAX_OBJECT_SIZE = 5 * 1024 * 1024 * 1024 * 1024;

const MiB = 1024 * 1024;

export interface UploadSettings {
  /** Bytes per part, and the largest object sent in one PutObject. */
  partSize: number;
  /** Parts uploaded at once; memory is about `partSize × queueSize`. */
  queueSize: number;
}

export interface UploadRequest {
  /** The S3 key (root prefix included). */
  objectKey: string;
  /** The storage key, for messages. */
  key: string;
  source: AsyncIterable<Uint8Array>;
  size?: number;
  contentType?: string;
  /** Send `If-None-Match: *` (only where the server honours it). */
  ifNoneMatch: boolean;
  signal?: AbortSignal;
}

/**
 * The part size for a body of known size: the configured one, grown (to whole MiB) when the body
 * would otherwise need more than 10,000 parts.
 */
export function partSizeFor(size: number | undefined, partSize: number): number {
  if (size === undefined || size <= partSize * MAX_PARTS) return partSize;
  return Math.ceil(size / MAX_PARTS / MiB) * MiB;
}

/**
 * Stores a body under one key, whole or not at all.
 *
 * A body that fits in one part goes up in a single PutObject with its length (a body of unknown
 * length is buffered up to one part to find out). A larger body goes up as a multipart upload: parts
 * are cut into at most `queueSize` reused buffers, each in flight or being filled, so memory stays at
 * `partSize × queueSize` whatever the object's size. The next part is read only when a buffer is
 * free, which also paces a fast source to the network.
 *
 * Any failure or abort aborts the in-flight parts and then the multipart upload itself
 * (AbortMultipartUpload), so no parts are left to be billed; if that call fails too, a warning is
 * logged and the original error is thrown.
 *
 * The body is read to its end before the upload is committed, so a body shorter or longer than its
 * declared size (core's meter throws `Integrity`) never leaves an object behind.
 */
export async function uploadObject(
  api: S3Api,
  request: UploadRequest,
  settings: UploadSettings,
  logger: Logger,
): Promise<ObjectInfo> {
  const context: CallContext = { operation: "put", key: request.key, signal: request.signal };
  const partSize = partSizeFor(request.size, settings.partSize);
  const source = request.source[Symbol.asyncIterator]();
  try {
    // Read until the body ends or holds more than one part. The pieces are kept as they come: a
    // small body costs no part-sized buffer, and a body passed as one Uint8Array goes out without a
    // copy.
    const head: Uint8Array[] = [];
    let held = 0;
    let ended = false;
    while (!ended && held <= partSize) {
      const next = await source.next();
      if (next.done) ended = true;
      else {
        head.push(next.value);
        held += next.value.byteLength;
      }
    }
    if (ended && held <= partSize) {
      return await putSingle(api, request, head.length === 1 ? head[0]! : concatBytes(head, held), context);
    }
    const parts = cutParts(prepend(head, source), partSize, new PartBuffers(partSize));
    try {
      return await putMultipart(api, request, parts, settings.queueSize, context, logger);
    } finally {
      await parts.return?.(undefined);
    }
  } finally {
    // Stopping early (a failure) releases the body: a stream is cancelled, not left half-read.
    await source.return?.(undefined);
  }
}

/** A part of a multipart upload; `release` hands its buffer back for the next part. */
interface Part {
  body: Uint8Array;
  release(): void;
}

/**
 * Part-sized buffers for reuse. Core's `chunked()` allocates a fresh buffer per part; over a 1 GiB
 * upload that leaves ~120 dead 8 MiB buffers for the garbage collector, which frees them late (V8
 * counts them as external memory), so peak RSS ran far above `partSize × queueSize`
 * (the s3 section of docs/benchmarks.md). Reusing `queueSize` buffers keeps the bound and skips the zero-fill.
 */
class PartBuffers {
  private readonly free: Uint8Array[] = [];
  constructor(private readonly size: number) {}
  take(): Uint8Array {
    return this.free.pop() ?? new Uint8Array(this.size);
  }
  give(buffer: Uint8Array): void {
    this.free.push(buffer);
  }
}

/**
 * Cuts a body into parts of exactly `partSize` bytes (the last may be shorter). A part that lies
 * whole inside one piece of the body is handed out as a view, without a copy; the rest is copied into
 * a reused buffer, which goes back to `buffers` when the part is released.
 */
async function* cutParts(
  source: AsyncIterable<Uint8Array>,
  partSize: number,
  buffers: PartBuffers,
): AsyncGenerator<Part> {
  const none = () => {};
  let buffer: Uint8Array | undefined;
  let filled = 0;
  try {
    for await (const piece of source) {
      let offset = 0;
      while (offset < piece.byteLength) {
        if (filled === 0 && piece.byteLength - offset >= partSize) {
          yield { body: piece.subarray(offset, offset + partSize), release: none };
          offset += partSize;
          continue;
        }
        buffer ??= buffers.take();
        const take = Math.min(partSize - filled, piece.byteLength - offset);
        buffer.set(piece.subarray(offset, offset + take), filled);
        filled += take;
        offset += take;
        if (filled === partSize) {
          const full = buffer;
          buffer = undefined;
          filled = 0;
          yield { body: full, release: () => buffers.give(full) };
        }
      }
    }
    if (buffer !== undefined && filled > 0) {
      const last = buffer;
      buffer = undefined;
      yield { body: last.subarray(0, filled), release: () => buffers.give(last) };
    }
  } finally {
    if (buffer !== undefined) buffers.give(buffer);
  }
}

/** The pieces already read, then the rest of the source; each piece is let go once handed on. */
async function* prepend(head: Uint8Array[], rest: AsyncIterator<Uint8Array>): AsyncGenerator<Uint8Array> {
  while (head.length > 0) yield head.shift()!;
  while (true) {
    const next = await rest.next();
    if (next.done) return;
    yield next.value;
  }
}

async function putSingle(
  api: S3Api,
  request: UploadRequest,
  body: Uint8Array,
  context: CallContext,
): Promise<ObjectInfo> {
  const stored = await api.putObject(
    {
      objectKey: request.objectKey,
      body,
      contentType: request.contentType,
      ifNoneMatch: request.ifNoneMatch,
    },
    context,
  );
  // An MD5 ETag lets core compare content (and so size) with what was sent. Without one (SSE-KMS,
  // SSE-C) only a HEAD tells the size the server stored.
  if (stored.md5 !== undefined) return stored;
  return {
    ...(await api.headObject(request.objectKey, context)),
    ...(stored.etag ? { etag: stored.etag } : {}),
  };
}

async function putMultipart(
  api: S3Api,
  request: UploadRequest,
  iterator: AsyncIterator<Part>,
  queueSize: number,
  context: CallContext,
  logger: Logger,
): Promise<ObjectInfo> {
  const { objectKey, signal } = request;
  const uploadId = await api.createMultipartUpload({ objectKey, contentType: request.contentType }, context);
  // One controller stops every part: the caller's abort and the first failed part both fire it.
  const controller = new AbortController();
  const onAbort = () => controller.abort(signal?.reason);
  if (signal?.aborted) onAbort();
  else signal?.addEventListener("abort", onAbort, { once: true });
  const partContext: CallContext = { ...context, signal: controller.signal };
  const parts: UploadedPart[] = [];
  const inflight = new Set<Promise<void>>();
  let failure: { error: unknown } | undefined;
  let partNumber = 0;

  const start = ({ body, release }: Part) => {
    partNumber += 1;
    if (partNumber > MAX_PARTS) {
      throw new StorageError({
        provider: "s3",
        operation: "put",
        key: request.key,
        code: "Unsupported",
        message: `the body needs more than ${MAX_PARTS} parts of ${body.byteLength} bytes, the most S3 accepts`,
        hint: "pass the body's size (options.size) so the part size can grow, or raise part-size",
      });
    }
    const task: Promise<void> = api
      .uploadPart({ objectKey, uploadId, partNumber, body }, partContext)
      .then(
        (part) => void parts.push(part),
        (error: unknown) => {
          if (failure === undefined) {
            failure = { error };
            controller.abort(error);
          }
        },
      )
      .finally(() => {
        // Released before the slot frees, so the next part refills this buffer instead of a new one.
        release();
        inflight.delete(task);
      });
    inflight.add(task);
  };

  try {
    while (failure === undefined) {
      while (inflight.size >= queueSize && failure === undefined) await Promise.race(inflight);
      if (failure !== undefined) break;
      const next = await iterator.next();
      if (next.done) break;
      start(next.value);
    }
    await Promise.all(inflight);
    if (failure !== undefined) throw failure.error;
    throwIfAborted(signal, { provider: "s3", operation: "put", key: request.key });
    await api.completeMultipartUpload(
      { objectKey, uploadId, parts, ifNoneMatch: request.ifNoneMatch },
      context,
    );
  } catch (err) {
    controller.abort(err);
    await Promise.allSettled(inflight);
    await abortUpload(api, request, uploadId, logger);
    throw err;
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
  // CompleteMultipartUpload reports neither the size nor (on AWS) an MD5: ask for what was stored.
  return api.headObject(objectKey, context);
}

/** Best effort, on its own deadline (the caller's signal may be the reason we are here). */
async function abortUpload(
  api: S3Api,
  request: UploadRequest,
  uploadId: string,
  logger: Logger,
): Promise<void> {
  try {
    await api.abortMultipartUpload(
      { objectKey: request.objectKey, uploadId },
      { operation: "put", key: request.key, signal: AbortSignal.timeout(30_000) },
    );
  } catch (err) {
    logger.warn(
      {
        provider: "s3",
        operation: "put",
        key: request.key,
        uploadId,
        error: err instanceof Error ? err.message : String(err),
      },
      "could not abort the multipart upload; its parts stay stored (and billed) until a lifecycle rule removes them",
    );
  }
}
