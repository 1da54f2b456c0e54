import { randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import {
  type FileHandle,
  link,
  lstat,
  mkdir,
  open,
  opendir,
  realpath,
  rename,
  rmdir,
  stat,
  unlink,
} from "node:fs/promises";
import { isAbsolute, join, resolve, sep } from "node:path";
import { Readable } from "node:stream";
import { pathToFileURL } from "node:url";
import { BaseStorage, type GetRequest, type GetResult, type PutRequest } from "../base-storage.js";
import { StorageError, throwIfAborted } from "../errors.js";
import { joinKey, normalizeRoot, parentOf } from "../keys.js";
import type { Capabilities, Entry, Logger } from "../types.js";

export interface FsStorageOptions {
  /** An absolute folder path. */
  root: string;
  /** Create the root (and its parents) on first use instead of failing with `FolderMissing`. */
  createRoot?: boolean;
  /** Entries read per directory batch while listing. Default 1000. */
  pageSize?: number;
  /** Call fsync before the rename that publishes a put (default true: a put survives a power cut). */
  fsync?: boolean;
  logger?: Logger;
}

const fsCapabilities: Capabilities = {
  caseSensitive: true,
  rangeRead: true,
  atomicPut: true,
  conditionalPut: true,
  resumableUpload: false,
  hashes: [],
  folders: "real",
};

// Temporary files start with U+0001, a character no key may contain, so a listing can tell them
// from objects without ever hiding a real key.
const TEMP_PREFIX = "\u0001stowage-";

function isTempName(name: string): boolean {
  return name.startsWith(TEMP_PREFIX);
}

function errnoOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/**
 * A storage in a local folder. Puts are atomic: the body goes to a temporary file in the target's
 * folder, is fsynced, and is renamed over the target, so a reader sees the old object or the new one,
 * never a part. No key can reach outside the root: keys have no `.`/`..` segments, and symbolic
 * links that lead out of the root are refused.
 *
 * @example
 * const storage = createFsStorage({ root: "/srv/backups/pc1", createRoot: true });
 */
export function createFsStorage(options: FsStorageOptions): FsStorage {
  return new FsStorage(options);
}

export class FsStorage extends BaseStorage {
  private readonly root: string;
  private readonly pageSize: number;
  private readonly fsync: boolean;
  private realRoot: string | undefined;

  constructor(options: FsStorageOptions) {
    const context = { provider: "fs", operation: "open" };
    if (typeof options.root !== "string" || !isAbsolute(options.root)) {
      throw new StorageError({
        ...context,
        code: "InvalidConfig",
        message: `the root must be an absolute path, not '${String(options.root)}'`,
        hint: "pass an absolute folder path, or a file:///absolute/path URL",
      });
    }
    const root = resolve(`/${normalizeRoot(options.root, context)}`);
    super({
      provider: "fs",
      location: pathToFileURL(root).href,
      capabilities: fsCapabilities,
      createRoot: options.createRoot,
      logger: options.logger,
    });
    this.root = root;
    this.pageSize = options.pageSize ?? 1000;
    this.fsync = options.fsync ?? true;
  }

  private path(key: string): string {
    return key === "" ? this.root : join(this.root, ...key.split("/"));
  }

  private async inside(path: string, operation: string, key: string): Promise<void> {
    this.realRoot ??= await realpath(this.root);
    let real: string;
    try {
      real = await realpath(path);
    } catch (err) {
      if (errnoOf(err) === "ENOENT") return;
      throw err;
    }
    if (real !== this.realRoot && !real.startsWith(this.realRoot + sep)) {
      throw new StorageError({
        provider: this.provider,
        operation,
        key,
        code: "PermissionDenied",
        message: "the path leads outside the root through a symbolic link",
        hint: "remove the link or open the storage on the link's target",
      });
    }
  }

  private fail(err: unknown, operation: string, key: string): never {
    const code = errnoOf(err);
    const base = { provider: this.provider, operation, key, cause: err };
    if (code === "ENOENT")
      throw new StorageError({ ...base, code: "NotFound", message: "no object has this key" });
    if (code === "EISDIR")
      throw new StorageError({ ...base, code: "NotFound", message: "this is a folder, not an object" });
    if (code === "ENOTDIR") {
      throw new StorageError({
        ...base,
        code: operation === "put" ? "Conflict" : "NotFound",
        message: "a parent of this key is an object, not a folder",
      });
    }
    throw err;
  }

  private toEntry(
    key: string,
    info: { size: number; mtime: Date; mtimeMs: number; ino: number; isDirectory(): boolean },
  ): Entry {
    if (info.isDirectory()) return { key, kind: "folder", modified: info.mtime };
    return {
      key,
      kind: "file",
      size: info.size,
      modified: info.mtime,
      etag: `"${info.ino.toString(16)}-${Math.floor(info.mtimeMs * 1000).toString(16)}-${info.size.toString(16)}"`,
    };
  }

  protected async *listEntries(
    folder: string,
    recursive: boolean,
    signal?: AbortSignal,
  ): AsyncGenerator<Entry> {
    const pending = [folder];
    while (pending.length > 0) {
      const current = pending.shift()!;
      let dir: Awaited<ReturnType<typeof opendir>>;
      try {
        await this.inside(this.path(current), "list", current);
        dir = await opendir(this.path(current), { bufferSize: Math.min(this.pageSize, 1024) });
      } catch (err) {
        const code = errnoOf(err);
        // A missing folder (or an object where a folder was named) lists empty.
        if (code === "ENOENT" || code === "ENOTDIR") continue;
        throw err;
      }
      for await (const dirent of dir) {
        throwIfAborted(signal, { provider: this.provider, operation: "list", key: folder || undefined });
        if (isTempName(dirent.name)) continue;
        const key = joinKey(current, dirent.name);
        let kind: "file" | "folder" | undefined;
        if (dirent.isDirectory()) kind = "folder";
        else if (dirent.isFile()) kind = "file";
        else if (dirent.isSymbolicLink()) {
          const target = await stat(this.path(key)).catch(() => undefined);
          kind = target?.isDirectory() ? "folder" : target?.isFile() ? "file" : undefined;
        }
        if (kind === "folder") {
          if (recursive) pending.push(key);
          else yield { key, kind };
        } else if (kind === "file") {
          const info = await stat(this.path(key)).catch(() => undefined);
          if (info?.isFile()) yield this.toEntry(key, info);
        }
      }
    }
  }

  protected async rootExists(): Promise<boolean> {
    try {
      return (await stat(this.root)).isDirectory();
    } catch (err) {
      if (errnoOf(err) === "ENOENT" || errnoOf(err) === "ENOTDIR") return false;
      throw err;
    }
  }

  protected async createRootFolder(): Promise<void> {
    await mkdir(this.root, { recursive: true });
    this.realRoot = undefined;
  }

  protected async statEntry(key: string): Promise<Entry> {
    const path = this.path(key);
    try {
      await this.inside(path, "stat", key);
      const info = await stat(path);
      if (info.isDirectory()) throw Object.assign(new Error("is a directory"), { code: "EISDIR" });
      return this.toEntry(key, info);
    } catch (err) {
      return this.fail(err, "stat", key);
    }
  }

  protected async getObject({ key, range, signal }: GetRequest): Promise<GetResult> {
    const path = this.path(key);
    let handle: FileHandle;
    let entry: Entry;
    try {
      await this.inside(path, "get", key);
      handle = await open(path, "r");
      const info = await handle.stat();
      if (info.isDirectory()) {
        await handle.close();
        throw Object.assign(new Error("is a directory"), { code: "EISDIR" });
      }
      entry = this.toEntry(key, info);
    } catch (err) {
      return this.fail(err, "get", key);
    }
    const size = entry.size ?? 0;
    const start = Math.min(range?.offset ?? 0, size);
    const end = range?.length === undefined ? size : Math.min(start + range.length, size);
    if (end <= start) {
      await handle.close();
      return { entry, body: new ReadableStream({ start: (c) => c.close() }) };
    }
    // Reading from the open handle: a rename over the path meanwhile cannot mix two objects.
    const stream = createReadStream("", {
      fd: handle,
      start,
      end: end - 1,
      highWaterMark: 1024 * 1024,
      signal,
    });
    return { entry, body: Readable.toWeb(stream) as ReadableStream<Uint8Array> };
  }

  protected async putObject({ key, source, ifNotExists, signal }: PutRequest): Promise<Entry> {
    const target = this.path(key);
    const folder = this.path(parentOf(key));
    const temp = join(folder, `${TEMP_PREFIX}${randomBytes(8).toString("hex")}`);
    let handle: FileHandle | undefined;
    try {
      // Another put's delete may prune the folder between mkdir and open; try again then.
      for (let attempt = 1; ; attempt++) {
        await mkdir(folder, { recursive: true });
        await this.inside(folder, "put", key);
        try {
          handle = await open(temp, "wx");
          break;
        } catch (err) {
          if (errnoOf(err) !== "ENOENT" || attempt >= 3) throw err;
        }
      }
      for await (const piece of source) {
        throwIfAborted(signal, { provider: this.provider, operation: "put", key });
        let offset = 0;
        while (offset < piece.byteLength) {
          const { bytesWritten } = await handle.write(piece, offset);
          offset += bytesWritten;
        }
      }
      throwIfAborted(signal, { provider: this.provider, operation: "put", key });
      if (this.fsync) await handle.sync();
      await handle.close();
      handle = undefined;
      const existing = await lstat(target).catch(() => undefined);
      if (existing?.isDirectory()) {
        throw new StorageError({
          provider: this.provider,
          operation: "put",
          key,
          code: "Conflict",
          message: "a folder has this name",
        });
      }
      if (ifNotExists) {
        // link() fails with EEXIST if the target exists: an atomic "create if absent".
        try {
          await link(temp, target);
        } catch (err) {
          if (errnoOf(err) === "EEXIST") {
            throw new StorageError({
              provider: this.provider,
              operation: "put",
              key,
              code: "AlreadyExists",
              message: "an object with this key already exists",
              hint: "delete it first or put without ifNotExists",
            });
          }
          throw err;
        }
        await unlink(temp);
      } else {
        await rename(temp, target);
      }
      if (this.fsync) await syncFolder(folder);
      return this.toEntry(key, await stat(target));
    } catch (err) {
      await handle?.close().catch(() => undefined);
      await unlink(temp).catch(() => undefined);
      return this.fail(err, "put", key);
    }
  }

  protected async deleteObject(key: string): Promise<void> {
    const path = this.path(key);
    await this.inside(path, "delete", key);
    try {
      const info = await lstat(path);
      if (info.isDirectory()) {
        throw new StorageError({
          provider: this.provider,
          operation: "delete",
          key,
          code: "Conflict",
          message: "this is a folder, not an object",
          hint: "delete the objects inside it; empty folders are removed with their last object",
        });
      }
      await unlink(path);
    } catch (err) {
      if (errnoOf(err) === "ENOENT" || errnoOf(err) === "ENOTDIR") return;
      throw err;
    }
    await this.pruneEmptyFolders(parentOf(key));
  }

  /** Folders are implicit in keys: remove the ones the delete left empty, up to (not including) the root. */
  private async pruneEmptyFolders(folder: string): Promise<void> {
    let current = folder;
    while (current !== "") {
      try {
        await rmdir(this.path(current));
      } catch {
        return;
      }
      current = parentOf(current);
    }
  }
}

async function syncFolder(folder: string): Promise<void> {
  const handle = await open(folder, "r").catch(() => undefined);
  if (!handle) return;
  try {
    await handle.sync();
  } catch {
    // Some filesystems refuse fsync on a directory; the data itself is already synced.
  } finally {
    await handle.close();
  }
}
