import { randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { readBody, requestUrl, sendJson } from "../http-server.js";
import type { TokenValidation } from "../oauth-provider.js";
import { authError, driveError, fileNotFound, invalidParameter } from "./errors.js";
import {
  applyFieldMask,
  checkFieldMask,
  type FieldMask,
  FieldMaskError,
  type FieldSchema,
  parseFieldMask,
} from "./fields.js";
import { matchesQuery, parseQuery, QueryError, type QueryNode } from "./query.js";
import { defaultFileMask, defaultListMask, fileListSchema, fileResource, fileSchema } from "./resources.js";
import { type DriveState, FOLDER_MIME, newId, type StoredFile } from "./state.js";

/** The full Drive scope and the per-file one (reference §B.7). */
export const DRIVE_SCOPE = "https://www.googleapis.com/auth/drive";
export const DRIVE_FILE_SCOPE = "https://www.googleapis.com/auth/drive.file";

/** Checks bearer tokens; `startOAuthProvider()` is one. */
export interface DriveTokenValidator {
  validate(accessToken: string): TokenValidation;
}

/** Who is calling, from the bearer token. */
export interface Caller {
  clientId: string;
  /** The `drive` scope; otherwise `drive.file`: only files this client created are visible. */
  fullAccess: boolean;
}

export interface ServiceOptions {
  oauth: DriveTokenValidator;
  now: () => number;
  partialPages: boolean;
  quotaBytes?: number;
}

/** Metadata a create or update may carry (files.create / files.update request bodies). */
export interface FileMetadata {
  name?: string;
  mimeType?: string;
  parents?: string[];
  trashed?: boolean;
  description?: string;
}

interface PageState {
  signature: string;
  /** The matches when the first page was asked for; shared by the tokens of one listing. */
  ids: readonly string[];
  offset: number;
  pageIndex: number;
}

const MAX_PAGE_SIZE = 1000;
const DEFAULT_PAGE_SIZE = 100;

/**
 * The metadata half of the Drive v3 API (`/drive/v3/files…`) over a {@link DriveState}: list with
 * `q`, paging and field masks, get (and `alt=media` with ranges), create, update and delete; plus
 * the checks every route shares (bearer tokens, scopes, visibility, parents, quota).
 */
export class DriveService {
  readonly state: DriveState;
  private readonly options: ServiceOptions;
  private readonly pages = new Map<string, PageState>();

  constructor(state: DriveState, options: ServiceOptions) {
    this.state = state;
    this.options = options;
  }

  /** The caller of a request that must carry a valid bearer token with a Drive scope. */
  authenticate(req: IncomingMessage): Caller {
    const caller = this.optionalCaller(req);
    if (!caller) throw authError();
    return caller;
  }

  /** Like {@link authenticate}, but a request without `Authorization` passes (upload session URIs). */
  optionalCaller(req: IncomingMessage): Caller | undefined {
    const header = req.headers.authorization;
    if (header === undefined) return undefined;
    const token = /^Bearer\s+(\S+)$/i.exec(header)?.[1];
    const check = token === undefined ? undefined : this.options.oauth.validate(token);
    if (!check?.valid) throw authError();
    const fullAccess = check.scopes.includes(DRIVE_SCOPE);
    if (!fullAccess && !check.scopes.includes(DRIVE_FILE_SCOPE)) {
      throw driveError(403, "insufficientPermissions", "Request had insufficient authentication scopes.");
    }
    return { clientId: check.clientId, fullAccess };
  }

  /** Whether `caller` may see `file`: shared-drive items need `supportsAllDrives`; drive.file its own files. */
  canSee(file: StoredFile, caller: Caller, supportsAllDrives: boolean): boolean {
    if (file.driveId !== undefined && !supportsAllDrives) return false;
    if (this.state.isRoot(file)) return true;
    return caller.fullAccess || file.appId === caller.clientId;
  }

  /** The `root` alias is the My Drive root's id anywhere an id is expected (reference §B.1). */
  resolveId(id: string): string {
    return id === "root" ? this.state.rootId : id;
  }

  /** A file the caller can see, or Drive's 404. */
  visibleFile(id: string, caller: Caller, supportsAllDrives: boolean): StoredFile {
    const file = this.state.files.get(this.resolveId(id));
    if (!file || !this.canSee(file, caller, supportsAllDrives)) throw fileNotFound(id);
    return file;
  }

  /** Checks a create's parents and returns the one parent (the root when none is given). */
  parentFor(parents: readonly string[] | undefined, caller: Caller, supportsAllDrives: boolean): StoredFile {
    if (parents !== undefined && parents.length > 1) {
      throw driveError(403, "cannotAddParent", "Increasing the number of parents is not allowed.", {
        locationType: "other",
        location: "parents",
      });
    }
    const id = parents?.[0] ?? "root";
    const parent = this.state.files.get(this.resolveId(id));
    if (!parent || !this.canSee(parent, caller, supportsAllDrives) || parent.mimeType !== FOLDER_MIME) {
      throw fileNotFound(id);
    }
    return parent;
  }

  /** Refuses content that would take the account over its quota (`quotaBytes`). */
  checkQuota(addedBytes: number, replacedBytes = 0): void {
    const quota = this.options.quotaBytes;
    if (quota === undefined) return;
    if (this.state.usedBytes() - replacedBytes + addedBytes > quota) {
      throw driveError(403, "storageQuotaExceeded", "The user's Drive storage quota has been exceeded.", {
        domain: "usageLimits",
      });
    }
  }

  /** Creates a file (folders included) under a checked parent. */
  createFile(
    metadata: FileMetadata,
    parent: StoredFile,
    caller: Caller,
    content?: StoredFile["content"],
  ): StoredFile {
    const time = this.options.now();
    const file: StoredFile = {
      id: newId(),
      name: metadata.name ?? "Untitled",
      mimeType: metadata.mimeType ?? "application/octet-stream",
      parents: [parent.id],
      createdTime: time,
      modifiedTime: time,
      explicitlyTrashed: metadata.trashed ?? false,
      appId: caller.clientId,
      version: 1,
    };
    const driveId = parent.driveId;
    if (driveId !== undefined) file.driveId = driveId;
    if (content) file.content = content;
    this.state.files.set(file.id, file);
    return file;
  }

  /** Applies the metadata of a files.update (name, trashed, mimeType). */
  applyMetadata(file: StoredFile, metadata: FileMetadata): void {
    if (metadata.name !== undefined && metadata.name !== file.name) {
      file.name = metadata.name;
      file.modifiedTime = Math.max(this.options.now(), file.modifiedTime + 1);
    }
    if (metadata.mimeType !== undefined) file.mimeType = metadata.mimeType;
    if (metadata.trashed !== undefined) file.explicitlyTrashed = metadata.trashed;
  }

  /** A file resource trimmed to the request's `fields` (default `kind,id,name,mimeType`). */
  fileAnswer(file: StoredFile, query: URLSearchParams): unknown {
    return applyFieldMask(fileResource(this.state, file), maskOf(query, fileSchema, defaultFileMask));
  }

  // ---- routes -------------------------------------------------------------------------------------

  async list(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const caller = this.authenticate(req);
    const query = requestUrl(req).searchParams;
    const mask = maskOf(query, fileListSchema, defaultListMask);
    const pageSize = pageSizeOf(query);
    const supportsAllDrives = flag(query, "supportsAllDrives");
    const includeAllDrives = flag(query, "includeItemsFromAllDrives");
    const corpora = query.get("corpora") ?? "user";
    const driveId = query.get("driveId");
    if (!["user", "drive", "allDrives"].includes(corpora)) {
      throw invalidParameter("corpora", `Invalid value for corpora: ${corpora}`);
    }
    if (corpora === "drive" && (driveId === null || !includeAllDrives || !supportsAllDrives)) {
      throw invalidParameter(
        "driveId",
        "corpora=drive needs driveId, includeItemsFromAllDrives=true and supportsAllDrives=true",
      );
    }
    if (corpora !== "drive" && driveId !== null) {
      throw invalidParameter("driveId", "driveId is only allowed with corpora=drive");
    }
    const spaces = query.get("spaces");
    if (spaces !== null && spaces !== "drive") {
      throw invalidParameter("spaces", `the emulator models only the 'drive' space, not '${spaces}'`);
    }
    const q = query.get("q");
    let filter: QueryNode | undefined;
    try {
      filter = q === null || q.trim() === "" ? undefined : parseQuery(q);
    } catch (err) {
      if (err instanceof QueryError) throw invalidParameter("q", `Invalid Value: ${err.message}`);
      throw err;
    }
    const orderBy = orderOf(query.get("orderBy"));
    const signature = JSON.stringify([q, query.get("orderBy"), corpora, driveId, includeAllDrives, caller]);

    const included = (file: StoredFile): boolean => {
      if (this.state.isRoot(file) || !this.canSee(file, caller, includeAllDrives)) return false;
      if (corpora === "drive" && file.driveId !== driveId) return false;
      return (
        filter === undefined ||
        matchesQuery(
          filter,
          {
            name: file.name,
            mimeType: file.mimeType,
            parents: file.parents,
            trashed: this.state.isTrashed(file),
          },
          (id) => this.resolveId(id),
        )
      );
    };

    let page: PageState;
    const token = query.get("pageToken");
    if (token !== null) {
      const saved = this.pages.get(token);
      if (!saved || saved.signature !== signature) {
        throw invalidParameter(
          "pageToken",
          "Invalid Value: the page token is unknown or belongs to another query",
        );
      }
      page = saved;
    } else {
      // A snapshot of the matches: a file deleted between two pages is skipped, never another one.
      const matches = [...this.state.files.values()].filter(included).sort(orderBy);
      page = { signature, ids: matches.map((file) => file.id), offset: 0, pageIndex: 0 };
    }

    const take = this.options.partialPages ? partialPageSize(page.pageIndex, pageSize) : pageSize;
    const files = page.ids
      .slice(page.offset, page.offset + take)
      .map((id) => this.state.files.get(id))
      .filter((file): file is StoredFile => file !== undefined && included(file))
      .map((file) => fileResource(this.state, file));
    const answer: Record<string, unknown> = { kind: "drive#fileList", incompleteSearch: false, files };
    if (page.offset + take < page.ids.length) {
      // Tokens stay valid, so a client may ask for the same page again after a failure.
      const next = randomBytes(18).toString("base64url");
      this.pages.set(next, { ...page, offset: page.offset + take, pageIndex: page.pageIndex + 1 });
      answer.nextPageToken = next;
    }
    sendJson(res, 200, applyFieldMask(answer, mask));
  }

  async get(req: IncomingMessage, res: ServerResponse, id: string): Promise<void> {
    const caller = this.authenticate(req);
    const query = requestUrl(req).searchParams;
    const file = this.visibleFile(id, caller, flag(query, "supportsAllDrives"));
    const alt = query.get("alt") ?? "json";
    if (alt === "json") return sendJson(res, 200, this.fileAnswer(file, query));
    if (alt !== "media") throw invalidParameter("alt", `Invalid value for alt: ${alt}`);
    this.media(req, res, file);
  }

  /** `alt=media`: the bytes, directly (no redirect), honouring a single `Range` (reference §B.4). */
  private media(req: IncomingMessage, res: ServerResponse, file: StoredFile): void {
    if (file.mimeType === FOLDER_MIME || file.mimeType.startsWith("application/vnd.google-apps.")) {
      throw driveError(
        403,
        "fileNotDownloadable",
        "Only files with binary content can be downloaded. Use Export with Docs Editors files.",
        { locationType: "parameter", location: "alt" },
      );
    }
    const size = file.content?.size ?? 0;
    const range = req.headers.range;
    let start = 0;
    let end = size - 1;
    let status = 200;
    const headers: Record<string, string> = {
      "content-type": file.mimeType,
      "accept-ranges": "bytes",
    };
    if (range !== undefined) {
      const parsed = parseRange(range, size);
      if (parsed === "unsatisfiable") {
        res.writeHead(416, { "content-range": `bytes */${size}`, "content-length": "0" });
        res.end();
        return;
      }
      if (parsed) {
        ({ start, end } = parsed);
        status = 206;
        headers["content-range"] = `bytes ${start}-${end}/${size}`;
      }
    }
    headers["content-length"] = String(Math.max(0, end - start + 1));
    res.writeHead(status, headers);
    if (end < start || !file.content) {
      res.end();
      return;
    }
    const stream = createReadStream(file.content.path, { start, end });
    stream.on("error", () => res.destroy());
    res.on("close", () => stream.destroy());
    stream.pipe(res);
  }

  async create(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const caller = this.authenticate(req);
    const query = requestUrl(req).searchParams;
    const metadata = await readMetadata(req);
    const parent = this.parentFor(metadata.parents, caller, flag(query, "supportsAllDrives"));
    const isFolder = metadata.mimeType === FOLDER_MIME;
    const file = this.createFile(
      metadata,
      parent,
      caller,
      isFolder ? undefined : this.state.writeContent(new Uint8Array(0)),
    );
    sendJson(res, 200, this.fileAnswer(file, query));
  }

  async update(req: IncomingMessage, res: ServerResponse, id: string): Promise<void> {
    const caller = this.authenticate(req);
    const query = requestUrl(req).searchParams;
    const supportsAllDrives = flag(query, "supportsAllDrives");
    const file = this.visibleFile(id, caller, supportsAllDrives);
    const metadata = await readMetadata(req);
    if (metadata.parents !== undefined) {
      throw driveError(
        403,
        "fieldNotWritable",
        "The parents field is not directly writable in update requests. Use the addParents and removeParents parameters instead.",
      );
    }
    this.moveParents(file, query, caller, supportsAllDrives);
    this.applyMetadata(file, metadata);
    sendJson(res, 200, this.fileAnswer(file, query));
  }

  /** `addParents` / `removeParents` of files.update; a file keeps exactly one parent. */
  moveParents(file: StoredFile, query: URLSearchParams, caller: Caller, supportsAllDrives: boolean): void {
    const add = query.get("addParents");
    const remove = query.get("removeParents");
    if (add === null && remove === null) return;
    const removed = (remove ?? "")
      .split(",")
      .filter(Boolean)
      .map((id) => this.resolveId(id));
    const kept = file.parents.filter((id) => !removed.includes(id));
    const added = (add ?? "").split(",").filter(Boolean);
    const next = [...kept, ...added.map((id) => this.parentFor([id], caller, supportsAllDrives).id)];
    if (next.length !== 1) {
      throw driveError(403, "cannotAddParent", "Increasing the number of parents is not allowed.", {
        locationType: "parameter",
        location: "addParents",
      });
    }
    file.parents = next;
  }

  async delete(req: IncomingMessage, res: ServerResponse, id: string): Promise<void> {
    const caller = this.authenticate(req);
    const query = requestUrl(req).searchParams;
    const file = this.visibleFile(id, caller, flag(query, "supportsAllDrives"));
    if (this.state.isRoot(file)) {
      throw driveError(403, "cannotDeleteRoot", "The root folder cannot be deleted.");
    }
    this.state.remove(file.id);
    res.writeHead(204);
    res.end();
  }
}

/** Reads a JSON metadata body (possibly empty), checked for the fields the emulator models. */
export async function readMetadata(req: IncomingMessage): Promise<FileMetadata> {
  const body = await readBody(req, 1024 * 1024);
  if (body.length === 0) return {};
  return parseMetadata(body.toString("utf8"));
}

export function parseMetadata(text: string): FileMetadata {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw driveError(400, "parseError", "Parse Error");
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw driveError(400, "parseError", "Parse Error");
  }
  const record = data as Record<string, unknown>;
  const metadata: FileMetadata = {};
  const text_ = (name: "name" | "mimeType" | "description") => {
    const value = record[name];
    if (value === undefined) return;
    if (typeof value !== "string") throw invalidParameter(name, `Invalid value for ${name}`);
    metadata[name] = value;
  };
  text_("name");
  text_("mimeType");
  text_("description");
  if (record.parents !== undefined) {
    if (!Array.isArray(record.parents) || !record.parents.every((p) => typeof p === "string")) {
      throw invalidParameter("parents", "Invalid value for parents");
    }
    metadata.parents = record.parents as string[];
  }
  if (record.trashed !== undefined) {
    if (typeof record.trashed !== "boolean") throw invalidParameter("trashed", "Invalid value for trashed");
    metadata.trashed = record.trashed;
  }
  return metadata;
}

