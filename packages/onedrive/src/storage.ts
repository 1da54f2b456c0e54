import {
  BaseStorage,
  type Capabilities,
  type Entry,
  type GetRequest,
  type GetResult,
  iterableToStream,
  joinKey,
  type Logger,
  type PutRequest,
  parentOf,
  type RetryOptions,
  StorageError,
  streamPieces,
  type TokenSource,
} from "@stowage/core";
import { type DriveItem, GraphApi } from "./api.js";
import { decodeName, encodeName } from "./names.js";
import { uploadObject } from "./upload.js";

/** What {@link OneDriveStorage} needs, already validated by `createOneDriveStorage`. */
export interface OneDriveStorageInit {
  /** The API root, `https://graph.microsoft.com/v1.0`. */
  graphUrl: string;
  driveId?: string;
  auth: TokenSource;
  /** The root's folder names from the drive root, as the user sees them (not encoded). */
  root: string[];
  location: string;
  business: boolean;
  fragmentSize: number;
  simpleUploadCutoff: number;
  pageSize: number;
  createRoot: boolean;
  /** Where a streamed body of known length is copied as it is read; none: no copy. */
  spoolDir: string | undefined;
  /** Where a streamed body of unknown length above the cutoff is copied (spoolDir wins). */
  tempDir: string;
  maxSessionRestarts: number;
  concurrency?: number;
  retry?: RetryOptions | false;
  connectTimeoutMs?: number;
  headersTimeoutMs?: number;
  bodyTimeoutMs?: number;
  logger?: Logger;
}

/** Reference §A.1 and rclone's docs: OneDrive stores files up to 250 GiB. */
const MAX_OBJECT_SIZE = 250 * 1024 ** 3;

const capabilities: Capabilities = {
  caseSensitive: false,
  rangeRead: true,
  // Upload sessions commit only after the last byte; a simple PUT replaces the whole file at once.
  atomicPut: true,
  // conflictBehavior=fail is checked by the service when the file is created.
  conditionalPut: true,
  resumableUpload: true,
  hashes: ["quickXor"],
  folders: "real",
  maxObjectSize: MAX_OBJECT_SIZE,
};

/** A folder of a OneDrive (Microsoft Graph drive) as a Storage. Create it with `createOneDriveStorage`. */
export class OneDriveStorage extends BaseStorage {
  private readonly api: GraphApi;
  private readonly root: string[];
  private readonly init: OneDriveStorageInit;
  /** Folders being created, so that concurrent puts into a new folder create it once. */
  private readonly creating = new Map<string, Promise<void>>();

  constructor(init: OneDriveStorageInit) {
    super({
      provider: "onedrive",
      location: init.location,
      capabilities,
      createRoot: init.createRoot,
      logger: init.logger,
    });
    this.init = init;
    this.root = init.root;
    this.api = new GraphApi({
      graphUrl: init.graphUrl,
      driveId: init.driveId,
      tokenSource: init.auth,
      concurrency: init.concurrency,
      retry: init.retry,
      connectTimeoutMs: init.connectTimeoutMs,
      headersTimeoutMs: init.headersTimeoutMs,
      bodyTimeoutMs: init.bodyTimeoutMs,
      logger: this.logger,
    });
  }

  /** The path from the drive root of a key (or folder) below the root; `""` is the root. */
  private remote(key: string): string[] {
    if (key === "") return [...this.root];
    return [
      ...this.root,
      ...key.split("/").map((segment) => encodeName(segment, { business: this.init.business })),
    ];
  }

  private toEntry(key: string, item: DriveItem): Entry {
    const modified =
      item.lastModifiedDateTime === undefined ? undefined : new Date(item.lastModifiedDateTime);
    const time = modified && !Number.isNaN(modified.getTime()) ? { modified } : {};
    if (item.folder) return { key, kind: "folder", ...time };
    const entry: Entry = { key, kind: "file", ...time };
    if (item.size !== undefined) entry.size = item.size;
    if (item.eTag !== undefined) entry.etag = item.eTag;
    const quickXor = item.file?.hashes?.quickXorHash;
    if (quickXor !== undefined) entry.hashes = { quickXor };
    return entry;
  }

