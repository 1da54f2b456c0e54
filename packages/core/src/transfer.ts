import { randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { rename, stat, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { StorageError, throwIfAborted, toStorageError } from "./errors.js";
import { sameHash } from "./hashes.js";
import { createLimiter } from "./limiter.js";
import type { CallOptions, Entry, GetOptions, HashAlgorithm, PutOptions, Storage } from "./types.js";

/**
 * Uploads a local file. The size is taken from the file, so the provider can choose a single request
 * or a chunked upload up front.
 *
 * @example
 * await putFile(storage, "vol/0001.zip", "/tmp/0001.zip", { onProgress: (p) => console.log(p.bytes) });
 */
export async function putFile(
  storage: Storage,
  key: string,
  path: string,
  options: Omit<PutOptions, "size"> = {},
): Promise<Entry> {
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch (err) {
    const context = { provider: storage.provider, operation: "putFile", key };
    if ((err as { code?: unknown }).code === "ENOENT") {
      throw new StorageError({
        ...context,
        code: "NotFound",
        message: `the local file '${path}' does not exist`,
        cause: err,
      });
    }
    throw toStorageError(err, context);
  }
  return storage.put(key, createReadStream(path, { highWaterMark: 1024 * 1024, signal: options.signal }), {
    ...options,
    size,
  });
}

/**
 * Downloads an object to a local file, safely: the bytes go to a temporary file in the same folder,
 * the size (and the provider's hash, when it reports one) is verified, and only then is the file
 * renamed into place. A failed download leaves any existing file at `path` untouched.
 */
export async function getFile(
  storage: Storage,
  key: string,
  path: string,
  options: Omit<GetOptions, "range"> = {},
): Promise<Entry> {
  const context = { provider: storage.provider, operation: "getFile", key };
  const temp = join(dirname(path), `.${basename(path).slice(0, 200)}.${randomBytes(6).toString("hex")}.part`);
  try {
    const download = await storage.get(key, { ...options, verify: options.verify ?? true });
    await pipeline(
      Readable.fromWeb(download.body as import("node:stream/web").ReadableStream),
      createWriteStream(temp, { flags: "wx" }),
      {
        signal: options.signal,
      },
    );
    const written = (await stat(temp)).size;
    if (download.entry.size !== undefined && written !== download.entry.size) {
      throw new StorageError({
        ...context,
        code: "Integrity",
        message: `wrote ${written} bytes, expected ${download.entry.size}`,
        hint: "retry the download",
      });
    }
    await rename(temp, path);
    return download.entry;
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw toStorageError(err, context);
  }
}

export interface CopyAllOptions extends CallOptions {
  /** Copy only below this folder of the source (keys keep their path relative to the source root). */
  folder?: string;
  /** Parallel transfers; default 4. */
  concurrency?: number;
  /** Skip a key whose size and a shared hash match at the destination (default true). */
  skipSame?: boolean;
  onProgress?: (progress: CopyProgress) => void;
}

export interface CopyProgress {
  /** Objects copied, skipped and failed so far. */
  copied: number;
  skipped: number;
  failed: number;
  /** Bytes copied so far. */
  bytes: number;
  /** The key just finished. */
  key: string;
}

export interface CopyResult {
  copied: number;
  skipped: number;
  bytes: number;
  /** Keys that failed, with their errors; the copy goes on past a failed key. */
  failures: Array<{ key: string; error: StorageError }>;
}

function sharedHash(a: Entry, b: Entry): HashAlgorithm | undefined {
  const preferred: HashAlgorithm[] = ["sha256", "sha1", "md5", "crc32c", "quickXor"];
  return preferred.find((alg) => a.hashes?.[alg] !== undefined && b.hashes?.[alg] !== undefined);
}

function isSame(source: Entry, target: Entry): boolean {
  if (source.size === undefined || source.size !== target.size) return false;
  const alg = sharedHash(source, target);
  return alg !== undefined && sameHash(alg, source.hashes![alg]!, target.hashes![alg]!);
}

/**
 * Streams every object from `source` to `destination`, `concurrency` at a time, with progress. A key
 * whose size and a shared hash already match at the destination is skipped. Failed keys are
 * collected in the result (the rest are still copied); an abort stops at once.
 */
export async function copyAll(
  source: Storage,
  destination: Storage,
  options: CopyAllOptions = {},
): Promise<CopyResult> {
  const limiter = createLimiter(options.concurrency ?? 4);
  const skipSame = options.skipSame ?? true;
  const result: CopyResult = { copied: 0, skipped: 0, bytes: 0, failures: [] };
  const running = new Set<Promise<void>>();
  const report = (key: string) =>
    options.onProgress?.({
      copied: result.copied,
      skipped: result.skipped,
      failed: result.failures.length,
      bytes: result.bytes,
      key,
    });

  const copyOne = async (entry: Entry): Promise<void> => {
    try {
      if (skipSame) {
        const existing = await destination.stat(entry.key, { signal: options.signal }).catch(() => undefined);
        if (existing && isSame(entry, existing)) {
          result.skipped++;
          report(entry.key);
          return;
        }
      }
      const download = await source.get(entry.key, { signal: options.signal });
      await destination.put(entry.key, download.body, { size: download.entry.size, signal: options.signal });
      result.copied++;
      result.bytes += download.entry.size ?? 0;
    } catch (err) {
      const error = toStorageError(err, {
        provider: destination.provider,
        operation: "copyAll",
        key: entry.key,
      });
      if (error.code === "Aborted") throw error;
      result.failures.push({ key: entry.key, error });
    }
    report(entry.key);
  };

  for await (const entry of source.list(options.folder ?? "", { recursive: true, signal: options.signal })) {
    throwIfAborted(options.signal, { provider: source.provider, operation: "copyAll" });
    // Bounded: at most `concurrency` copies in flight and as many waiting for a slot.
    while (running.size >= (options.concurrency ?? 4) * 2) await Promise.race(running);
    const task = limiter.run(() => copyOne(entry), options.signal).finally(() => running.delete(task));
    running.add(task);
  }
  await Promise.all(running);
  return result;
}
