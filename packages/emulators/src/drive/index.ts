import type { IncomingMessage, ServerResponse } from "node:http";
import { createFaults, type Faults } from "../faults.js";
import { requestUrl, startHttpServer } from "../http-server.js";
import { driveError } from "./errors.js";
import { DriveService, type DriveTokenValidator, routeId } from "./service.js";
import { type DriveFileView, DriveState, FOLDER_MIME, newId, type StoredFile } from "./state.js";
import { type DriveUploadHooks, type DriveUploadSessionView, UploadService } from "./uploads.js";

export { type DriveErrorBody, type DriveErrorDetail, driveErrorBody, driveErrors } from "./errors.js";
export { DRIVE_FILE_SCOPE, DRIVE_SCOPE, type DriveTokenValidator } from "./service.js";
export { type DriveFileView, FOLDER_MIME as DRIVE_FOLDER_MIME } from "./state.js";
export {
  type DriveUploadHooks,
  type DriveUploadSessionView,
  RESUMABLE_CHUNK_MULTIPLE as DRIVE_CHUNK_MULTIPLE,
} from "./uploads.js";

export interface DriveEmulatorOptions {
  /**
   * Checks the bearer tokens of every request: an `OAuthProvider` from `startOAuthProvider()` (or
   * anything with its `validate`). A token's scopes decide what it sees: `…/auth/drive` everything,
   * `…/auth/drive.file` only what its client created (reference §B.7); neither is a 403.
   */
  oauth: DriveTokenValidator;
  /** Share a fault set with other emulators; default: a new one, at `drive.faults`. */
  faults?: Faults;
  /** The clock, in milliseconds since the epoch (file times, session expiry). Default `Date.now`. */
  now?: () => number;
  /** How long a resumable session lives; Drive's last about a week (reference §B.3). Default 7 days. */
  sessionLifetimeMs?: number;
  /**
   * Persist at most this many bytes of each resumable chunk request and report the rest missing in
   * `Range`, as Drive may (reference §B.3: "the server may keep fewer bytes than you sent"). A
   * multiple of 262,144. Default: keep everything.
   */
  persistAtMost?: number;
  /** Answer `files.list` with half-full and empty pages before the end, as Drive may. Default false. */
  partialPages?: boolean;
  /** The account's storage quota in bytes; content beyond it is `403 storageQuotaExceeded`. Default none. */
  quotaBytes?: number;
  /** The largest request body (a chunk, a multipart upload). Default 256 MiB. */
  maxRequestBytes?: number;
}

/** One request the emulator received. */
export interface DriveRequestRecord {
  method: string;
  /** The path, percent-encoded as sent. */
  path: string;
  query: Readonly<Record<string, string>>;
  /** The status sent; 0 when the connection was dropped before an answer. */
  status: number;
  contentRange?: string;
  /** A fault answered or dropped it; the emulator never saw it. */
  faulted: boolean;
}

/** A file or folder placed in the emulator directly, as if made in the Drive web UI or by another tool. */
export interface DriveSeedFile {
  name: string;
  /** The parent folder's id; default the My Drive root. */
  parent?: string;
  folder?: boolean;
  content?: string | Uint8Array;
  /** Default `application/octet-stream` (or the folder type with `folder`). */
  mimeType?: string;
  /** The OAuth client id of the app that "created" it; default none (invisible under `drive.file`). */
  appId?: string;
  createdTime?: Date;
  modifiedTime?: Date;
  trashed?: boolean;
}