export function flag(query: URLSearchParams, name: string): boolean {
  return query.get(name) === "true";
}

export function maskOf(query: URLSearchParams, schema: FieldSchema, fallback: FieldMask): FieldMask {
  const fields = query.get("fields");
  if (fields === null || fields === "") return fallback;
  try {
    const mask = parseFieldMask(fields);
    checkFieldMask(mask, schema);
    return mask;
  } catch (err) {
    if (err instanceof FieldMaskError) throw invalidParameter("fields", err.message);
    throw err;
  }
}

function pageSizeOf(query: URLSearchParams): number {
  const text = query.get("pageSize");
  if (text === null) return DEFAULT_PAGE_SIZE;
  const size = Number(text);
  if (!Number.isInteger(size) || size < 1 || size > MAX_PAGE_SIZE) {
    throw invalidParameter("pageSize", `Invalid value '${text}'. Values must be within the range: [1, 1000]`);
  }
  return size;
}

/** With `partialPages`, every third page is empty and the others half full, as Drive may answer. */
function partialPageSize(pageIndex: number, pageSize: number): number {
  if (pageIndex % 3 === 1) return 0;
  return Math.max(1, Math.floor(pageSize / 2));
}

type Order = (a: StoredFile, b: StoredFile) => number;

const orderKeys: Record<string, Order> = {
  name: (a, b) => compareText(a.name.toLowerCase(), b.name.toLowerCase()),
  modifiedTime: (a, b) => a.modifiedTime - b.modifiedTime,
  createdTime: (a, b) => a.createdTime - b.createdTime,
  folder: (a, b) => Number(b.mimeType === FOLDER_MIME) - Number(a.mimeType === FOLDER_MIME),
};

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** `orderBy=name,modifiedTime desc`: keys applied in turn; without it, creation order. */
function orderOf(text: string | null): Order {
  const keys: Order[] = [];
  for (const part of (text ?? "")
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean)) {
    const [name, direction, extra] = part.split(/\s+/);
    const key = orderKeys[name!];
    if (!key || extra !== undefined || (direction !== undefined && direction !== "desc")) {
      throw invalidParameter("orderBy", `Invalid value for orderBy: ${part}`);
    }
    keys.push(direction === "desc" ? (a, b) => key(b, a) : key);
  }
  keys.push(orderKeys.createdTime!, (a, b) => compareText(a.id, b.id));
  return (a, b) => {
    for (const key of keys) {
      const result = key(a, b);
      if (result !== 0) return result;
    }
    return 0;
  };
}

/** One `bytes=` range of RFC 9110 §14.1.2, or `undefined` when the header is not one (then ignored). */
function parseRange(
  header: string,
  size: number,
): { start: number; end: number } | "unsatisfiable" | undefined {
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === "" && match[2] === "")) return undefined;
  if (match[1] === "") {
    const suffix = Number(match[2]);
    if (suffix === 0 || size === 0) return "unsatisfiable";
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(match[1]);
  const end = match[2] === "" ? size - 1 : Math.min(Number(match[2]), size - 1);
  if (start >= size || end < start) return "unsatisfiable";
  return { start, end };
}

/** An id in a route, decoded once. */
export function routeId(encoded: string): string {
  try {
    return decodeURIComponent(encoded);
  } catch {
    throw driveError(400, "badRequest", "Bad Request");
  }
}
