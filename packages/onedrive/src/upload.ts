import { randomBytes } from "node:crypto";
import { type FileHandle, open, rm } from "node:fs/promises";
import { join } from "node:path";
import { concatBytes, type Logger, QuickXorHash, StorageError, throwIfAborted } from "@stowage/core";
import type { ConflictBehavior, DriveItem, GraphApi } from "./api.js";

/** What one put needs to reach OneDrive. */
export interface UploadPlan {
  api: GraphApi;
  key: string;
  /** The object's path from the drive root, names encoded. */
  path: string[];
  conflict: ConflictBehavior;
  fragmentSize: number;
  simpleUploadCutoff: number;
  /** Where a streamed body of known length is copied as it is read; none: no copy. */
  spoolDir: string | undefined;
  /** Where a streamed body of unknown length is copied (always: the total must be known first). */
  tempDir: string;
  /** New sessions after a session is lost, before the put fails. */
  maxRestarts: number;
  /** Whether the key has folders below the root (that a failed put may need to create). */
  hasParents: boolean;
  /** Creates the key's missing parent folders, level by level. */
  ensureParents(): Promise<void>;
  logger: Logger;
  signal?: AbortSignal;
}

/** The upload URL answered 404 (or 401, although it was sent no token) and its status did too. */
class SessionLost extends Error {
  readonly status: number;

  constructor(status: number) {
    super(`the upload session is gone (HTTP ${status})`);
    this.status = status;
  }
}

// Answers in a row that send the upload back (a 416, a lost answer, a position other than expected):
// a session that keeps doing so is not converging, and the caller is better told.
const MAX_CONFUSED_ANSWERS = 5;
const SPOOL_READ_BYTES = 4 * 1024 * 1024;

/**
 * Stores a body at `plan.path`. Bodies up to the cutoff (4 MiB) go in one `PUT …/content`; larger ones
 * through an upload session, in fragments of `fragmentSize` sent in order.
 *
 * To send bytes again (after a lost answer, or in a new session after a lost one), the upload needs
 * them: a body given whole in memory (bytes, a string) is read from there, and one that can be read
 * again (a Blob: `rewind`) is read again; a stream is copied to a temporary file as it is read when
 * `spoolDir` is set, and otherwise only its current fragment can be sent again. A stream of unknown
 * length above the cutoff is always copied first, since every fragment must state the total.
 */
export async function uploadObject(
  plan: UploadPlan,
  source: AsyncIterable<Uint8Array>,
  size: number | undefined,
  rewind?: (bytes: number) => AsyncIterable<Uint8Array>,
): Promise<DriveItem> {
  if (size !== undefined && size <= plan.simpleUploadCutoff) {
    const pieces: Uint8Array[] = [];
    for await (const piece of source) pieces.push(piece);
    return simpleUpload(plan, concatBytes(pieces));
  }
  if (size === undefined) return uploadUnsized(plan, source[Symbol.asyncIterator]());
  const fragments = new FragmentSource(size, plan.fragmentSize, source[Symbol.asyncIterator](), rewind);
  let spool: Spool | undefined;
  try {
    await fragments.prepare();
    if (!fragments.canReread && plan.spoolDir !== undefined) {
      spool = await Spool.create(plan.spoolDir, plan.key);
      fragments.keepCopy(spool);
    }
    return await sessionUpload(plan, fragments);
  } finally {
    await fragments.close();
    await spool?.dispose();
  }
}

/** A body of unknown length: one PUT if it ends within the cutoff, else copied whole, then a session. */
async function uploadUnsized(plan: UploadPlan, iterator: AsyncIterator<Uint8Array>): Promise<DriveItem> {
  const head: Uint8Array[] = [];
  let headBytes = 0;
  let next = await iterator.next();
  while (!next.done && headBytes <= plan.simpleUploadCutoff) {
    head.push(next.value);
    headBytes += next.value.byteLength;
    if (headBytes <= plan.simpleUploadCutoff) next = await iterator.next();
  }
  if (next.done) return simpleUpload(plan, concatBytes(head));
  const spool = await Spool.create(plan.spoolDir ?? plan.tempDir, plan.key);
  try {
    for (const piece of head) await spool.write(piece);
    for await (const piece of { [Symbol.asyncIterator]: () => iterator }) await spool.write(piece);
    await spool.flushed();
    const fragments = new FragmentSource(spool.length, plan.fragmentSize, undefined, undefined);
    fragments.keepCopy(spool);
    return await sessionUpload(plan, fragments);
  } finally {
    await spool.dispose();
  }
}