  protected async *listEntries(
    folder: string,
    recursive: boolean,
    signal?: AbortSignal,
  ): AsyncGenerator<Entry> {
    const pending = [folder];
    while (pending.length > 0) {
      const current = pending.shift()!;
      const context = { operation: "list", key: folder === "" ? undefined : folder, signal };
      for await (const page of this.api.children(this.remote(current), this.init.pageSize, context)) {
        for (const item of page) {
          // Deleted items and packages (OneNote notebooks) are neither objects nor folders of ours.
          if (item.deleted !== undefined || (!item.file && !item.folder)) continue;
          const key = joinKey(current, decodeName(item.name));
          if (item.folder) {
            if (recursive) pending.push(key);
            else yield this.toEntry(key, item);
          } else {
            yield this.toEntry(key, item);
          }
        }
      }
    }
  }

  /** The file at `key`, or `NotFound` (a folder is not an object). */
  private async fileItem(key: string, operation: string, signal?: AbortSignal): Promise<DriveItem> {
    const item = await this.api.getItem(this.remote(key), { operation, key, signal });
    if (item === undefined || !item.file) {
      throw new StorageError({
        ...this.context(operation, key),
        code: "NotFound",
        message: item === undefined ? "no object has this key" : "this is a folder, not an object",
      });
    }
    return item;
  }

  protected async statEntry(key: string, signal?: AbortSignal): Promise<Entry> {
    return this.toEntry(key, await this.fileItem(key, "stat", signal));
  }

  protected async getObject({ key, range, signal }: GetRequest): Promise<GetResult> {
    const item = await this.fileItem(key, "get", signal);
    const entry = this.toEntry(key, item);
    const size = entry.size ?? 0;
    const start = Math.min(range?.offset ?? 0, size);
    const end = range?.length === undefined ? size : Math.min(start + range.length, size);
    if (end <= start)
      return { entry, body: new ReadableStream({ start: (controller) => controller.close() }) };
    const wanted = range === undefined ? undefined : { offset: start, length: end - start };
    const response = await this.api.openContent(item.id, wanted, { operation: "get", key, signal });
    let body = response.body;
    if (wanted !== undefined && response.status === 200) {
      // The server may ignore Range and send the whole object (reference §A.6): cut it here.
      body = slice(body, wanted.offset, wanted.length);
    } else if (wanted !== undefined) {
      const first = Number(/^bytes (\d+)-/.exec(response.headers["content-range"] ?? "")?.[1] ?? Number.NaN);
      if (first !== wanted.offset) {
        await body.cancel();
        throw new StorageError({
          ...this.context("get", key),
          code: "Protocol",
          message: `asked for bytes from ${wanted.offset}, the download starts at ${Number.isNaN(first) ? "an unknown offset" : first}`,
        });
      }
    }
    return { entry, body };
  }

  protected async putObject(request: PutRequest): Promise<Entry> {
    const { key, source, size, ifNotExists, signal, rewind } = request;
    const item = await uploadObject(
      {
        api: this.api,
        key,
        path: this.remote(key),
        conflict: ifNotExists ? "fail" : "replace",
        fragmentSize: this.init.fragmentSize,
        simpleUploadCutoff: this.init.simpleUploadCutoff,
        spoolDir: this.init.spoolDir,
        tempDir: this.init.tempDir,
        maxRestarts: this.init.maxSessionRestarts,
        hasParents: key.includes("/"),
        ensureParents: () => this.ensureFolders(parentOf(key), signal),
        logger: this.logger,
        signal,
      },
      source,
      size,
      rewind,
    ).catch((err: unknown) => {
      // Under replace, only a folder can hold the name against a file (409 nameAlreadyExists).
      if (ifNotExists || !(err instanceof StorageError && err.code === "AlreadyExists")) throw err;
      throw new StorageError({
        ...this.context("put", key),
        code: "Conflict",
        status: err.status,
        message: "a folder has this key's name",
        hint: "choose a key that does not name a folder",
        cause: err,
      });
    });
    return this.toEntry(key, item);
  }