/** A running Google Drive v3 emulator. */
export interface DriveEmulator {
  /** The base URL, `http://127.0.0.1:<port>`: pass it as the provider's `driveUrl`. */
  readonly url: string;
  readonly faults: Faults;
  /** The My Drive root's id (what the `root` alias stands for). */
  readonly rootId: string;
  /** Every request received, in order. */
  readonly requests: readonly DriveRequestRecord[];
  /** Set `afterChunk` to act between two chunks of a resumable upload. */
  readonly hooks: DriveUploadHooks;
  /** Every file and folder, trashed ones included (not the roots). */
  files(): DriveFileView[];
  file(id: string): DriveFileView | undefined;
  /** A file's bytes. */
  content(id: string): Buffer;
  /**
   * Every file or folder at `path` (`"Backups/pc1/a.bin"`, from the My Drive root or `driveId`'s
   * root), by exact name: more than one when Drive holds duplicates. Trashed items are left out.
   */
  find(path: string, options?: { driveId?: string }): DriveFileView[];
  /** Places a file or folder directly (duplicates and other apps' files included). */
  addFile(seed: DriveSeedFile): DriveFileView;
  /** Creates a shared drive and returns its id (also the id of its root folder). */
  addSharedDrive(name: string): string;
  uploadSessions(): DriveUploadSessionView[];
  /** Expires every resumable session: their next request is a 404. */
  expireUploadSessions(): void;
  close(): Promise<void>;
}

const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * Starts a Google Drive v3 emulator on 127.0.0.1, faithful to the behaviour a storage client meets
 * (reference §E, Drive half): `files.list` with the `q` subset, paging (`pageSize` ≤ 1000, opaque
 * `nextPageToken`) and `fields` masks; int64 fields as strings; `md5Checksum`; the `root` alias;
 * duplicate names; media, multipart and resumable uploads (308 + `Range`, 256 KiB multiples, status
 * queries, the `X-GUploader-No-308` form, expiry → 404); `alt=media` with ranges; errors in
 * Drive's `errors[].reason` shape; the `drive.file` scope; and the shared fault injection.
 *
 * @example
 * const oauth = await startOAuthProvider({ rotateRefreshTokens: false });
 * const drive = await startDriveEmulator({ oauth });
 * const token = oauth.issueAccessToken({ scopes: [DRIVE_FILE_SCOPE] });
 * // … createGoogleDriveStorage({ driveUrl: drive.url, auth: personalAccessToken(token), … }) …
 * expect(drive.find("Backups/pc1/a.bin")).toHaveLength(1);
 * await drive.close();
 */
