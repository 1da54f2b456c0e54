import { Readable } from "node:stream";
import { concatBytes, type PutRequest, StorageError } from "@stowage/core";
import type { CallContext, RemotePath, WebDavApi } from "./api.js";
import type { FolderMaker } from "./folders.js";
import { pathFromSegments, tempName } from "./names.js";

export interface UploadContext {
  api: WebDavApi;
  folders: FolderMaker;
  /** Upload to a temporary name and MOVE it into place (atomicPut on a server whose PUT is not atomic). */
  viaTemporary: boolean;
  /** Bodies up to this many bytes are held and sent from memory (replayable); larger ones stream once. */
  bufferSize: number;
  /** Segments of the storage root: folders above it are never created by a put. */
  rootLength: number;
}

type PreparedBody =
  | { bytes: Uint8Array; stream?: undefined; sent(): number }
  | { bytes?: undefined; stream: Readable; sent(): number };

/** What the server acknowledged: the bytes it took, and the object's ETag when the answer held one. */
export interface Uploaded {
  size: number;
  etag?: string;
}

// How long the clean-up of a temporary upload may take after the put failed or was aborted.
const CLEANUP_TIMEOUT_MS = 5_000;

/**
 * Stores a put's body under `target` (a remote path).
 *
 * - A body that fits in `bufferSize` is read into memory first, so the PUT is replayable: retried on
 *   transient failures, and sent again after a missing parent folder was made (409 on Apache and
 *   webdav-server, 404 on rclone serve). A larger body is streamed once, with Content-Length when its
 *   size is known and chunked otherwise; its parent folder is made before it is sent.
 * - With `viaTemporary`, the body goes to a temporary name beside the target (see names.ts) and is
 *   published with MOVE; the temporary object is deleted if anything fails. The MOVE is sent with
 *   `Overwrite: F` first: a 412 then means the key exists, which is `AlreadyExists` for `ifNotExists`,
 *   and otherwise is replaced with `Overwrite: T` after checking it is not a folder (MOVE over a
 *   folder would delete the folder's whole tree).
 * - Otherwise the body is PUT to the target itself, with `If-None-Match: *` for `ifNotExists`: a
 *   server whose PUT is atomic (Apache mod_dav_fs) keeps atomicPut's promise this way in one request.
 */
export async function upload(
  context: UploadContext,
  request: PutRequest,
  target: RemotePath,
): Promise<Uploaded> {
  const { api, folders } = context;
  const call: CallContext = { operation: "put", key: request.key, signal: request.signal };
  const parent = target.slice(0, -1);
  const destination = context.viaTemporary ? [...parent, tempName()] : target;
  const body = await prepareBody(request.source, request.size, context.bufferSize);
  const send = () =>
    api.put(call, destination, body.bytes ?? body.stream, {
      size: request.size,
      contentType: request.contentType,
      ifNoneMatch: request.ifNotExists && !context.viaTemporary,
    });
  let sent = false;
  try {
    if (body.stream) await folders.ensure(call, parent, context.rootLength);
    sent = true;
    let answer = await send();
    if (refused(answer.status)) {
      folders.forget(parent);
      // A byte body can be sent again once the missing parents are made; a stream is spent.
      if (body.bytes !== undefined && answer.status !== 400) {
        await folders.ensure(call, parent, context.rootLength);
        answer = await send();
      }
      if (refused(answer.status))
        throw await explainRefusal(api, call, target, context.rootLength, answer.status);
    }
    folders.markKnown(parent);
    if (context.viaTemporary) {
      await publish(api, call, destination, target, request.ifNotExists);
      // The ETag answered for the temporary name need not be the published object's.
      return { size: body.sent() };
    }
    return answer.etag ? { size: body.sent(), etag: answer.etag } : { size: body.sent() };
  } catch (err) {
    body.stream?.destroy();
    if (context.viaTemporary && sent) {
      await api
        .delete(
          { operation: "put", key: request.key, signal: AbortSignal.timeout(CLEANUP_TIMEOUT_MS) },
          destination,
        )
        .catch(() => undefined);
    }
    throw err;
  }
}

/**
 * How servers refuse a PUT whose parent is missing or is an object, or whose name is a folder's: 409
 * (Apache, webdav-server), 404 (rclone serve), and 400 from Apache for a parent that is an object.
 */
function refused(status: number): boolean {
  return status === 400 || status === 404 || status === 409;
}

