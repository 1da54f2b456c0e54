import { createHash } from "node:crypto";
import { BaseStorage, type GetRequest, type GetResult, type PutRequest } from "../base-storage.js";
import { concatBytes } from "../body.js";
import { StorageError } from "../errors.js";
import { joinKey, normalizeRoot } from "../keys.js";
import type { Capabilities, Entry, Logger } from "../types.js";

interface StoredObject {
  bytes: Uint8Array;
  modified: Date;
  etag: string;
  md5: string;
  sha256: string;
}

/**
 * The objects of one or more memory storages. Storages opened on the same volume see each other's
 * objects; `memory://` URLs share one process-wide volume, so two `connect("memory://x")` calls meet.
 */
export class MemoryVolume {
  /** Full paths (root + key) to objects. */
  readonly objects = new Map<string, StoredObject>();
  /** Folders created explicitly (roots). Folders below them are implicit in object paths. */
  readonly folders = new Set<string>([""]);

  folderExists(path: string): boolean {
    if (this.folders.has(path)) return true;
    const prefix = `${path}/`;
    for (const key of this.objects.keys()) if (key.startsWith(prefix)) return true;
    for (const folder of this.folders) if (folder.startsWith(prefix)) return true;
    return false;
  }
}

const sharedVolume = new MemoryVolume();

export interface MemoryStorageOptions {
  /** A folder path inside the volume; `""` (the default) is the volume's root, which always exists. */
  root?: string;
  /** Create the root on first use instead of failing with `FolderMissing`. */
  createRoot?: boolean;
  /** Default: the process-wide volume that `memory://` URLs use. */
  volume?: MemoryVolume;
  /** Entries per internal list page (for exercising paging in tests). Default 1000. */
  pageSize?: number;
  logger?: Logger;
}

const memoryCapabilities: Capabilities = {
  caseSensitive: true,
  rangeRead: true,
  atomicPut: true,
  conditionalPut: true,
  resumableUpload: false,
  hashes: ["md5", "sha256"],
  folders: "virtual",
};

/**
 * A storage in this process's memory: for tests, examples and caches. Puts are atomic (the object
 * appears whole when the body has been read), `ifNotExists` is atomic, and entries carry MD5 and
 * SHA-256.
 *
 * @example
 * const storage = createMemoryStorage();
 * await storage.put("a.txt", "hello");
 */
export function createMemoryStorage(options: MemoryStorageOptions = {}): MemoryStorage {
  return new MemoryStorage(options);
}

export class MemoryStorage extends BaseStorage {
  private readonly volume: MemoryVolume;
  private readonly root: string;
  private readonly pageSize: number;

  constructor(options: MemoryStorageOptions) {
    const root = normalizeRoot(options.root, { provider: "memory", operation: "open" });
    super({
      provider: "memory",
      location: `memory://${root}`,
      capabilities: memoryCapabilities,
      createRoot: options.createRoot,
      logger: options.logger,
    });
    this.volume = options.volume ?? sharedVolume;
    this.root = root;
    this.pageSize = options.pageSize ?? 1000;
  }

  private path(key: string): string {
    return joinKey(this.root, key);
  }

  private toEntry(key: string, object: StoredObject): Entry {
    return {
      key,
      kind: "file",
      size: object.bytes.byteLength,
      modified: object.modified,
      etag: object.etag,
      hashes: { md5: object.md5, sha256: object.sha256 },
    };
  }

  protected async *listEntries(folder: string, recursive: boolean): AsyncGenerator<Entry> {
    const base = joinKey(this.root, folder);
    const prefix = base === "" ? "" : `${base}/`;
    const strip = this.root === "" ? 0 : this.root.length + 1;
    const files: string[] = [];
    const folders = new Set<string>();
    for (const path of this.volume.objects.keys()) {
      if (!path.startsWith(prefix)) continue;
      const rest = path.slice(prefix.length);
      const slash = rest.indexOf("/");
      if (recursive || slash < 0) files.push(path);
      else folders.add(prefix + rest.slice(0, slash));
    }
    if (!recursive) {
      for (const path of this.volume.folders) {
        if (
          path.startsWith(prefix) &&
          path.length > prefix.length &&
          !path.slice(prefix.length).includes("/")
        )
          folders.add(path);
      }
    }
    const entries: Array<() => Entry | undefined> = [
      ...[...folders].map((path) => () => ({ key: path.slice(strip), kind: "folder" as const })),
      ...files.map((path) => () => {
        const object = this.volume.objects.get(path);
        return object && this.toEntry(path.slice(strip), object);
      }),
    ];
    for (let i = 0; i < entries.length; i += this.pageSize) {
      // Paging is lazy, as with remote providers: each page is produced when the consumer reaches it.
      await Promise.resolve();
      for (const make of entries.slice(i, i + this.pageSize)) {
        const entry = make();
        if (entry) yield entry;
      }
    }
  }

