import { mkdtempSync, openAsBlob, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { personalAccessToken } from "@stowage/auth";
import { isStorageError, type StorageError } from "@stowage/core";
import { type GraphEmulator, type GraphEmulatorOptions, startGraphEmulator } from "@stowage/emulators";
import { afterEach } from "vitest";
import {
  createOneDriveStorage,
  FRAGMENT_MULTIPLE,
  type OneDriveStorage,
  type OneDriveStorageOptions,
} from "../../src/index.js";

export { FRAGMENT_MULTIPLE };

const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Runs `cleanup` after the current test. */
export function onCleanup(cleanup: () => Promise<void> | void): void {
  cleanups.push(cleanup);
}

export async function emulator(options: GraphEmulatorOptions = {}): Promise<GraphEmulator> {
  const graph = await startGraphEmulator(options);
  onCleanup(() => graph.close());
  return graph;
}

/** A folder for the upload's temporary copies, checked empty by `spoolFiles`. */
export function spoolDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "stowage-onedrive-test-"));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * A Blob backed by a file, as `fs.openAsBlob` gives: its stream comes in 64 KiB pieces, and it can be
 * read again (an in-memory Blob streams as one piece, which the upload keeps whole instead).
 */
export async function fileBlob(data: Uint8Array): Promise<Blob> {
  const path = join(spoolDir(), "body.bin");
  writeFileSync(path, data);
  return openAsBlob(path);
}

export function spoolFiles(dir: string): string[] {
  return readdirSync(dir);
}

/** A storage on the emulator with small fragments, a small cutoff and quick retries; root `Backups/pc1`. */
export function storageOn(
  graph: GraphEmulator,
  options: Partial<OneDriveStorageOptions> = {},
): OneDriveStorage {
  const storage = createOneDriveStorage({
    auth: personalAccessToken("test-token"),
    graphUrl: graph.graphUrl,
    root: "Backups/pc1",
    fragmentSize: FRAGMENT_MULTIPLE,
    simpleUploadCutoff: 64 * 1024,
    retry: { minDelayMs: 5, maxDelayMs: 2_000 },
    ...options,
  });
  onCleanup(() => storage.close());
  return storage;
}

/** Deterministic bytes. */
export function bytesOf(size: number, seed = 1): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed * 2654435761;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

/**
 * A streamed body in 64 KiB pieces that calls `at(offset)` when it is about to yield the piece that
 * starts at or after each offset in `marks` (once each): a way to make something happen mid-upload.
 */
export async function* streamed(
  bytes: Uint8Array,
  marks: ReadonlyMap<number, () => void> = new Map(),
): AsyncGenerator<Uint8Array> {
  const pending = [...marks.entries()].sort(([a], [b]) => a - b);
  for (let offset = 0; offset < bytes.byteLength; offset += 65_536) {
    while (pending.length > 0 && pending[0]![0] <= offset) pending.shift()![1]();
    yield bytes.slice(offset, offset + 65_536);
  }
}

export async function failure(promise: Promise<unknown>): Promise<StorageError> {
  try {
    await promise;
  } catch (err) {
    if (!isStorageError(err)) throw err;
    return err;
  }
  throw new Error("expected the call to fail");
}

/** Fragments the upload host accepted or refused for one put, from the emulator's request log. */
export function fragmentRequests(graph: GraphEmulator) {
  return graph.requests.filter((request) => request.host === "upload" && request.method === "PUT");
}
