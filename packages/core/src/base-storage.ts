import { randomBytes } from "node:crypto";
import { bodyPrefix, bodyToIterable, iterableToStream, knownSize, readAll } from "./body.js";
import { abortedError, isStorageError, StorageError, throwIfAborted, toStorageError } from "./errors.js";
import { createHasher, pickHashAlgorithm, sameHash } from "./hashes.js";
import { validateFolder, validateKey } from "./keys.js";
import { redactingLogger } from "./observe.js";
import { redact } from "./redact.js";
import type {
  Body,
  CallOptions,
  Capabilities,
  Download,
  Entry,
  GetOptions,
  HashAlgorithm,
  ListOptions,
  Logger,
  Progress,
  PutOptions,
  Storage,
  TestOptions,
  TestReport,
  TestStep,
  TestStepName,
} from "./types.js";

/** What every provider passes to {@link BaseStorage}. */
export interface BaseStorageInit {
  provider: string;
  /** The root as a URL with every secret removed. */
  location: string;
  capabilities: Capabilities;
  /** Create the root on first use instead of failing with `FolderMissing`. */
  createRoot?: boolean;
  logger?: Logger;
}

/** What a provider receives for a put: the body as lazily read pieces, and what is known about it. */
export interface PutRequest {
  key: string;
  /** The body, read once. It throws `Integrity` at its end if it does not hold `size` bytes. */
  source: AsyncIterable<Uint8Array>;
  size?: number;
  contentType?: string;
  ifNotExists: boolean;
  signal?: AbortSignal;
  /**
   * Reads the first `bytes` bytes of the body again (not metered) when the body can be read again
   * (bytes, a string, a Blob); `undefined` for streams. Lets a provider whose upload session was lost
   * start over in a new one without buffering the body.
   */
  rewind?: (bytes: number) => AsyncIterable<Uint8Array>;
}

export interface GetRequest {
  key: string;
  range?: { offset: number; length?: number };
  signal?: AbortSignal;
}

/** A provider's answer to a get: the entry and the raw bytes (only the range, when one was asked). */
export interface GetResult {
  entry: Entry;
  body: ReadableStream<Uint8Array>;
}

/**
 * The shared half of every provider, in the manner of OpenDAL's layers: it validates keys and
 * options, enforces the root rules (`FolderMissing`, `createRoot`), meters progress, verifies sizes and
 * hashes, maps every failure to a `StorageError` in context, honours abort signals, and implements
 * `test()`. A provider supplies the remote calls below and nothing else.
 */
export abstract class BaseStorage implements Storage {
  readonly provider: string;
  readonly location: string;
  readonly capabilities: Capabilities;
  protected readonly logger: Logger;
  private readonly autoCreateRoot: boolean;
  private rootConfirmed = false;
  private closed = false;

  constructor(init: BaseStorageInit) {
    this.provider = init.provider;
    this.location = redact(init.location);
    this.capabilities = Object.freeze({
      ...init.capabilities,
      hashes: Object.freeze([...init.capabilities.hashes]),
    });
    this.autoCreateRoot = init.createRoot ?? false;
    this.logger = redactingLogger(init.logger);
  }

  /** Direct children of `folder` (or every file below it when `recursive`); keys relative to the root. */
  protected abstract listEntries(
    folder: string,
    recursive: boolean,
    signal?: AbortSignal,
  ): AsyncIterable<Entry>;
  /** The entry for `key`; throws `NotFound` when missing. */
  protected abstract statEntry(key: string, signal?: AbortSignal): Promise<Entry>;
  /** Opens `key`; throws `NotFound` before any byte when missing. */
  protected abstract getObject(request: GetRequest): Promise<GetResult>;
  /** Stores the body; throws `AlreadyExists` when `ifNotExists` and the key exists. */
  protected abstract putObject(request: PutRequest): Promise<Entry>;
  /** Deletes `key`; a missing key is not an error. */
  protected abstract deleteObject(key: string, signal?: AbortSignal): Promise<void>;
  protected abstract rootExists(signal?: AbortSignal): Promise<boolean>;
  protected abstract createRootFolder(signal?: AbortSignal): Promise<void>;
  /** Proves the credentials work (fetch a token, say). Providers without credentials keep the default. */
  protected async checkCredentials(_signal?: AbortSignal): Promise<void> {}
  /** Releases the provider's resources. */
  protected async closeProvider(): Promise<void> {}