export async function startDriveEmulator(options: DriveEmulatorOptions): Promise<DriveEmulator> {
  if (typeof options?.oauth?.validate !== "function") {
    throw new TypeError("startDriveEmulator: give oauth, e.g. the provider from startOAuthProvider()");
  }
  const persistAtMost = options.persistAtMost;
  if (persistAtMost !== undefined && (persistAtMost <= 0 || persistAtMost % 262_144 !== 0)) {
    throw new TypeError(
      `startDriveEmulator: persistAtMost must be a positive multiple of 262144, got ${persistAtMost}`,
    );
  }
  const now = options.now ?? Date.now;
  const faults = options.faults ?? createFaults();
  const state = new DriveState(now);
  const service = new DriveService(state, {
    oauth: options.oauth,
    now,
    partialPages: options.partialPages ?? false,
    quotaBytes: options.quotaBytes,
  });
  const hooks: DriveUploadHooks = {};
  let baseUrl = "";
  const uploads = new UploadService(service, {
    now,
    sessionLifetimeMs: options.sessionLifetimeMs ?? 7 * DAY_MS,
    persistAtMost,
    baseUrl: () => baseUrl,
    hooks,
    maxRequestBytes: options.maxRequestBytes ?? 256 * 1024 * 1024,
  });
  const requests: DriveRequestRecord[] = [];

  const route = async (req: IncomingMessage, res: ServerResponse, path: string): Promise<void> => {
    const method = req.method ?? "GET";
    if (path === "/drive/v3/files") {
      if (method === "GET") return service.list(req, res);
      if (method === "POST") return service.create(req, res);
    }
    const item = /^\/drive\/v3\/files\/([^/]+)$/.exec(path);
    if (item) {
      const id = routeId(item[1]!);
      if (method === "GET") return service.get(req, res, id);
      if (method === "PATCH") return service.update(req, res, id);
      if (method === "DELETE") return service.delete(req, res, id);
    }
    if (path === "/upload/drive/v3/files") return uploads.handle(req, res, undefined);
    const upload = /^\/upload\/drive\/v3\/files\/([^/]+)$/.exec(path);
    if (upload) return uploads.handle(req, res, routeId(upload[1]!));
    req.resume();
    throw driveError(404, "notFound", `The emulator has no ${method} ${path}`);
  };

  const server = await startHttpServer(async (req, res) => {
    const url = requestUrl(req);
    const record: DriveRequestRecord = {
      method: req.method ?? "GET",
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      status: 0,
      faulted: false,
    };
    const contentRange = req.headers["content-range"];
    if (contentRange !== undefined) record.contentRange = contentRange;
    requests.push(record);
    // Set as the answer leaves, so a test reading the log after its call returns sees the status.
    res.on("finish", () => {
      record.status = res.statusCode;
    });
    res.on("close", () => {
      if (!res.writableFinished) record.status = 0;
    });
    // Faults are applied here rather than by startHttpServer so that faulted requests are recorded too.
    if (await faults.handle(req, res)) {
      record.faulted = true;
      return;
    }
    await route(req, res, url.pathname);
  });
  baseUrl = server.url;

  const visibleTree = (file: StoredFile) => !state.isTrashed(file);
  return {
    url: server.url,
    faults,
    rootId: state.rootId,
    requests,
    hooks,
    files: () =>
      [...state.files.values()].filter((file) => !state.isRoot(file)).map((file) => state.view(file)),
    file(id) {
      const file = state.files.get(id);
      return file ? state.view(file) : undefined;
    },
    content(id) {
      const file = state.files.get(id);
      if (!file) throw new Error(`no file ${id}`);
      return state.readContent(file);
    },
    find(path, findOptions = {}) {
      let level: StoredFile[] = [state.files.get(findOptions.driveId ?? state.rootId)!].filter(Boolean);
      for (const name of path.split("/").filter((segment) => segment !== "")) {
        const parents = new Set(level.map((file) => file.id));
        level = [...state.files.values()].filter(
          (file) => file.name === name && file.parents.some((id) => parents.has(id)) && visibleTree(file),
        );
      }
      return level.map((file) => state.view(file));
    },
    addFile(seed) {
      const parentId = seed.parent ?? state.rootId;
      const parent = state.files.get(parentId);
      if (!parent || parent.mimeType !== FOLDER_MIME) throw new Error(`addFile: no folder ${parentId}`);
      const time = now();
      const folder = seed.folder ?? seed.mimeType === FOLDER_MIME;
      const file: StoredFile = {
        id: newId(),
        name: seed.name,
        mimeType: folder ? FOLDER_MIME : (seed.mimeType ?? "application/octet-stream"),
        parents: [parent.id],
        createdTime: seed.createdTime?.getTime() ?? time,
        modifiedTime: seed.modifiedTime?.getTime() ?? seed.createdTime?.getTime() ?? time,
        explicitlyTrashed: seed.trashed ?? false,
        version: 1,
      };
      if (parent.driveId !== undefined) file.driveId = parent.driveId;
      if (seed.appId !== undefined) file.appId = seed.appId;
      if (!folder) {
        const bytes =
          typeof seed.content === "string" ? Buffer.from(seed.content) : (seed.content ?? new Uint8Array(0));
        file.content = state.writeContent(bytes);
      }
      state.files.set(file.id, file);
      return state.view(file);
    },
    addSharedDrive(name) {
      const id = newId("0A");
      const time = now();
      state.files.set(id, {
        id,
        name,
        mimeType: FOLDER_MIME,
        parents: [],
        driveId: id,
        createdTime: time,
        modifiedTime: time,
        explicitlyTrashed: false,
        version: 1,
      });
      return id;
    },
    uploadSessions: () => uploads.views(),
    expireUploadSessions: () => uploads.expireAll(),
    async close() {
      await server.close();
      uploads.dispose();
      state.dispose();
    },
  };
}