/**
 * Finds out why a PUT was refused, walking from the key up to the root: a folder with the key's name,
 * or an object where a parent folder should be. Costs a PROPFIND per level, on this failure path only.
 */
async function explainRefusal(
  api: WebDavApi,
  call: CallContext,
  target: RemotePath,
  rootLength: number,
  status: number,
): Promise<StorageError> {
  const put = `PUT ${pathFromSegments(target, false)} returned ${status}`;
  const conflict = (message: string, hint: string) =>
    new StorageError({
      provider: "webdav",
      operation: call.operation,
      key: call.key,
      code: "Conflict",
      status,
      message,
      hint,
    });
  for (let depth = target.length; depth > rootLength; depth--) {
    // Apache answers a PROPFIND below an object with 400 too: that level tells nothing.
    const found = (await api.propfind(call, target.slice(0, depth), 0, false).catch(() => undefined))?.[0];
    if (!found) continue;
    if (depth === target.length) {
      if (found.collection)
        return conflict(`${put}: a folder has this key`, "choose a key that no folder has");
      continue;
    }
    if (found.collection) break;
    const object = (call.key ?? "")
      .split("/")
      .slice(0, depth - rootLength)
      .join("/");
    return conflict(
      `${put}: '${object}' is an object, not a folder`,
      "choose a key whose parents are folders, not objects",
    );
  }
  if (status === 400) {
    return new StorageError({
      provider: "webdav",
      operation: call.operation,
      key: call.key,
      code: "Protocol",
      status,
      message: `${put} Bad Request`,
      hint: "the server refused the request; check its error log",
    });
  }
  return conflict(
    `${put}: the parent folder is missing; it may have been deleted during the put`,
    "put again; the folders are created on demand",
  );
}

async function publish(
  api: WebDavApi,
  call: CallContext,
  temp: RemotePath,
  target: RemotePath,
  ifNotExists: boolean,
) {
  if ((await api.move(call, temp, target, false)) !== 412) return;
  if (ifNotExists) {
    throw new StorageError({
      provider: "webdav",
      operation: call.operation,
      key: call.key,
      code: "AlreadyExists",
      status: 412,
      message: `MOVE to ${pathFromSegments(target, false)} returned 412 Precondition Failed: an object with this key already exists`,
      hint: "delete it first or put without ifNotExists",
    });
  }
  const existing = await api.propfind(call, target, 0, false);
  if (existing?.[0]?.collection) {
    throw new StorageError({
      provider: "webdav",
      operation: call.operation,
      key: call.key,
      code: "Conflict",
      message: "a folder has this key; replacing it would delete everything in it",
      hint: "choose a key that no folder has, or delete the folder's objects first",
    });
  }
  await api.move(call, temp, target, true);
}

/**
 * Reads up to `bufferSize` bytes: a body that ends within them is returned whole (replayable); a
 * longer one becomes a stream that sends the bytes already read, then the rest.
 */
async function prepareBody(
  source: AsyncIterable<Uint8Array>,
  size: number | undefined,
  bufferSize: number,
): Promise<PreparedBody> {
  const iterator = source[Symbol.asyncIterator]();
  const head: Uint8Array[] = [];
  let held = 0;
  if (size === undefined || size <= bufferSize) {
    while (held <= bufferSize) {
      const next = await iterator.next();
      if (next.done) {
        const bytes = head.length === 1 ? head[0]! : concatBytes(head, held);
        return { bytes, sent: () => bytes.byteLength };
      }
      head.push(next.value);
      held += next.value.byteLength;
    }
  }
  const counter = { bytes: 0 };
  return {
    stream: Readable.from(rest(head, iterator, counter), { objectMode: false }),
    sent: () => counter.bytes,
  };
}

async function* rest(
  head: Uint8Array[],
  iterator: AsyncIterator<Uint8Array>,
  counter: { bytes: number },
): AsyncGenerator<Uint8Array> {
  let finished = false;
  try {
    for (const piece of head.splice(0)) {
      counter.bytes += piece.byteLength;
      yield piece;
    }
    while (true) {
      const next = await iterator.next();
      if (next.done) break;
      counter.bytes += next.value.byteLength;
      yield next.value;
    }
    finished = true;
  } finally {
    // The request stopped early (failure, abort): release the caller's body.
    if (!finished) await iterator.return?.();
  }
}