  protected context(operation: string, key?: string) {
    return key === undefined
      ? { provider: this.provider, operation }
      : { provider: this.provider, operation, key };
  }

  private guard(operation: string, key?: string, signal?: AbortSignal): void {
    if (this.closed) {
      throw new StorageError({
        ...this.context(operation, key),
        code: "InvalidConfig",
        message: "the storage was closed",
        hint: "open a new storage to make further calls",
      });
    }
    throwIfAborted(signal, this.context(operation, key));
  }

  protected folderMissing(operation: string, key?: string): StorageError {
    return new StorageError({
      ...this.context(operation, key),
      code: "FolderMissing",
      message: `the root folder ${this.location} does not exist`,
      hint: "check the path for a typo, then call createRoot() or pass createRoot: true (create-root=true in a URL) to create it",
    });
  }

  /** Fails with `FolderMissing` unless the root exists (remembered once seen), creating it if asked. */
  protected async ensureRoot(operation: string, key?: string, signal?: AbortSignal): Promise<void> {
    if (this.rootConfirmed) return;
    if (!(await this.rootExists(signal))) {
      if (!this.autoCreateRoot) throw this.folderMissing(operation, key);
      await this.createRootFolder(signal);
    }
    this.rootConfirmed = true;
  }

  /** A `NotFound` may mean the whole root is missing; tell the two apart for the user. */
  private async explainMissing(
    err: unknown,
    operation: string,
    key: string,
    signal?: AbortSignal,
  ): Promise<never> {
    if (isStorageError(err, "NotFound") && !this.rootConfirmed) {
      await this.ensureRoot(operation, key, signal);
    }
    throw err;
  }

  private async run<T>(
    operation: string,
    key: string | undefined,
    signal: AbortSignal | undefined,
    fn: () => Promise<T>,
  ) {
    const started = performance.now();
    try {
      this.guard(operation, key, signal);
      const result = await fn();
      this.logger.debug(
        { provider: this.provider, operation, key, ms: Math.round(performance.now() - started) },
        "ok",
      );
      return result;
    } catch (err) {
      const error = signal?.aborted
        ? abortedError(this.context(operation, key), signal.reason)
        : toStorageError(err, this.context(operation, key));
      this.logger.debug(
        { provider: this.provider, operation, key, code: error.code, error: error.message },
        "failed",
      );
      throw error;
    }
  }

  list(folder = "", options: ListOptions = {}): AsyncIterable<Entry> {
    const self = this;
    return {
      [Symbol.asyncIterator]: async function* () {
        const context = self.context("list", folder === "" ? undefined : folder);
        let prefix: string;
        try {
          self.guard("list", context.key, options.signal);
          prefix = validateFolder(folder, context);
          await self.ensureRoot("list", context.key, options.signal);
        } catch (err) {
          throw toStorageError(err, context);
        }
        const iterator = self
          .listEntries(prefix, options.recursive ?? false, options.signal)
          [Symbol.asyncIterator]();
        try {
          while (true) {
            let next: IteratorResult<Entry>;
            try {
              throwIfAborted(options.signal, context);
              next = await iterator.next();
            } catch (err) {
              if (options.signal?.aborted) throw abortedError(context, options.signal.reason);
              throw toStorageError(err, context);
            }
            if (next.done) return;
            yield next.value;
          }
        } finally {
          await iterator.return?.();
        }
      },
    };
  }

  stat(key: string, options: CallOptions = {}): Promise<Entry> {
    return this.run("stat", key, options.signal, async () => {
      validateKey(key, this.context("stat"));
      try {
        return await this.statEntry(key, options.signal);
      } catch (err) {
        return this.explainMissing(err, "stat", key, options.signal);
      }
    });
  }