function context(plan: UploadPlan) {
  return { operation: "put", key: plan.key, signal: plan.signal };
}

/**
 * One `PUT …/content`. Under `fail`, a retried request that meets `nameAlreadyExists` may have met its
 * own first attempt (the answer was lost, the bytes landed): the stored file is compared with the bytes
 * before the conflict is believed.
 */
async function simpleUpload(plan: UploadPlan, bytes: Uint8Array): Promise<DriveItem> {
  let retried = false;
  const put = () =>
    plan.api.retrying(context(plan), async () => {
      try {
        return await plan.api.simplePut(plan.path, bytes, plan.conflict, context(plan));
      } catch (err) {
        // Only a retried attempt can meet its own first attempt; a first attempt's conflict is real.
        if (retried && err instanceof StorageError && err.code === "AlreadyExists") {
          const item = await storedCopy(plan, bytes.byteLength, async () => quickXorOf(bytes));
          if (item) return item;
        }
        retried = true;
        throw err;
      }
    });
  try {
    return await put();
  } catch (err) {
    if (!isMissingParent(err, plan)) throw err;
    await plan.ensureParents();
    retried = false;
    return put();
  }
}

/** A 404, or a 409 other than a name conflict, on a create: the parent folder may be missing. */
function isMissingParent(err: unknown, plan: UploadPlan): boolean {
  return (
    plan.hasParents && err instanceof StorageError && (err.code === "NotFound" || err.code === "Conflict")
  );
}

/**
 * The item at the plan's path, if it is what was sent: its size, and its quickXorHash when the bytes
 * are still here to hash. Without them the size decides, and the put's verification (on by default)
 * compares the hash of what was read with the item's.
 */
async function storedCopy(
  plan: UploadPlan,
  size: number,
  hash: () => Promise<string | undefined>,
): Promise<DriveItem | undefined> {
  const item = await plan.api.getItem(plan.path, context(plan));
  if (!item?.file || item.size !== size) return undefined;
  const expected = await hash();
  if (expected === undefined) return item;
  return item.file.hashes?.quickXorHash === expected ? item : undefined;
}

function quickXorOf(bytes: Uint8Array): string {
  return new QuickXorHash().update(bytes).digest();
}

async function sessionUpload(plan: UploadPlan, source: FragmentSource): Promise<DriveItem> {
  if (plan.conflict === "fail" && (await plan.api.getItem(plan.path, context(plan)))) {
    // Checked first only to spare a useless upload: the session's commit is what makes it atomic.
    throw alreadyExists(plan);
  }
  let lost: SessionLost | undefined;
  for (let restarts = 0; ; restarts++) {
    const { uploadUrl } = await createSession(plan, source.total);
    let done = false;
    lost = undefined;
    try {
      const item = await sendFragments(plan, source, uploadUrl);
      done = true;
      return item;
    } catch (err) {
      if (!(err instanceof SessionLost)) throw err;
      lost = err;
      if (!source.canSend(0)) {
        throw new StorageError({
          provider: "onedrive",
          ...context(plan),
          code: "Unavailable",
          status: err.status,
          message: `the upload session was lost after ${source.read} bytes (its upload URL answered ${err.status}), and a new one cannot start: the body is a stream that cannot be read again`,
          hint: "put the object again; to let Stowage restart by itself, pass the body as bytes or a Blob (fs.openAsBlob), or set spoolDir",
          cause: err,
        });
      }
      if (restarts >= plan.maxRestarts) {
        throw new StorageError({
          provider: "onedrive",
          ...context(plan),
          code: "Unavailable",
          status: err.status,
          message: `the upload session was lost ${restarts + 1} times (its upload URL answered ${err.status}); the upload was restarted ${restarts} times and then given up`,
          hint: "put the object again; if it keeps happening, check the connection and the OneDrive service status",
          cause: err,
        });
      }
      plan.logger.warn(
        { provider: "onedrive", operation: "put", key: plan.key, status: err.status, restart: restarts + 1 },
        "the upload session was lost; starting a new one",
      );
    } finally {
      // A failed or aborted put leaves no session holding its bytes; a lost one is gone already.
      if (!done && lost === undefined) {
        await plan.api.cancelSession(uploadUrl, {
          operation: "put",
          key: plan.key,
          signal: AbortSignal.timeout(10_000),
        });
      }
    }
  }
}