  protected async rootExists(): Promise<boolean> {
    return this.root === "" || this.volume.folderExists(this.root);
  }

  protected async createRootFolder(): Promise<void> {
    const segments = this.root.split("/");
    for (let i = 1; i <= segments.length; i++) this.volume.folders.add(segments.slice(0, i).join("/"));
  }

  protected async statEntry(key: string): Promise<Entry> {
    const object = this.volume.objects.get(this.path(key));
    if (object) return this.toEntry(key, object);
    throw this.notFound("stat", key);
  }

  private notFound(operation: string, key: string): StorageError {
    const isFolder = this.volume.folderExists(this.path(key));
    return new StorageError({
      provider: this.provider,
      operation,
      key,
      code: "NotFound",
      message: isFolder ? "this is a folder, not an object" : "no object has this key",
    });
  }

  protected async getObject({ key, range }: GetRequest): Promise<GetResult> {
    const object = this.volume.objects.get(this.path(key));
    if (!object) throw this.notFound("get", key);
    const start = Math.min(range?.offset ?? 0, object.bytes.byteLength);
    const end =
      range?.length === undefined
        ? object.bytes.byteLength
        : Math.min(start + range.length, object.bytes.byteLength);
    const bytes = object.bytes.subarray(start, end);
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        if (bytes.byteLength > 0) controller.enqueue(bytes.slice());
        controller.close();
      },
    });
    return { entry: this.toEntry(key, object), body };
  }

  protected async putObject({ key, source, ifNotExists }: PutRequest): Promise<Entry> {
    const path = this.path(key);
    this.checkNoFolderClash(key, path);
    const parts: Uint8Array[] = [];
    for await (const piece of source) parts.push(piece.slice());
    const bytes = concatBytes(parts);
    // Checked after the body was read too, since another put may have landed meanwhile.
    if (ifNotExists && this.volume.objects.has(path)) {
      throw new StorageError({
        provider: this.provider,
        operation: "put",
        key,
        code: "AlreadyExists",
        message: "an object with this key already exists",
        hint: "delete it first or put without ifNotExists",
      });
    }
    this.checkNoFolderClash(key, path);
    const object: StoredObject = {
      bytes,
      modified: new Date(),
      etag: `"${createHash("sha1").update(bytes).update(String(Date.now())).digest("hex").slice(0, 16)}"`,
      md5: createHash("md5").update(bytes).digest("hex"),
      sha256: createHash("sha256").update(bytes).digest("hex"),
    };
    this.volume.objects.set(path, object);
    return this.toEntry(key, object);
  }

  /** A key cannot be both an object and a folder, nor sit below an object. */
  private checkNoFolderClash(key: string, path: string): void {
    const segments = path.split("/");
    for (let i = 1; i < segments.length; i++) {
      const parent = segments.slice(0, i).join("/");
      if (this.volume.objects.has(parent)) {
        throw new StorageError({
          provider: this.provider,
          operation: "put",
          key,
          code: "Conflict",
          message: `'${parent.slice(this.root.length ? this.root.length + 1 : 0)}' is an object, so it cannot hold other objects`,
        });
      }
    }
    if (this.volume.folderExists(path)) {
      throw new StorageError({
        provider: this.provider,
        operation: "put",
        key,
        code: "Conflict",
        message: "a folder has this name",
        hint: "delete the objects in the folder first or choose another key",
      });
    }
  }

  protected async deleteObject(key: string): Promise<void> {
    this.volume.objects.delete(this.path(key));
  }
}
