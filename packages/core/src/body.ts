import { Readable } from "node:stream";
import { StorageError } from "./errors.js";
import type { Body } from "./types.js";

const encoder = new TextEncoder();

/** The body's size when the body itself tells it (bytes, strings, blobs); `undefined` for streams. */
export function knownSize(body: Body): number | undefined {
  if (typeof body === "string") return encoder.encode(body).byteLength;
  if (body instanceof Uint8Array) return body.byteLength;
  if (typeof Blob !== "undefined" && body instanceof Blob) return body.size;
  return undefined;
}

function isWebStream(body: unknown): body is ReadableStream<Uint8Array> {
  return typeof (body as ReadableStream | null)?.getReader === "function";
}

function isAsyncIterable(body: unknown): body is AsyncIterable<unknown> {
  return typeof (body as AsyncIterable<unknown> | null)?.[Symbol.asyncIterator] === "function";
}

function isNodeStream(body: unknown): body is NodeJS.ReadableStream {
  return typeof (body as NodeJS.ReadableStream | null)?.pipe === "function";
}

function asBytes(piece: unknown): Uint8Array {
  if (piece instanceof Uint8Array) return piece;
  if (typeof piece === "string") return encoder.encode(piece);
  if (piece instanceof ArrayBuffer) return new Uint8Array(piece);
  if (ArrayBuffer.isView(piece)) return new Uint8Array(piece.buffer, piece.byteOffset, piece.byteLength);
  throw new StorageError({
    code: "InvalidConfig",
    operation: "put",
    message: `the body yielded a ${piece === null ? "null" : typeof piece}, not bytes`,
    hint: "a stream body must yield Uint8Array (or Buffer) chunks",
  });
}

/** The pieces of a web stream; stopping early cancels the stream. */
export async function* streamPieces(stream: ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array> {
  const reader = stream.getReader();
  let done = false;
  try {
    while (true) {
      const next = await reader.read();
      if (next.done) {
        done = true;
        return;
      }
      yield asBytes(next.value);
    }
  } finally {
    // The consumer stopped early (a failed upload): release the producer instead of leaking it.
    if (!done) await reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
}

async function* blobPieces(blob: Blob): AsyncGenerator<Uint8Array> {
  yield* streamPieces(blob.stream() as ReadableStream<Uint8Array>);
}

async function* single(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  if (bytes.byteLength > 0) yield bytes;
}

async function* iterablePieces(source: AsyncIterable<unknown>): AsyncGenerator<Uint8Array> {
  for await (const piece of source) yield asBytes(piece);
}

/**
 * Any {@link Body} as an async iterable of byte pieces, read lazily: nothing is buffered beyond the
 * piece the consumer holds. A stream body can be read once.
 */
export function bodyToIterable(body: Body): AsyncIterable<Uint8Array> {
  if (typeof body === "string") return single(encoder.encode(body));
  if (body instanceof Uint8Array) return single(body);
  if (typeof Blob !== "undefined" && body instanceof Blob) return blobPieces(body);
  if (isWebStream(body)) return streamPieces(body);
  if (isAsyncIterable(body)) return iterablePieces(body);
  if (isNodeStream(body)) return iterablePieces(Readable.from(body as NodeJS.ReadableStream));
  throw new StorageError({
    code: "InvalidConfig",
    operation: "put",
    message: `unsupported body type (${body === null ? "null" : typeof body})`,
    hint: "pass a Uint8Array, string, Blob, ReadableStream, Node stream or async iterable of Uint8Array",
  });
}

/**
 * For a body that can be read again (bytes, a string, a Blob), a function that reads its first `bytes`
 * bytes afresh; `undefined` for streams, which are read once.
 */
export function bodyPrefix(body: Body): ((bytes: number) => AsyncIterable<Uint8Array>) | undefined {
  if (body instanceof Uint8Array) return (bytes) => single(body.subarray(0, bytes));
  if (typeof body === "string") return (bytes) => single(encoder.encode(body).subarray(0, bytes));
  if (typeof Blob !== "undefined" && body instanceof Blob) return (bytes) => blobPieces(body.slice(0, bytes));
  return undefined;
}

/**
 * Re-cuts a stream of pieces into chunks of exactly `chunkSize` bytes (the last one may be shorter,
 * and an empty source yields nothing). Each chunk is a fresh buffer the consumer may keep (a part
 * being retried, say), so memory is one chunk being filled plus the chunks the consumer holds.
 */
export async function* chunked(
  source: AsyncIterable<Uint8Array>,
  chunkSize: number,
): AsyncGenerator<Uint8Array> {
  if (!Number.isInteger(chunkSize) || chunkSize <= 0) {
    throw new StorageError({
      code: "InvalidConfig",
      message: `chunk size must be a positive integer, not ${chunkSize}`,
    });
  }
  let buffer = new Uint8Array(chunkSize);
  let filled = 0;
  for await (const piece of source) {
    let offset = 0;
    while (offset < piece.byteLength) {
      if (filled === 0 && piece.byteLength - offset >= chunkSize) {
        // A whole chunk inside the piece: hand out a view, no copy.
        yield piece.subarray(offset, offset + chunkSize);
        offset += chunkSize;
        continue;
      }
      const take = Math.min(chunkSize - filled, piece.byteLength - offset);
      buffer.set(piece.subarray(offset, offset + take), filled);
      filled += take;
      offset += take;
      if (filled === chunkSize) {
        yield buffer;
        buffer = new Uint8Array(chunkSize);
        filled = 0;
      }
    }
  }
  if (filled > 0) yield buffer.subarray(0, filled);
}

/** Concatenates byte arrays. */
export function concatBytes(parts: readonly Uint8Array[], total?: number): Uint8Array {
  const size = total ?? parts.reduce((n, p) => n + p.byteLength, 0);
  const out = new Uint8Array(size);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}

/** Reads a whole web stream into memory. For small objects and tests; large ones should be streamed. */
export async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const piece of streamPieces(stream)) parts.push(piece);
  return concatBytes(parts);
}

/**
 * A web ReadableStream over an async iterable of bytes, pulled lazily with backpressure. It reads up to
 * `readAhead` pieces ahead of the consumer, so that I/O overlaps the consumer's work (hashing, writing).
 */
export function iterableToStream(
  source: AsyncIterable<Uint8Array>,
  readAhead = 2,
): ReadableStream<Uint8Array> {
  const iterator = source[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const next = await iterator.next();
          if (next.done) controller.close();
          else controller.enqueue(next.value);
        } catch (err) {
          controller.error(err);
        }
      },
      async cancel(reason) {
        await iterator.return?.(reason);
      },
    },
    new CountQueuingStrategy({ highWaterMark: readAhead }),
  );
}
