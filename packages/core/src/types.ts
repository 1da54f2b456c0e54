/** The hash algorithms an {@link Entry} can carry. */
export type HashAlgorithm = "md5" | "sha1" | "sha256" | "crc32c" | "quickXor";

/** Hashes of an object's content: md5/sha1/sha256/crc32c as lowercase hex; quickXor as OneDrive's base64. */
export type Hashes = Partial<Record<HashAlgorithm, string>>;

/** One object or folder as a storage reports it. */
export interface Entry {
  /** Relative to the storage's root, `/`-separated, no leading or trailing `/`. */
  key: string;
  kind: "file" | "folder";
  /** Size in bytes; files only. */
  size?: number;
  modified?: Date;
  etag?: string;
  hashes?: Hashes;
}

/**
 * What `put` accepts. Bodies of unknown length (streams, iterables) are welcome: they are read once,
 * in chunks, and memory stays bounded by the provider's chunk size.
 */
export type Body =
  | Uint8Array
  | string
  | Blob
  | ReadableStream<Uint8Array>
  | NodeJS.ReadableStream
  | AsyncIterable<Uint8Array>;

/** A streamed object: `body` is read once; `bytes()` and `text()` consume it. */
export interface Download {
  readonly entry: Entry;
  readonly body: ReadableStream<Uint8Array>;
  bytes(): Promise<Uint8Array>;
  text(): Promise<string>;
}

export interface CallOptions {
  /** Aborting rejects the call with `Aborted` and stops its network work promptly. */
  signal?: AbortSignal;
}

export interface ListOptions extends CallOptions {
  /** Yield every file below the folder (no folder entries) instead of its direct children. */
  recursive?: boolean;
}

export interface Progress {
  /** Bytes transferred so far; never decreases. */
  bytes: number;
  /** The total, when known. */
  total?: number;
}

export interface GetOptions extends CallOptions {
  /** Read `length` bytes from `offset` (to the end when `length` is absent). */
  range?: { offset: number; length?: number };
  /**
   * Check the bytes against the provider's hash and size as they stream; a mismatch errors the stream
   * with `Integrity`. Default: on for whole-object reads when the provider reports a hash.
   */
  verify?: boolean;
  onProgress?: (progress: Progress) => void;
}

export interface PutOptions extends CallOptions {
  /** The body's size in bytes, when the body does not tell it (streams). A mismatch is `Integrity`. */
  size?: number;
  contentType?: string;
  /** Fail with `AlreadyExists` if the key exists (atomically where `capabilities.conditionalPut`). */
  ifNotExists?: boolean;
  /** Compare the stored size and the provider's hash with what was sent (default on). */
  verify?: boolean;
  onProgress?: (progress: Progress) => void;
}

export interface TestOptions extends CallOptions {
  /** Also write, read back and delete a probe object. */
  write?: boolean;
}

export type TestStepName = "credentials" | "root" | "list" | "write" | "read" | "delete";

export interface TestStep {
  name: TestStepName;
  ok: boolean;
  ms: number;
  /** Set when the step failed. */
  error?: { code: string; message: string; hint?: string };
}

export interface TestReport {
  ok: boolean;
  provider: string;
  location: string;
  steps: TestStep[];
}

/** What a provider can do. Callers and the conformance suite switch on these, never on provider names. */
export interface Capabilities {
  /** OneDrive: false ("A" and "a" are one object). */
  caseSensitive: boolean;
  rangeRead: boolean;
  /** A failed or aborted put never leaves a partial object visible under the key. */
  atomicPut: boolean;
  /** `ifNotExists` is atomic on the server, not check-then-write. */
  conditionalPut: boolean;
  resumableUpload: boolean;
  /** The hashes entries carry, in order of preference. */
  hashes: readonly HashAlgorithm[];
  folders: "real" | "virtual";
  maxObjectSize?: number;
}