  get(key: string, options: GetOptions = {}): Promise<Download> {
    return this.run("get", key, options.signal, async () => {
      validateKey(key, this.context("get"));
      const range = this.checkRange(key, options.range);
      if (range && !this.capabilities.rangeRead) {
        throw new StorageError({
          ...this.context("get", key),
          code: "Unsupported",
          message: "this provider cannot read ranges",
        });
      }
      let result: GetResult;
      try {
        result = await this.getObject({ key, range, signal: options.signal });
      } catch (err) {
        return this.explainMissing(err, "get", key, options.signal);
      }
      return this.download(key, result, options, range);
    });
  }

  private checkRange(key: string, range: GetOptions["range"]) {
    if (range === undefined) return undefined;
    const { offset, length } = range;
    const valid =
      Number.isSafeInteger(offset) &&
      offset >= 0 &&
      (length === undefined || (Number.isSafeInteger(length) && length >= 0));
    if (!valid) {
      throw new StorageError({
        ...this.context("get", key),
        code: "InvalidConfig",
        message: `invalid range { offset: ${offset}, length: ${length} }`,
        hint: "offset and length must be non-negative integers",
      });
    }
    return { offset, length };
  }

  private download(
    key: string,
    result: GetResult,
    options: GetOptions,
    range: { offset: number; length?: number } | undefined,
  ): Download {
    const { entry } = result;
    const context = this.context("get", key);
    const expectedSize =
      entry.size === undefined
        ? undefined
        : range
          ? Math.max(0, Math.min(range.length ?? Number.POSITIVE_INFINITY, entry.size - range.offset))
          : entry.size;
    const algorithm: HashAlgorithm | undefined =
      range === undefined && options.verify !== false && entry.hashes !== undefined
        ? pickHashAlgorithm(this.capabilities.hashes, entry.hashes)
        : undefined;
    const hasher = algorithm ? createHasher(algorithm) : undefined;
    const verifySize = options.verify !== false && expectedSize !== undefined;
    const onProgress = options.onProgress;
    const signal = options.signal;
    const source = result.body;

    async function* verified(): AsyncGenerator<Uint8Array> {
      let bytes = 0;
      const reader = source.getReader();
      let finished = false;
      // A read blocked on the network must end when the caller aborts.
      const onAbort = () => void reader.cancel(signal?.reason).catch(() => undefined);
      signal?.addEventListener("abort", onAbort, { once: true });
      try {
        while (true) {
          const next = await reader.read();
          throwIfAborted(signal, context);
          if (next.done) break;
          const chunk = next.value;
          bytes += chunk.byteLength;
          if (verifySize && bytes > expectedSize!) {
            throw new StorageError({
              ...context,
              code: "Integrity",
              message: `received more than the expected ${expectedSize} bytes`,
            });
          }
          hasher?.update(chunk);
          yield chunk;
          onProgress?.({ bytes, total: expectedSize });
        }
        finished = true;
      } catch (err) {
        throw signal?.aborted ? abortedError(context, signal.reason) : toStorageError(err, context);
      } finally {
        signal?.removeEventListener("abort", onAbort);
        if (!finished) await reader.cancel().catch(() => undefined);
        reader.releaseLock();
      }
      if (verifySize && bytes !== expectedSize) {
        throw new StorageError({
          ...context,
          code: "Integrity",
          message: `received ${bytes} bytes, expected ${expectedSize}; the download was cut short or the object changed`,
          hint: "retry the download",
        });
      }
      if (hasher && algorithm) {
        const actual = hasher.digest();
        const expected = entry.hashes![algorithm]!;
        if (!sameHash(algorithm, actual, expected)) {
          throw new StorageError({
            ...context,
            code: "Integrity",
            message: `the ${algorithm} of the received bytes (${actual}) differs from the stored one (${expected})`,
            hint: "retry the download; if it persists, the stored object is damaged",
          });
        }
      }
    }
    return makeDownload(entry, iterableToStream(verified()));
  }