async function createSession(plan: UploadPlan, total: number) {
  try {
    return await plan.api.createSession(plan.path, plan.conflict, total, context(plan));
  } catch (err) {
    // The parent must exist before createUploadSession (onedrive-api-docs #364).
    if (!isMissingParent(err, plan)) throw err;
    await plan.ensureParents();
    return plan.api.createSession(plan.path, plan.conflict, total, context(plan));
  }
}

/**
 * Sends the fragments in order, from wherever the session says it is: after a 416 (the bytes were
 * there already: an answer was lost) the session's status gives the next byte, as rclone does; a 404
 * is checked the same way before the session is taken for lost, since rclone saw 404s that were
 * eventual consistency. An answer lost after the last fragment is checked against the stored file.
 */
async function sendFragments(
  plan: UploadPlan,
  source: FragmentSource,
  uploadUrl: string,
): Promise<DriveItem> {
  const total = source.total;
  let offset = 0;
  let confused = 0;
  const protocol = (message: string) =>
    new StorageError({ provider: "onedrive", ...context(plan), code: "Protocol", message });
  const moveTo = (position: number) => {
    if (position > source.read) {
      throw protocol(`the upload session expects byte ${position}, beyond the ${source.read} bytes sent`);
    }
    if (!source.canSend(position)) {
      throw new StorageError({
        provider: "onedrive",
        ...context(plan),
        code: "Unavailable",
        message: `the upload session asked for byte ${position} again, which the body (a stream) no longer holds`,
        hint: "put the object again; to let Stowage resend by itself, pass the body as bytes or a Blob (fs.openAsBlob), or set spoolDir",
      });
    }
    if (++confused > MAX_CONFUSED_ANSWERS) {
      throw protocol(`the upload session refused fragments ${MAX_CONFUSED_ANSWERS} times in a row`);
    }
    offset = position;
  };
  const committed = () => storedCopy(plan, total, () => source.quickXor());

  while (true) {
    throwIfAborted(plan.signal, { provider: "onedrive", operation: "put", key: plan.key });
    const bytes = await source.fragment(offset);
    const end = offset + bytes.byteLength;
    const answer = await plan.api.putFragment(uploadUrl, bytes, offset, total, context(plan));
    if (answer.kind === "done") {
      if (end !== total) throw protocol(`the upload session finished at byte ${end} of ${total}`);
      return answer.item;
    }
    if (answer.kind === "accepted") {
      const next = answer.next ?? end;
      if (next === end) {
        offset = end;
        confused = 0;
      } else {
        moveTo(next);
      }
      continue;
    }
    const position = await plan.api.sessionPosition(uploadUrl, context(plan));
    if (typeof position === "number") {
      moveTo(position);
      continue;
    }
    if (end === total) {
      const item = await committed();
      if (item) return item;
    }
    if (position === "gone") throw new SessionLost(answer.kind === "gone" ? answer.status : 404);
    // Every byte is there and nothing was committed: the commit was refused (a name conflict).
    throw plan.conflict === "fail"
      ? alreadyExists(plan)
      : protocol("the upload session holds every byte but did not create the file");
  }
}

function alreadyExists(plan: UploadPlan): StorageError {
  return new StorageError({
    provider: "onedrive",
    operation: "put",
    key: plan.key,
    code: "AlreadyExists",
    message: "an object with this key already exists",
    hint: "delete it first or put without ifNotExists",
  });
}