  protected async deleteObject(key: string, signal?: AbortSignal): Promise<void> {
    const context = { operation: "delete", key, signal };
    // A key that names a folder is refused rather than deleted with everything in it.
    for (let attempt = 1; ; attempt++) {
      const item = await this.api.getItem(this.remote(key), context);
      if (item === undefined) return;
      if (item.folder) {
        throw new StorageError({
          ...this.context("delete", key),
          code: "Conflict",
          message: "this is a folder, not an object",
          hint: "delete the objects inside it; OneDrive keeps empty folders",
        });
      }
      try {
        // If-Match: a file replaced since the stat is not deleted blindly; it is looked at again.
        await this.api.deleteItem(item.id, item.eTag, context);
        return;
      } catch (err) {
        if (err instanceof StorageError && err.code === "NotFound") return;
        if (!(err instanceof StorageError && err.status === 412) || attempt >= 3) throw err;
      }
    }
  }

  protected async rootExists(signal?: AbortSignal): Promise<boolean> {
    const item = await this.api.getItem(this.root, { operation: "root", signal });
    if (item === undefined) return false;
    if (!item.folder) {
      throw new StorageError({
        ...this.context("root"),
        code: "InvalidConfig",
        message: `the root ${this.location} is a file, not a folder`,
        hint: "choose a folder path as the root",
      });
    }
    return true;
  }

  /** Creates the root level by level from the drive root; an existing folder is fine (409). */
  protected async createRootFolder(signal?: AbortSignal): Promise<void> {
    for (let depth = 1; depth <= this.root.length; depth++) {
      await this.makeFolder(
        this.root.slice(0, depth),
        { operation: "createRoot", signal },
        () =>
          new StorageError({
            ...this.context("createRoot"),
            code: "InvalidConfig",
            message: `'${this.root.slice(0, depth).join("/")}' is a file, so the root cannot be created below it`,
            hint: "choose another root",
          }),
      );
    }
  }

  /** Creates the folders of `folder` (a key below the root), level by level, each once at a time. */
  private async ensureFolders(folder: string, signal?: AbortSignal): Promise<void> {
    const segments = folder.split("/");
    for (let depth = 1; depth <= segments.length; depth++) {
      const key = segments.slice(0, depth).join("/");
      const path = this.remote(key);
      const id = path.join("/").toLowerCase();
      let running = this.creating.get(id);
      if (running === undefined) {
        running = this.makeFolder(
          path,
          { operation: "put", key, signal },
          () =>
            new StorageError({
              ...this.context("put", key),
              code: "Conflict",
              message: `the folder '${key}' cannot be created: an object has that key`,
              hint: "choose a key whose parents are folders, not objects",
            }),
        ).finally(() => this.creating.delete(id));
        this.creating.set(id, running);
      }
      await running;
    }
  }

  /**
   * POST children with conflictBehavior fail; a 409 means the name is taken, by a folder (fine) or a
   * file. A name taken and freed again meanwhile is tried again.
   */
  private async makeFolder(
    path: string[],
    context: { operation: string; key?: string; signal?: AbortSignal },
    takenByFile: () => StorageError,
  ): Promise<void> {
    const parent = path.slice(0, -1);
    const name = path.at(-1)!;
    for (let attempt = 1; attempt <= 3; attempt++) {
      if (await this.api.createFolder(parent, name, context)) return;
      const existing = await this.api.getItem(path, context);
      if (existing?.folder) return;
      if (existing !== undefined) throw takenByFile();
    }
    throw new StorageError({
      ...this.context(context.operation, context.key),
      code: "Conflict",
      message: `the folder '${path.join("/")}' was created and deleted again while being made`,
      hint: "try again; another client is changing the same folders",
    });
  }

  protected override async checkCredentials(signal?: AbortSignal): Promise<void> {
    await this.api.getDrive({ operation: "test", signal });
  }

  protected override async closeProvider(): Promise<void> {
    await this.api.close();
  }
}

/** The `length` bytes from `offset` of a stream that holds the whole object. */
function slice(body: ReadableStream<Uint8Array>, offset: number, length: number): ReadableStream<Uint8Array> {
  async function* cut(): AsyncGenerator<Uint8Array> {
    let position = 0;
    const end = offset + length;
    for await (const piece of streamPieces(body)) {
      const from = Math.max(offset - position, 0);
      const to = Math.min(end - position, piece.byteLength);
      position += piece.byteLength;
      if (to > from) yield piece.subarray(from, to);
      if (position >= end) return;
    }
  }
  return iterableToStream(cut());
}