  put(key: string, body: Body, options: PutOptions = {}): Promise<Entry> {
    return this.run("put", key, options.signal, async () => {
      const context = this.context("put", key);
      validateKey(key, { provider: this.provider, operation: "put" });
      const bodySize = knownSize(body);
      if (options.size !== undefined && (!Number.isSafeInteger(options.size) || options.size < 0)) {
        throw new StorageError({
          ...context,
          code: "InvalidConfig",
          message: `size must be a non-negative integer, not ${options.size}`,
        });
      }
      if (options.size !== undefined && bodySize !== undefined && options.size !== bodySize) {
        throw new StorageError({
          ...context,
          code: "InvalidConfig",
          message: `options.size is ${options.size} but the body holds ${bodySize} bytes`,
          hint: "omit size for bodies that know their length",
        });
      }
      const size = options.size ?? bodySize;
      const max = this.capabilities.maxObjectSize;
      if (size !== undefined && max !== undefined && size > max) {
        throw new StorageError({
          ...context,
          code: "Unsupported",
          message: `the object is ${size} bytes; this provider stores at most ${max}`,
        });
      }
      await this.ensureRoot("put", key, options.signal);
      const ifNotExists = options.ifNotExists ?? false;
      if (ifNotExists && !this.capabilities.conditionalPut) await this.failIfExists(key, options.signal);

      const verify = options.verify !== false;
      const algorithm = verify ? pickHashAlgorithm(this.capabilities.hashes) : undefined;
      const hasher = algorithm ? createHasher(algorithm) : undefined;
      let sent = 0;
      const progress = progressReporter(options.onProgress, size);
      const source = meter(bodyToIterable(body), size, context, options.signal, (piece) => {
        sent += piece.byteLength;
        hasher?.update(piece);
        progress(sent);
      });
      const entry = await this.putObject({
        key,
        source,
        size,
        contentType: options.contentType,
        ifNotExists,
        signal: options.signal,
        rewind: bodyPrefix(body),
      });
      throwIfAborted(options.signal, context);
      if (verify) this.verifyStored(entry, sent, algorithm, hasher?.digest(), context);
      progress(sent, true);
      return entry;
    });
  }

  private async failIfExists(key: string, signal?: AbortSignal): Promise<void> {
    try {
      await this.statEntry(key, signal);
    } catch (err) {
      if (isStorageError(err, "NotFound")) return;
      throw err;
    }
    throw new StorageError({
      ...this.context("put", key),
      code: "AlreadyExists",
      message: "an object with this key already exists",
      hint: "delete it first or put without ifNotExists",
    });
  }

  private verifyStored(
    entry: Entry,
    sent: number,
    algorithm: HashAlgorithm | undefined,
    digest: string | undefined,
    context: { provider: string; operation: string; key?: string },
  ): void {
    if (entry.size !== undefined && entry.size !== sent) {
      throw new StorageError({
        ...context,
        code: "Integrity",
        message: `sent ${sent} bytes but the provider stored ${entry.size}`,
        hint: "put the object again",
      });
    }
    const stored = algorithm ? entry.hashes?.[algorithm] : undefined;
    if (algorithm && digest && stored && !sameHash(algorithm, digest, stored)) {
      throw new StorageError({
        ...context,
        code: "Integrity",
        message: `the ${algorithm} the provider stored (${stored}) differs from the bytes sent (${digest})`,
        hint: "put the object again",
      });
    }
  }

  delete(key: string, options: CallOptions = {}): Promise<void> {
    return this.run("delete", key, options.signal, async () => {
      validateKey(key, this.context("delete"));
      await this.ensureRoot("delete", key, options.signal);
      try {
        await this.deleteObject(key, options.signal);
      } catch (err) {
        if (!isStorageError(err, "NotFound")) throw err;
      }
    });
  }

  createRoot(options: CallOptions = {}): Promise<void> {
    return this.run("createRoot", undefined, options.signal, async () => {
      if (!(await this.rootExists(options.signal))) await this.createRootFolder(options.signal);
      this.rootConfirmed = true;
    });
  }

