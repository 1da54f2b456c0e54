import { createHash, randomBytes } from "node:crypto";
import {
  chunked,
  concatBytes,
  type HttpClient,
  isStorageError,
  type Logger,
  type RetryOptions,
  retry,
  StorageError,
} from "@stowage/core";
import { type DriveFile, driveFileSchema, FILE_FIELDS } from "./api.js";

/** Drive's resumable chunks are multiples of 256 KiB, except the last (reference §B.3). */
export const CHUNK_MULTIPLE = 262_144;

/**
 * The largest object sent as one multipart request. Drive documents multipart uploads "for 5 MB or
 * less" (reference §B.3); anything larger goes resumable, even when it fits in one chunk.
 */
const MULTIPART_LIMIT = 5_000_000;

/** How many times an expired or lost upload session is replaced by a new one before giving up. */
const MAX_SESSION_RESTARTS = 2;

/** Where the bytes go: a new file in a folder, or new content for an existing file (same id). */
export type UploadTarget = CreateTarget | { kind: "update"; fileId: string };

export interface CreateTarget {
  kind: "create";
  parentId: string;
  name: string;
}

export interface UploadOptions {
  http: HttpClient;
  /** The upload endpoint, `https://www.googleapis.com/upload/drive/v3/files`. */
  uploadUrl: string;
  chunkSize: number;
  /** Retries of failed chunks and status queries; `false` for none. */
  retry: RetryOptions | false;
  contentType: string;
  /** The body's size when known (sent as `X-Upload-Content-Length` and in every `Content-Range`). */
  size?: number;
  key: string;
  signal?: AbortSignal;
  logger: Logger;
  /**
   * Reads the first `bytes` bytes of the body again, when the body can be read again (bytes,
   * strings, blobs): lets an upload whose session expired start over in a new session.
   */
  rewind?: (bytes: number) => AsyncIterable<Uint8Array>;
  /**
   * After a failed create whose answer may have been lost, finds the file it may have made anyway
   * (same name, size and MD5), so that a retry never leaves a duplicate.
   */
  findCreated?: (target: CreateTarget, size: number, md5: string) => Promise<DriveFile | undefined>;
  /**
   * Called (once) when Drive answers 404 for the target itself: the folder or the file was deleted
   * behind this storage's back. Resolves with where to upload instead.
   */
  retarget?: () => Promise<UploadTarget>;
}

/** The session is gone (404/410 on its URI): start again in a new one (reference §B.3). */
class SessionGone extends Error {
  override readonly name = "SessionGone";
  constructor(override readonly cause: StorageError) {
    super("the upload session is gone");
  }
}

/**
 * Uploads a body to Drive: one `multipart` request for an object up to {@link MULTIPART_LIMIT}
 * bytes that fits in one chunk, a `resumable` session otherwise (reference §B.3, Appendix 1). Either
 * way nothing is visible under the name until the last byte is in: a multipart create is one
 * request, and a session creates (or replaces the content of) the file only when it completes.
 *
 * Memory holds two chunks (the one being sent and the next, read meanwhile), three for a body of
 * unknown size (one more, read ahead to know whether the current one is the last).
 */
export async function uploadContent(
  target: UploadTarget,
  source: AsyncIterable<Uint8Array>,
  options: UploadOptions,
): Promise<DriveFile> {
  const chunks = chunked(source, options.chunkSize)[Symbol.asyncIterator]();
  const first = await chunks.next();
  const second = first.done ? first : await chunks.next();
  const head = first.done ? new Uint8Array(0) : first.value;
  const targets = new TargetHolder(target, options);
  if (second.done && head.byteLength <= Math.min(MULTIPART_LIMIT, options.chunkSize)) {
    return targets.attempt((current) => multipart(current, head, options));
  }
  const held = second.done ? [head] : [head, second.value];
  return new ResumableUpload(targets, options).run(prepend(held, chunks));
}

/** The upload's target, replaced once through `retarget` when Drive says it is gone. */
class TargetHolder {
  private target: UploadTarget;
  private readonly options: UploadOptions;
  private retargeted = false;

  constructor(target: UploadTarget, options: UploadOptions) {
    this.target = target;
    this.options = options;
  }