/**
 * The body as fragments, read once, in order, from the live body; the next fragment is read while
 * the current one is on the wire. What can be sent again: any part of a body that came whole in one
 * piece (bytes, a string: the caller holds it anyway), anything already read when the body can be read
 * again (`rewind`, a Blob) or a copy is kept, and otherwise the current fragment only.
 *
 * Live fragments are filled into two buffers used in turn (the one on the wire and the one being
 * read), not a new buffer each: allocating 10 MiB per fragment kept the garbage collector busy for a
 * fifth of a large upload.
 */
class FragmentSource {
  readonly total: number;
  private readonly fragmentSize: number;
  private readonly live: AsyncIterator<Uint8Array> | undefined;
  /** Reads the body's first bytes again, when it can be read again (core's `PutRequest.rewind`). */
  private readonly rewind: ((bytes: number) => AsyncIterable<Uint8Array>) | undefined;
  /** A second reading of the body, for bytes sent again; at `position`. */
  private replay: { pieces: AsyncIterator<Uint8Array>; position: number; carry?: Uint8Array } | undefined;
  private spool: Spool | undefined;
  /** The whole body, when it came in one piece. */
  private whole: Uint8Array | undefined;
  /** Bytes of the live body handed out as fragments so far. */
  private liveOffset: number;
  /** The part of the last piece read that belongs to the next fragment. */
  private carry: Uint8Array | undefined;
  /** Buffers of `fragmentSize` bytes no fragment uses any more. */
  private readonly free: Uint8Array[] = [];
  /** The buffers this source allocated, by their memory, so that views of the body are not reused. */
  private readonly owned = new WeakSet<ArrayBufferLike>();
  private pending: Promise<Uint8Array> | undefined;
  private last: { offset: number; bytes: Uint8Array } | undefined;
  private hash: Promise<string | undefined> | undefined;

  /** `live` undefined: every byte is in the copy already (see `keepCopy`). */
  constructor(
    total: number,
    fragmentSize: number,
    live: AsyncIterator<Uint8Array> | undefined,
    rewind: ((bytes: number) => AsyncIterable<Uint8Array>) | undefined,
  ) {
    this.total = total;
    this.fragmentSize = fragmentSize;
    this.live = live;
    this.rewind = rewind;
    this.liveOffset = live === undefined ? total : 0;
  }

  /** Whether any byte can be had again without a copy (the body is in memory, or can be read again). */
  get canReread(): boolean {
    return this.whole !== undefined || this.rewind !== undefined;
  }

  /** Bytes read from the body so far. */
  get read(): number {
    return this.whole === undefined ? this.liveOffset : this.total;
  }

  /**
   * Reads the first piece: a body that is one piece of `total` bytes is kept whole, and its end is
   * checked at once (the metered body checks its size there).
   */
  async prepare(): Promise<void> {
    const first = await this.live!.next();
    if (first.done) return;
    if (first.value.byteLength === this.total && (await this.live!.next()).done) {
      this.whole = first.value;
      return;
    }
    this.carry = first.value;
  }

  /** Writes every fragment read from now on into `spool`, so that any of them can be sent again. */
  keepCopy(spool: Spool): void {
    this.spool = spool;
  }

  /** Whether the bytes from `offset` can be sent (again). */
  canSend(offset: number): boolean {
    if (this.whole !== undefined || offset === this.liveOffset) return true;
    if (offset > this.liveOffset) return false;
    if (this.spool !== undefined || this.rewind !== undefined) return true;
    const last = this.last;
    return last !== undefined && offset >= last.offset && offset < last.offset + last.bytes.byteLength;
  }