/**
 * A bucket of blobs. Every provider implements this contract; the conformance suite
 * (`@stowage/core/conformance`) checks each sentence below.
 *
 * Behaviour:
 * - **Root.** A storage is opened on a root. If the root does not exist, every call fails with
 *   `FolderMissing`, whose hint says to call `createRoot()` or pass `createRoot: true`. Nothing creates
 *   the root silently. Folders below the root are implicit: `put("a/b/c")` creates `a` and `a/b`.
 * - Keys are strict (see `validateKey`): `"/a"`, `"a/"`, `"a//b"` throw `InvalidKey`.
 * - Every call takes an `AbortSignal`; aborting rejects with `Aborted`.
 *
 * @example
 * const storage = await connect("file:///srv/backups/pc1?create-root=true");
 * await storage.put("vol/0001.zip", fs.createReadStream("0001.zip"));
 * for await (const entry of storage.list("vol")) console.log(entry.key, entry.size);
 */
export interface Storage {
  /** `"onedrive" | "gdrive" | "s3" | "webdav" | "fs" | "memory" | …` */
  readonly provider: string;
  /** The root as a URL with every secret removed; safe to log. */
  readonly location: string;
  readonly capabilities: Capabilities;
  /**
   * Yields the entries directly inside `folder` (default: the root), files and folders, each with its
   * full key; with `recursive`, every file below it and no folder entries. Paging is internal and lazy:
   * the next page is fetched only when the iterator is consumed. A missing folder below the root yields
   * nothing. Order is unspecified.
   */
  list(folder?: string, options?: ListOptions): AsyncIterable<Entry>;
  /** The entry for `key`, or `NotFound`. */
  stat(key: string, options?: CallOptions): Promise<Entry>;
  /**
   * Opens `key` for reading. A missing key throws `NotFound` before any byte is read. With `verify`,
   * a hash or size mismatch errors the stream with `Integrity`.
   */
  get(key: string, options?: GetOptions): Promise<Download>;
  /**
   * Stores the whole body under `key` or nothing. Replaces an existing object (never a duplicate)
   * unless `ifNotExists`, which fails with `AlreadyExists`. Memory stays bounded by the chunk size.
   * Returns the stored entry; with `verify` (default on) a size or hash mismatch throws `Integrity`.
   */
  put(key: string, body: Body, options?: PutOptions): Promise<Entry>;
  /** Deletes `key`; deleting a missing key succeeds. */
  delete(key: string, options?: CallOptions): Promise<void>;
  /** Creates the root and its parents; idempotent. */
  createRoot(options?: CallOptions): Promise<void>;
  /**
   * Checks, in order: credentials, the root exists (`FolderMissing` otherwise), listing works, and with
   * `write: true` a probe object can be written, read back and deleted. Never leaves the probe behind.
   * Resolves with the report; it does not throw for a failed step.
   */
  test(options?: TestOptions): Promise<TestReport>;
  /** Releases connections and timers. Further calls fail. */
  close(): Promise<void>;
}

/**
 * A source of bearer tokens. Declared in core so that providers need no auth code; the strategies
 * live in `@stowage/auth`.
 */
export interface TokenSource {
  readonly kind: string;
  getToken(options?: CallOptions): Promise<{ token: string; expiresAt?: Date }>;
  /** The remote rejected this token: drop it if it is still the current one. */
  invalidate(token: string): void;
}

/** pino's method shape; every argument passed is already redacted. */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** A user name and password (WebDAV, app passwords). `get` is called per use, so it may rotate. */
export interface BasicCredentials {
  readonly kind: "basic";
  get(options?: CallOptions): Promise<{ username: string; password: string }>;
}

/** S3-style access keys. `get` is called per use, so it may rotate. */
export interface StaticCredentials {
  readonly kind: "static";
  get(
    options?: CallOptions,
  ): Promise<{ accessKeyId: string; secretAccessKey: string; sessionToken?: string }>;
}