  /** Runs a request against the target; a 404 for it (not yet replaced) replaces it and runs again. */
  async attempt<T>(request: (target: UploadTarget) => Promise<T>): Promise<T> {
    try {
      return await request(this.target);
    } catch (err) {
      const retarget = this.options.retarget;
      if (!isStorageError(err, "NotFound") || this.retargeted || !retarget) throw err;
      this.retargeted = true;
      this.target = await retarget();
      return request(this.target);
    }
  }
}

async function* prepend(
  held: readonly Uint8Array[],
  rest: AsyncIterator<Uint8Array>,
): AsyncGenerator<Uint8Array> {
  yield* held;
  for (let next = await rest.next(); !next.done; next = await rest.next()) yield next.value;
}

function context(options: UploadOptions) {
  return { provider: "gdrive", operation: "put", key: options.key };
}

function targetRequest(target: UploadTarget, uploadType: string, uploadUrl: string) {
  const query = { uploadType, supportsAllDrives: "true", fields: FILE_FIELDS };
  return target.kind === "create"
    ? { method: "POST", url: uploadUrl, query }
    : { method: "PATCH", url: `${uploadUrl}/${encodeURIComponent(target.fileId)}`, query };
}

function metadataOf(target: UploadTarget): object {
  return target.kind === "create" ? { name: target.name, parents: [target.parentId] } : {};
}