  /** The fragment that starts at `offset` (see `canSend`). */
  async fragment(offset: number): Promise<Uint8Array> {
    const last = this.last;
    if (last?.offset === offset) return last.bytes;
    const want = Math.min(this.fragmentSize, this.total - offset);
    let bytes: Uint8Array;
    const fromLive = this.whole === undefined && offset === this.liveOffset;
    if (this.whole !== undefined) {
      bytes = this.whole.subarray(offset, offset + want);
    } else if (fromLive) {
      bytes = await (this.pending ?? this.fill(want));
      this.pending = undefined;
      if (bytes.byteLength !== want) {
        // The metered body throws first when it is shorter than declared; this is a backstop.
        throw integrity(
          `the body ended after ${this.liveOffset + bytes.byteLength} bytes; ${this.total} were declared`,
        );
      }
      this.liveOffset += bytes.byteLength;
      this.spool?.append(bytes);
    } else if (last !== undefined && offset > last.offset && offset < last.offset + last.bytes.byteLength) {
      bytes = last.bytes.subarray(offset - last.offset);
    } else if (this.spool !== undefined && offset < this.liveOffset) {
      bytes = await this.spool.read(offset, Math.min(want, this.liveOffset - offset));
    } else if (this.rewind !== undefined && offset < this.liveOffset) {
      bytes = await this.reread(offset, Math.min(want, this.liveOffset - offset));
    } else {
      throw integrity(`byte ${offset} of the body is no longer held`);
    }
    const previous = last?.bytes;
    this.last = { offset, bytes };
    // A buffer goes back to the pool only when no fragment (nor a view of it) uses it any more.
    if (previous !== undefined && this.owned.has(previous.buffer) && previous.buffer !== bytes.buffer) {
      this.free.push(new Uint8Array(previous.buffer));
    }
    if (fromLive) await this.readAhead();
    return bytes;
  }

  /** quickXorHash of the whole body, when its bytes can still be had (memory, a second reading, the copy). */
  quickXor(): Promise<string | undefined> {
    this.hash ??= this.hashAll();
    return this.hash;
  }

  private async hashAll(): Promise<string | undefined> {
    if (this.whole !== undefined) return quickXorOf(this.whole);
    if (this.liveOffset !== this.total) return undefined;
    if (this.spool !== undefined) return this.spool.quickXor();
    if (this.rewind === undefined) return undefined;
    const hash = new QuickXorHash();
    for await (const piece of this.rewind(this.total)) hash.update(piece);
    return hash.digest();
  }

  /** `length` bytes from `offset`, read again from the body (rare: after a lost session or answer). */
  private async reread(offset: number, length: number): Promise<Uint8Array> {
    if (this.replay === undefined || this.replay.position > offset) {
      await this.replay?.pieces.return?.();
      this.replay = { pieces: this.rewind!(this.liveOffset)[Symbol.asyncIterator](), position: 0 };
    }
    const replay = this.replay;
    const out = new Uint8Array(length);
    let filled = 0;
    while (filled < length) {
      let piece = replay.carry;
      replay.carry = undefined;
      if (piece === undefined) {
        const next = await replay.pieces.next();
        if (next.done) break;
        piece = next.value;
      }
      const skip = Math.min(Math.max(offset - replay.position, 0), piece.byteLength);
      const take = Math.min(length - filled, piece.byteLength - skip);
      out.set(piece.subarray(skip, skip + take), filled);
      filled += take;
      replay.position += skip + take;
      if (skip + take < piece.byteLength) replay.carry = piece.subarray(skip + take);
    }
    return out.subarray(0, filled);
  }

  async close(): Promise<void> {
    await this.replay?.pieces.return?.()?.catch(() => undefined);
    const pending = this.pending;
    this.pending = undefined;
    if (pending) {
      // A read may be blocked on a slow body: let it finish on its own rather than wait for it.
      pending
        .then(
          () => this.live?.return?.(),
          () => undefined,
        )
        .catch(() => undefined);
    } else if (this.whole === undefined) {
      await this.live?.return?.().catch(() => undefined);
    }
  }

  /**
   * After a live fragment: starts reading the next one, or, after the last, reads past the end, so
   * that the metered body checks its size before the last fragment commits.
   */
  private async readAhead(): Promise<void> {
    const remaining = this.total - this.liveOffset;
    if (remaining > 0) {
      this.pending = this.fill(Math.min(this.fragmentSize, remaining));
      this.pending.catch(() => undefined);
      return;
    }
    if (this.carry !== undefined || !(await this.live!.next()).done) {
      throw integrity(`the body holds more than the declared ${this.total} bytes`);
    }
  }