  async test(options: TestOptions = {}): Promise<TestReport> {
    const steps: TestStep[] = [];
    const signal = options.signal;
    const step = async (name: TestStepName, fn: () => Promise<void>): Promise<boolean> => {
      const started = performance.now();
      try {
        this.guard("test", undefined, signal);
        await fn();
        steps.push({ name, ok: true, ms: Math.round(performance.now() - started) });
        return true;
      } catch (err) {
        const error = toStorageError(err, this.context("test"));
        steps.push({
          name,
          ok: false,
          ms: Math.round(performance.now() - started),
          error: { code: error.code, message: error.message, ...(error.hint ? { hint: error.hint } : {}) },
        });
        return false;
      }
    };
    const ok =
      (await step("credentials", () => this.checkCredentials(signal))) &&
      (await step("root", async () => {
        if (await this.rootExists(signal)) return;
        if (!this.autoCreateRoot) throw this.folderMissing("test");
        await this.createRootFolder(signal);
      })) &&
      (await step("list", async () => {
        const iterator = this.listEntries("", false, signal)[Symbol.asyncIterator]();
        await iterator.next();
        await iterator.return?.();
      })) &&
      (!options.write || (await this.writeProbe(step, signal)));
    return { ok, provider: this.provider, location: this.location, steps };
  }

  private async writeProbe(
    step: (name: TestStepName, fn: () => Promise<void>) => Promise<boolean>,
    signal?: AbortSignal,
  ): Promise<boolean> {
    const probeKey = `.stowage-test-${randomBytes(6).toString("hex")}`;
    const probe = randomBytes(1024);
    let written = false;
    try {
      written = await step("write", async () => {
        await this.put(probeKey, probe, { signal });
      });
      const read =
        written &&
        (await step("read", async () => {
          const download = await this.get(probeKey, { signal });
          const back = await download.bytes();
          if (Buffer.compare(Buffer.from(back), probe) !== 0) {
            throw new StorageError({
              ...this.context("test", probeKey),
              code: "Integrity",
              message: "the probe read back differs from what was written",
            });
          }
        }));
      const deleted = written && (await step("delete", () => this.delete(probeKey, { signal })));
      if (deleted) written = false;
      return written === false && read && deleted;
    } finally {
      // Never leave the probe behind, even when a step failed or the test was aborted.
      if (written) await this.deleteObject(probeKey).catch(() => undefined);
    }
  }

  /** Safe to log: the location has no secret. */
  toString(): string {
    return `Storage(${this.provider} ${this.location})`;
  }

  /** `console.log(storage)` shows the same, never the provider's internals. */
  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return this.toString();
  }

  /** What `JSON.stringify(storage)` shows: never the provider's internals (clients, credentials). */
  toJSON(): { provider: string; location: string; capabilities: Capabilities } {
    return { provider: this.provider, location: this.location, capabilities: this.capabilities };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.closeProvider();
  }
}

/** A {@link Download} over a stream. */
export function makeDownload(entry: Entry, body: ReadableStream<Uint8Array>): Download {
  return {
    entry,
    body,
    bytes: () => readAll(body),
    text: async () => new TextDecoder().decode(await readAll(body)),
  };
}

function progressReporter(onProgress: ((p: Progress) => void) | undefined, total: number | undefined) {
  let last = -1;
  return (bytes: number, final = false) => {
    if (!onProgress || bytes === last) return;
    if (final && last === bytes) return;
    last = bytes;
    onProgress(total === undefined ? { bytes, total: final ? bytes : undefined } : { bytes, total });
  };
}

/**
 * Counts the body as the provider reads it, and fails the read (so the provider's write fails before it
 * commits) when the body does not hold the declared size.
 */
async function* meter(
  source: AsyncIterable<Uint8Array>,
  size: number | undefined,
  context: { provider: string; operation: string; key?: string },
  signal: AbortSignal | undefined,
  onPiece: (piece: Uint8Array) => void,
): AsyncGenerator<Uint8Array> {
  let count = 0;
  for await (const piece of source) {
    // Checked per piece so that a provider fails its write before it commits anything.
    throwIfAborted(signal, context);
    if (piece.byteLength === 0) continue;
    count += piece.byteLength;
    if (size !== undefined && count > size) {
      throw new StorageError({
        ...context,
        code: "Integrity",
        message: `the body holds more than the declared ${size} bytes`,
        hint: "pass the body's real size, or none",
      });
    }
    onPiece(piece);
    yield piece;
  }
  throwIfAborted(signal, context);
  if (size !== undefined && count !== size) {
    throw new StorageError({
      ...context,
      code: "Integrity",
      message: `the body ended after ${count} bytes; ${size} were declared`,
      hint: "pass the body's real size, or none",
    });
  }
}