/** One `multipart/related` request: JSON metadata, then the media (reference §B.3). */
async function multipart(
  target: UploadTarget,
  media: Uint8Array,
  options: UploadOptions,
): Promise<DriveFile> {
  const boundary = `stowage-${randomBytes(16).toString("hex")}`;
  const body = concatBytes([
    Buffer.from(
      `--${boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n${JSON.stringify(metadataOf(target))}\r\n` +
        `--${boundary}\r\nContent-Type: ${options.contentType}\r\n\r\n`,
    ),
    media,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  const send = () =>
    options.http.requestJson(
      {
        ...targetRequest(target, "multipart", options.uploadUrl),
        operation: "put",
        key: options.key,
        headers: { "content-type": `multipart/related; boundary=${boundary}` },
        body,
        signal: options.signal,
        // Replacing content is idempotent and retried by the client; a create is retried below.
        retry: target.kind === "update",
      },
      driveFileSchema,
    );
  if (target.kind === "update" || options.retry === false) return send();
  const md5 = createHash("md5").update(media).digest("hex");
  return retry(
    async (attempt) => {
      // The previous attempt's answer may have been lost after Drive created the file.
      if (attempt > 1) {
        const created = await options.findCreated?.(target, media.byteLength, md5);
        if (created) return created;
      }
      return send();
    },
    { ...options.retry, signal: options.signal, context: context(options) },
  );
}

/** What a chunk request learned: the file when the upload is complete, else the bytes persisted. */
type ChunkOutcome = { file: DriveFile } | { persisted: number };

/**
 * One resumable upload: initiate a session, send chunks with `Content-Range`, follow `Range` in each
 * 308 (the server may keep fewer bytes than sent), and after any failure ask the session how much
 * it holds (`Content-Range: bytes *\/N`) before sending more. A session that is gone (404) is
 * replaced by a new one, at most {@link MAX_SESSION_RESTARTS} times, when the bytes already sent
 * can be read again.
 */
class ResumableUpload {
  private readonly targets: TargetHolder;
  private readonly options: UploadOptions;

  constructor(targets: TargetHolder, options: UploadOptions) {
    this.targets = targets;
    this.options = options;
  }

  async run(chunks: AsyncIterable<Uint8Array>): Promise<DriveFile> {
    let source = chunks[Symbol.asyncIterator]();
    for (let restarts = 0; ; restarts++) {
      const outcome = await this.session(source);
      if ("file" in outcome) return outcome.file;
      const { gone, restart } = outcome;
      const status = gone.cause.status;
      const why =
        status === undefined
          ? `the upload session was lost (${gone.cause.detail})`
          : `the upload session expired or was lost (Drive answered ${status})`;
      if (restarts >= MAX_SESSION_RESTARTS) {
        throw new StorageError({
          ...context(this.options),
          code: "Unavailable",
          message: `${why}, and was started again ${restarts} times`,
          hint: "try the put again later",
          cause: gone.cause,
        });
      }
      if (!restart) {
        throw new StorageError({
          ...context(this.options),
          code: "Unavailable",
          message: `${why} after part of a streamed body was sent; a stream cannot be read again`,
          hint: "put the object again with a fresh stream",
          cause: gone.cause,
        });
      }
      this.options.logger.warn(
        { provider: "gdrive", key: this.options.key, restarts: restarts + 1 },
        "the Drive upload session was lost; starting the upload again in a new session",
      );
      source = restart[Symbol.asyncIterator]();
    }
  }

  /**
   * Sends the chunks through one session. Resolves with the file, or, when the session is gone,
   * with how to start again: the chunks still to send, preceded by the bytes already sent.
   *
   * The next chunk is read (and hashed by core) while the current one is on the wire. Whether a
   * chunk is the last is known from the size when it is given, else learnt by reading one more
   * chunk first: memory holds two chunks, or three for a body of unknown size.
   */
  private async session(
    chunks: AsyncIterator<Uint8Array>,
  ): Promise<{ file: DriveFile } | { gone: SessionGone; restart?: AsyncIterable<Uint8Array> }> {
    const uri = await this.initiate();
    const known = this.options.size;
    let offset = 0;
    // Chunks read and not yet confirmed by the session, oldest first; and the read in flight.
    const held: Uint8Array[] = [];
    let reading: Promise<IteratorResult<Uint8Array>> | undefined;
    let ended = false;
    const readOne = async (): Promise<void> => {
      const result = await (reading ?? chunks.next());
      reading = undefined;
      if (result.done) ended = true;
      else held.push(result.value);
    };
    try {
      await readOne();
      for (;;) {
        if (known === undefined && held.length < 2 && !ended) await readOne();
        const chunk = held[0] ?? new Uint8Array(0);
        const last = known === undefined ? ended && held.length <= 1 : offset + chunk.byteLength >= known;
        // The end is read before the last chunk commits the file: core fails a body longer than its size.
        if (known !== undefined && last && !ended) await readOne();
        if (!last && !ended && reading === undefined) {
          reading = chunks.next();
          // Awaited on the next round; a failure meanwhile is seen there, not as an unhandled rejection.
          reading.catch(() => undefined);
        }
        const total = known ?? (last ? offset + chunk.byteLength : undefined);
        const outcome = await this.sendChunk(uri, chunk, offset, total, last);
        if ("file" in outcome) {
          if (!last) throw this.protocol("Drive completed the upload before the last chunk");
          return outcome;
        }
        if (last) throw this.protocol("Drive did not complete the upload after the last chunk");
        held.shift();
        offset += chunk.byteLength;
        if (held.length === 0) await readOne();
      }
    } catch (err) {
      if (!(err instanceof SessionGone)) throw err;
      const pending = reading;
      const rest = (async function* () {
        yield* held;
        const inFlight = pending === undefined ? undefined : await pending;
        if (inFlight && !inFlight.done) yield inFlight.value;
        for (let next = await chunks.next(); !next.done; next = await chunks.next()) yield next.value;
      })();
      if (offset === 0) return { gone: err, restart: rest };
      const rewind = this.options.rewind;
      if (!rewind) return { gone: err };
      const chunkSize = this.options.chunkSize;
      return {
        gone: err,
        restart: (async function* () {
          yield* chunked(rewind(offset), chunkSize);
          yield* rest;
        })(),
      };
    }
  }

  private protocol(message: string): StorageError {
    return new StorageError({ ...context(this.options), code: "Protocol", message });
  }

  /** Starts a session and returns its URI (the `Location` of a 200, reference §B.3). */
  private initiate(): Promise<string> {
    return this.targets.attempt((target) => this.initiateFor(target));
  }

  private async initiateFor(target: UploadTarget): Promise<string> {
    const { size, contentType } = this.options;
    const response = await this.options.http.request({
      ...targetRequest(target, "resumable", this.options.uploadUrl),
      operation: "put",
      key: this.options.key,
      headers: {
        "x-upload-content-type": contentType,
        ...(size === undefined ? {} : { "x-upload-content-length": String(size) }),
      },
      json: metadataOf(target),
      signal: this.options.signal,
      expect: [200],
    });
    await response.dump();
    const location = response.headers.location;
    if (!location || !URL.canParse(location)) {
      throw this.protocol("Drive started an upload session without a usable Location header");
    }
    return location;
  }

  /**
   * Sends one chunk whose first byte is `start`, until Drive holds all of it (or the file, for the
   * last). Failures are retried with backoff; each retry first asks the session what it holds.
   * Throws {@link SessionGone} when the session no longer knows the upload.
   */
  private async sendChunk(
    uri: string,
    chunk: Uint8Array,
    start: number,
    total: number | undefined,
    last: boolean,
  ): Promise<ChunkOutcome> {
    let persisted = start;
    let askFirst = false;
    let stalls = 0;
    const attempt = async (): Promise<ChunkOutcome | "lost"> => {
      if (askFirst) {
        const status = await this.exchange(uri, undefined, total);
        if ("file" in status) return status;
        persisted = status.persisted;
        askFirst = false;
      }
      for (;;) {
        // The session holds less than it confirmed before, and the earlier chunks are gone from memory.
        if (persisted < start) return "lost";
        if (persisted > start + chunk.byteLength) {
          throw this.protocol(
            `the session holds ${persisted} bytes, more than the ${start + chunk.byteLength} sent`,
          );
        }
        const part = chunk.subarray(persisted - start);
        if (part.byteLength === 0 && !last) return { persisted };
        let outcome: ChunkOutcome;
        try {
          outcome = await this.exchange(uri, { bytes: part, start: persisted }, total);
        } catch (err) {
          if (isStorageError(err) && err.retryable) askFirst = true;
          throw err;
        }
        if ("file" in outcome) return outcome;
        if (outcome.persisted <= persisted && ++stalls > 3) {
          throw this.protocol(`the session keeps no more than ${outcome.persisted} bytes`);
        }
        persisted = outcome.persisted;
        if (persisted >= start + chunk.byteLength && !last) return { persisted };
      }
    };
    let outcome: ChunkOutcome | "lost";
    try {
      outcome =
        this.options.retry === false
          ? await attempt()
          : await retry(attempt, {
              ...this.options.retry,
              signal: this.options.signal,
              context: context(this.options),
            });
    } catch (err) {
      // 404 (or 410) on the session URI: it expired or the server dropped it (reference §B.3).
      if (isStorageError(err) && (err.status === 404 || err.status === 410)) throw new SessionGone(err);
      throw err;
    }
    if (outcome === "lost") {
      throw new SessionGone(this.protocol(`the session went back from ${start} bytes to ${persisted}`));
    }
    return outcome;
  }

  /**
   * One request to the session: a chunk (`Content-Range: bytes a-b/N`) or, without `part`, a status
   * query (`bytes *\/N`, empty body). 200/201 carry the file; 308, or 200 with
   * `X-HTTP-Status-Code-Override: 308`, carry `Range: bytes=0-N` (none: nothing persisted).
   */
  private async exchange(
    uri: string,
    part: { bytes: Uint8Array; start: number } | undefined,
    total: number | undefined,
  ): Promise<ChunkOutcome> {
    const size = total === undefined ? "*" : String(total);
    const range =
      part && part.bytes.byteLength > 0
        ? `bytes ${part.start}-${part.start + part.bytes.byteLength - 1}/${size}`
        : `bytes */${size}`;
    const response = await this.options.http.request({
      method: "PUT",
      url: uri,
      // The session URI authorizes by itself; the bearer token goes along only to the upload
      // endpoint's own origin (where an expired one is refreshed), never to another host.
      auth: new URL(uri).origin === new URL(this.options.uploadUrl).origin,
      operation: "put",
      key: this.options.key,
      headers: { "content-range": range },
      body: part?.bytes ?? new Uint8Array(0),
      signal: this.options.signal,
      expect: [200, 201, 308],
      // The session URI grants access by itself: it is kept out of errors and logs.
      secretUrl: true,
      // Retried by sendChunk, after asking the session what it holds.
      retry: false,
    });
    const progress = response.status === 308 || response.headers["x-http-status-code-override"] === "308";
    if (!progress) return { file: await response.json(driveFileSchema) };
    await response.dump();
    const header = response.headers.range;
    if (header === undefined) return { persisted: 0 };
    const held = /^bytes=0-(\d+)$/.exec(header);
    if (!held) throw this.protocol(`Drive answered with an unreadable Range header '${header}'`);
    return { persisted: Number(held[1]) + 1 };
  }
}