  /** The next `want` bytes of the live body (fewer if it ends first). */
  private async fill(want: number): Promise<Uint8Array> {
    let buffer: Uint8Array | undefined;
    let filled = 0;
    while (filled < want) {
      let piece = this.carry;
      this.carry = undefined;
      if (piece === undefined) {
        const next = await this.live!.next();
        if (next.done) break;
        piece = next.value;
      }
      if (filled === 0 && piece.byteLength >= want) {
        // A whole fragment inside one piece: a view, no copy.
        if (piece.byteLength > want) this.carry = piece.subarray(want);
        return piece.subarray(0, want);
      }
      if (buffer === undefined) buffer = await this.buffer();
      const take = Math.min(want - filled, piece.byteLength);
      buffer.set(piece.subarray(0, take), filled);
      filled += take;
      if (take < piece.byteLength) this.carry = piece.subarray(take);
    }
    return buffer === undefined ? new Uint8Array(0) : buffer.subarray(0, filled);
  }

  /** A free buffer, once the copy has written what it held; or a new one. */
  private async buffer(): Promise<Uint8Array> {
    const reused = this.free.pop();
    if (reused !== undefined) {
      await this.spool?.flushed();
      return reused;
    }
    const created = new Uint8Array(this.fragmentSize);
    this.owned.add(created.buffer);
    return created;
  }
}

function integrity(message: string): StorageError {
  return new StorageError({ provider: "onedrive", operation: "put", code: "Integrity", message });
}

/** A temporary file holding every byte of the body read so far (mode 0600, removed at the end). */
class Spool {
  length = 0;
  private readonly handle: FileHandle;
  private readonly path: string;
  private readonly key: string;
  private writing: Promise<void> = Promise.resolve();

  private constructor(handle: FileHandle, path: string, key: string) {
    this.handle = handle;
    this.path = path;
    this.key = key;
  }

  static async create(dir: string, key: string): Promise<Spool> {
    const path = join(dir, `stowage-onedrive-${randomBytes(8).toString("hex")}.part`);
    try {
      // Only this user may read the copy: it holds the object's bytes.
      return new Spool(await open(path, "wx+", 0o600), path, key);
    } catch (err) {
      throw spoolError(err, dir, key);
    }
  }

  /**
   * Queues the bytes for writing at the end, so that the write overlaps the upload of the same bytes;
   * `flushed` or `read` report a failed write. The caller bounds what is queued (a fragment or two).
   */
  append(bytes: Uint8Array): void {
    const position = this.length;
    this.length += bytes.byteLength;
    this.writing = this.writing.then(async () => {
      let written = 0;
      while (written < bytes.byteLength) {
        const { bytesWritten } = await this.handle.write(
          bytes,
          written,
          bytes.byteLength - written,
          position + written,
        );
        written += bytesWritten;
      }
    });
  }

  /** Appends and waits for the write: a body read faster than the disk writes stays out of memory. */
  async write(bytes: Uint8Array): Promise<void> {
    this.append(bytes);
    await this.flushed();
  }

  async flushed(): Promise<void> {
    try {
      await this.writing;
    } catch (err) {
      throw spoolError(err, this.path, this.key);
    }
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    await this.flushed();
    const bytes = new Uint8Array(length);
    let filled = 0;
    while (filled < length) {
      const { bytesRead } = await this.handle.read(bytes, filled, length - filled, offset + filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return bytes.subarray(0, filled);
  }

  async quickXor(): Promise<string> {
    const hash = new QuickXorHash();
    for (let offset = 0; offset < this.length; offset += SPOOL_READ_BYTES) {
      hash.update(await this.read(offset, Math.min(SPOOL_READ_BYTES, this.length - offset)));
    }
    return hash.digest();
  }

  async dispose(): Promise<void> {
    await this.writing.catch(() => undefined);
    await this.handle.close().catch(() => undefined);
    await rm(this.path, { force: true });
  }
}

function spoolError(err: unknown, where: string, key: string): StorageError {
  const code = (err as { code?: unknown } | null)?.code;
  return new StorageError({
    provider: "onedrive",
    operation: "put",
    key,
    code: code === "ENOSPC" || code === "EDQUOT" ? "QuotaExceeded" : "InvalidConfig",
    message: `the temporary copy of the upload could not be written in ${where}${typeof code === "string" ? ` (${code})` : ""}`,
    hint: "set spoolDir to a writable folder with room for the largest object",
    cause: err,
  });
}
