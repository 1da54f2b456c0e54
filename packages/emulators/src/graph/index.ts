import { randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { quickXorHash } from "@stowage/core";
import { createFaults, type Faults } from "../faults.js";
import { readBody, requestUrl, sendJson, startHttpServer } from "../http-server.js";
import {
  type ConflictBehavior,
  type DriveEntry,
  DriveModel,
  type FileItem,
  type FolderItem,
  parentIsFile,
} from "./drive.js";
import { GraphError, wwwAuthenticate } from "./errors.js";
import {
  conflictBehaviorOf,
  type ItemAddress,
  parseContentRange,
  parseGraphPath,
  parseRange,
} from "./routes.js";
import {
  FRAGMENT_MULTIPLE,
  type GraphUploadSessionInfo,
  MAX_FRAGMENT_BYTES,
  SessionStore,
  type UploadSession,
} from "./sessions.js";

export { graphErrorBody, graphErrorResponse, graphThrottled } from "./errors.js";
export { FRAGMENT_MULTIPLE, type GraphUploadSessionInfo, MAX_FRAGMENT_BYTES } from "./sessions.js";

/** What the emulator's token check says about a bearer token (`OAuthProvider.validate` fits). */
export type GraphTokenCheck = { valid: true } | { valid: false; reason: "unknown" | "expired" | "revoked" };

export interface GraphEmulatorOptions {
  /** The drive's id. Default: 16 random hex digits, like a personal drive's. */
  driveId?: string;
  /**
   * OneDrive for Business naming rules: `#` and `%` are reserved and a name may not start with `~`
   * (reference §A.1). Default false (OneDrive Personal).
   */
  business?: boolean;
  /**
   * Checks each bearer token on the Graph API; pass `oauthProvider.validate` to tie the emulator to
   * {@link startOAuthProvider}'s tokens and their expiry. Default: any non-empty token is accepted.
   */
  validateToken?: (token: string) => GraphTokenCheck;
  /** The hash reported as `file.hashes.quickXorHash`. Default: the emulator's own quickXorHash. */
  hash?: (bytes: Uint8Array) => string;
  /** Page size of `children` when `$top` is absent. Default 200 (reference §A.3). */
  defaultPageSize?: number;
  /** The largest `$top` honoured; larger values are lowered to it. Default 1000. */
  maxPageSize?: number;
  /** A simple `PUT …/content` larger than this is refused with 413. Default 4 MiB (reference §A.4). */
  simpleUploadLimit?: number;
  /** The drive's size: writes beyond it fail with 507 `quotaLimitReached`. Default 1 TiB. */
  quotaBytes?: number;
  /** How long an upload session lives after it is created. Default 24 h (onedrive-api-docs #1570). */
  sessionLifetimeMs?: number;
  /**
   * What a request on an expired session gets: 404 (`itemNotFound`, the documented answer) or 401
   * (`unauthenticated` "The access token has expired", as reported in onedrive-api-docs #1570 and
   * abraunegg/onedrive #3355). Default 404.
   */
  expiredSessionStatus?: 404 | 401;
  /** How long a pre-authenticated download URL works. Default 5 minutes ("a few minutes"). */
  downloadUrlLifetimeMs?: number;
  /** `GET …/content` answers 302 to the download host (default true), or streams the bytes itself. */
  redirectDownloads?: boolean;
  /** Strictness where the real service is strict or a client bug hides (all default true). */
  strict?: {
    /** Refuse a fragment that is not a multiple of 320 KiB, except the last (reference §A.5). */
    fragmentMultiple?: boolean;
    /** Answer 401 to an upload-URL request that carries `Authorization` (reference §A.5). */
    noAuthorizationOnUploads?: boolean;
    /** Answer 401 to a download-URL request that carries `Authorization` (reference §A.6). */
    noAuthorizationOnDownloads?: boolean;
  };
  /**
   * Called after each fragment a session accepts, before the answer is sent: a test's way to act at a
   * known point of an upload (expire the session, move the clock, add a fault).
   */
  onFragment?: (fragment: GraphFragmentEvent) => void;
  /** The clock, in ms since the epoch; tests pass one they can move. Default `Date.now`. */
  now?: () => number;
  /** Share a fault set with other emulators; default: a new one, at `graph.faults`. */
  faults?: Faults;
}

/** A fragment an upload session accepted. */
export interface GraphFragmentEvent {
  /** The session's id (the last segment of its upload URL's path). */
  session: string;
  /** The drive path the file will have, `/a/b/c.bin`. */
  path: string;
  /** Bytes the session holds now. */
  received: number;
  total: number;
}

/** One request the emulator handled (faults that answered instead are not recorded). */
export interface GraphRequestRecord {
  /** The API, the pre-authenticated upload host, or the pre-authenticated download host. */
  host: "graph" | "upload" | "download";
  method: string;
  /** The path and query as sent; for the upload and download hosts, the path only. */
  path: string;
  /** 0 while the answer is not sent. */
  status: number;
  /** Whether an `Authorization` header came with it. */
  authorization: boolean;
  /** The `Range` (downloads) or `Content-Range` (fragments) header. */
  range?: string;
}

/** A stored file, as a test inspects it. */
export interface GraphFileInfo {
  id: string;
  /** The stored name (case preserved). */
  name: string;
  size: number;
  content: Buffer;
  quickXorHash: string;
}

export interface GraphEmulatorCounters {
  sessionsCreated: number;
  sessionsDeleted: number;
  sessionsCommitted: number;
  fragmentsAccepted: number;
  /** Fragment bytes accepted by sessions; equal to the file sizes when no byte was sent twice. */
  fragmentBytes: number;
  simpleUploads: number;
  downloads: number;
}

/** A running Microsoft Graph (OneDrive) emulator. */
export interface GraphEmulator {
  /** The API's origin, `http://127.0.0.1:<port>`. */
  readonly url: string;
  /** The API root clients use, `<url>/v1.0`. */
  readonly graphUrl: string;
  /** The origin of the upload host (upload sessions' URLs). */
  readonly uploadOrigin: string;
  /** The origin of the download host (the 302 targets). */
  readonly downloadOrigin: string;
  readonly driveId: string;
  /** Fault injection for all three hosts: paths `/v1.0/…`, `/up/<session>`, `/dl/<token>`. */
  readonly faults: Faults;
  readonly counters: Readonly<GraphEmulatorCounters>;
  /** Every request handled, in order. */
  readonly requests: readonly GraphRequestRecord[];
  /** The live upload sessions. */
  readonly sessions: readonly GraphUploadSessionInfo[];
  /** The file at a drive path (`Backups/pc1/a.bin`, matched case-insensitively), if any. */
  file(path: string): GraphFileInfo | undefined;
  /** The stored names inside a folder (`""` for the drive root); undefined when it is not a folder. */
  list(path: string): string[] | undefined;
  /** Creates the folders of a path, as a user would in the OneDrive app. */
  addFolder(path: string): void;
  /** Stores a file at a path (its folders are created), as a user would. */
  addFile(path: string, content: Uint8Array): void;
  /** Ends every live upload session now, as if each had reached its expiry. */
  expireSessions(): void;
  close(): Promise<void>;
}

const MiB = 1024 * 1024;

/**
 * Starts a Microsoft Graph emulator for OneDrive on 127.0.0.1, built from the documented protocol
 * (reference §A, checklist §E): path and id addressing, case-insensitive names, `children` paging with
 * an absolute `@odata.nextLink`, simple uploads up to 4 MiB, upload sessions with 320 KiB fragments,
 * 202/416/201 answers, status, cancel and expiry, downloads by 302 to a pre-authenticated host that
 * honours `Range`, quickXorHash on every file, Graph-shaped errors, and fault injection.
 *
 * Three servers share one fault set: the API, an upload host and a download host, so that a client
 * that sends its bearer token to a pre-authenticated URL is caught (401) as the real service can.
 *
 * @example
 * const oauth = await startOAuthProvider();
 * const graph = await startGraphEmulator({ validateToken: (t) => oauth.validate(t) });
 * graph.faults.add({ method: "PUT", path: /^\/up\//, respond: graphThrottled(429, 1) });
 * // … createOneDriveStorage({ graphUrl: graph.graphUrl, auth, root: "Backups/pc1" }) …
 * expect(graph.file("Backups/pc1/a.bin")?.size).toBe(1234);
 * await graph.close();
 */
export async function startGraphEmulator(options: GraphEmulatorOptions = {}): Promise<GraphEmulator> {
  const now = options.now ?? Date.now;
  const faults = options.faults ?? createFaults();
  const driveId = options.driveId ?? randomBytes(8).toString("hex");
  const business = options.business ?? false;
  const driveType = business ? "business" : "personal";
  const hash = options.hash ?? quickXorHash;
  const defaultPageSize = options.defaultPageSize ?? 200;
  const maxPageSize = options.maxPageSize ?? 1000;
  const simpleUploadLimit = options.simpleUploadLimit ?? 4 * MiB;
  const quotaBytes = options.quotaBytes ?? 1024 ** 4;
  const sessionLifetimeMs = options.sessionLifetimeMs ?? 24 * 3600_000;
  const expiredSessionStatus = options.expiredSessionStatus ?? 404;
  const downloadUrlLifetimeMs = options.downloadUrlLifetimeMs ?? 5 * 60_000;
  const redirectDownloads = options.redirectDownloads ?? true;
  const strict = {
    fragmentMultiple: options.strict?.fragmentMultiple ?? true,
    noAuthorizationOnUploads: options.strict?.noAuthorizationOnUploads ?? true,
    noAuthorizationOnDownloads: options.strict?.noAuthorizationOnDownloads ?? true,
  };
  const validateToken =
    options.validateToken ?? ((token: string) => ({ valid: token !== "" }) as GraphTokenCheck);

  const drive = new DriveModel(driveId, business, now);
  const sessions = new SessionStore(now);
  const downloads = new Map<string, { itemId: string; contentVersion: number; expiresAt: number }>();
  const requests: GraphRequestRecord[] = [];
  const counters: GraphEmulatorCounters = {
    sessionsCreated: 0,
    sessionsDeleted: 0,
    sessionsCommitted: 0,
    fragmentsAccepted: 0,
    fragmentBytes: 0,
    simpleUploads: 0,
    downloads: 0,
  };
  // Filled in once the servers listen; handlers only run after that.
  let graphOrigin = "";
  let uploadOrigin = "";
  let downloadOrigin = "";

  const iso = (ms: number) => new Date(ms).toISOString();

  const record = (
    host: GraphRequestRecord["host"],
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
  ) => {
    const header = host === "download" ? req.headers.range : req.headers["content-range"];
    const entry: GraphRequestRecord = {
      host,
      method: req.method ?? "GET",
      path,
      status: 0,
      authorization: req.headers.authorization !== undefined,
      ...(typeof header === "string" ? { range: header } : {}),
    };
    requests.push(entry);
    res.on("close", () => {
      entry.status = res.headersSent ? res.statusCode : 0;
    });
  };

  const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) =>
    sendJson(res, status, body, { "request-id": randomBytes(16).toString("hex"), ...headers });

  const downloadUrlFor = (file: FileItem): string => {
    const nowMs = now();
    for (const [token, grant] of downloads) if (grant.expiresAt <= nowMs) downloads.delete(token);
    const token = randomBytes(24).toString("base64url");
    downloads.set(token, {
      itemId: file.id,
      contentVersion: file.contentVersion,
      expiresAt: nowMs + downloadUrlLifetimeMs,
    });
    return `${downloadOrigin}/dl/${token}`;
  };

  const itemJson = (item: DriveEntry, withDownloadUrl: boolean): Record<string, unknown> => {
    const json: Record<string, unknown> = {
      id: item.id,
      name: item.name,
      size: drive.sizeOf(item),
      eTag: `"{${item.id}},${item.version}"`,
      createdDateTime: iso(item.created),
      lastModifiedDateTime: iso(item.modified),
      fileSystemInfo: { createdDateTime: iso(item.created), lastModifiedDateTime: iso(item.modified) },
      parentReference: item.parent
        ? { driveId, driveType, id: item.parent.id, path: `/drive/root:${drive.pathText(item.parent)}` }
        : { driveId, driveType },
    };
    if (item.kind === "file") {
      json.cTag = `"c:{${item.id}},${item.contentVersion}"`;
      json.file = { mimeType: "application/octet-stream", hashes: { quickXorHash: item.quickXorHash } };
      if (withDownloadUrl) json["@microsoft.graph.downloadUrl"] = downloadUrlFor(item);
    } else {
      json.folder = { childCount: item.children.size };
      if (item === drive.root) json.root = {};
    }
    return json;
  };

  const authenticate = (req: IncomingMessage) => {
    const header = req.headers.authorization;
    const token = /^bearer\s+(.+)$/i.exec(header ?? "")?.[1]?.trim();
    const refuse = (message: string): never => {
      throw new GraphError(401, "InvalidAuthenticationToken", message, {
        headers: { "www-authenticate": wwwAuthenticate },
      });
    };
    if (!token) refuse("Access token is empty.");
    const check = validateToken(token!);
    if (!check.valid) {
      refuse(
        check.reason === "expired"
          ? "Access token has expired or is not yet valid."
          : "Access token validation failure.",
      );
    }
  };

  const baseItem = (address: ItemAddress): DriveEntry => {
    const base = "root" in address.base ? drive.root : drive.item(address.base.id);
    if (!base) throw new GraphError(404, "itemNotFound", "The resource could not be found.");
    return base;
  };

  const existing = (address: ItemAddress): DriveEntry => {
    const resolved = drive.resolve(baseItem(address), address.segments);
    if (!("found" in resolved)) throw new GraphError(404, "itemNotFound", "The resource could not be found.");
    return resolved.found;
  };

  /** The parent folder and name a create addresses; `autoCreate` makes missing folders (simple PUT). */
  const createTarget = (address: ItemAddress, autoCreate: boolean): { parent: FolderItem; name: string } => {
    const base = baseItem(address);
    const parentSegments = address.segments.slice(0, -1);
    const name = address.segments.at(-1)!;
    if (base.kind !== "folder") throw new GraphError(400, "invalidRequest", "The parent is not a folder.");
    if (autoCreate) return { parent: drive.ensureFolders(base, parentSegments), name };
    const resolved = drive.resolve(base, parentSegments);
    if ("blockedByFile" in resolved || ("found" in resolved && resolved.found.kind === "file")) {
      throw parentIsFile(("blockedByFile" in resolved ? resolved.blockedByFile : resolved.found).name);
    }
    if ("missing" in resolved) {
      // The parent must exist before createUploadSession (onedrive-api-docs issue #364).
      throw new GraphError(409, "invalidRequest", "The parent folder does not exist.");
    }
    return { parent: resolved.found as FolderItem, name };
  };

  const readJson = async (req: IncomingMessage): Promise<Record<string, unknown> | undefined> => {
    const text = (await readBody(req, MiB)).toString("utf8");
    if (text.trim() === "") return undefined;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw new GraphError(400, "invalidRequest", "The request body is not valid JSON.");
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new GraphError(400, "invalidRequest", "The request body must be a JSON object.");
    }
    return value as Record<string, unknown>;
  };

  const listChildren = (res: ServerResponse, folder: DriveEntry, url: URL) => {
    const query = url.searchParams;
    if (query.has("$skip"))
      throw new GraphError(400, "invalidRequest", "$skip is not supported; use @odata.nextLink.");
    if (query.has("$filter"))
      throw new GraphError(400, "invalidRequest", "$filter is not supported on children.");
    const topText = query.get("$top");
    const top = topText === null ? defaultPageSize : Number(topText);
    if (!Number.isInteger(top) || top < 1)
      throw new GraphError(400, "invalidRequest", `Invalid $top '${topText}'.`);
    const pageSize = Math.min(top, maxPageSize);
    let after = "";
    const skipToken = query.get("$skiptoken");
    if (skipToken !== null) {
      const decoded = decodeSkipToken(skipToken);
      if (!decoded || decoded.folder !== folder.id) {
        throw new GraphError(400, "invalidRequest", "The $skiptoken is not valid for this request.");
      }
      after = decoded.after;
    }
    const children = folder.kind === "folder" ? [...folder.children.entries()] : [];
    const sorted = children
      .filter(([lower]) => lower > after)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const page = sorted.slice(0, pageSize);
    const body: Record<string, unknown> = { value: page.map(([, item]) => itemJson(item, true)) };
    if (sorted.length > pageSize) {
      const token = Buffer.from(JSON.stringify({ folder: folder.id, after: page.at(-1)![0] })).toString(
        "base64url",
      );
      body["@odata.nextLink"] = `${graphOrigin}${url.pathname}?$top=${top}&$skiptoken=${token}`;
    }
    send(res, 200, body);
  };

  const serveBytes = async (req: IncomingMessage, res: ServerResponse, file: FileItem) => {
    counters.downloads++;
    const content = file.content;
    const range = parseRange(req.headers.range, content.length);
    if (range === "unsatisfiable") {
      throw new GraphError(416, "invalidRange", "The requested range is not satisfiable.", {
        headers: { "content-range": `bytes */${content.length}` },
      });
    }
    const [start, end] = range ? [range.start, range.end] : [0, content.length - 1];
    res.writeHead(range ? 206 : 200, {
      "content-type": "application/octet-stream",
      "content-length": String(end - start + 1),
      "accept-ranges": "bytes",
      ...(range ? { "content-range": `bytes ${start}-${end}/${content.length}` } : {}),
    });
    await writeAll(res, content.subarray(start, end + 1));
  };

  const simpleUpload = async (req: IncomingMessage, res: ServerResponse, address: ItemAddress, url: URL) => {
    const declared = Number(req.headers["content-length"] ?? Number.NaN);
    if (declared > simpleUploadLimit) {
      req.resume();
      throw new GraphError(
        413,
        "invalidRequest",
        `Simple uploads are limited to ${simpleUploadLimit} bytes; use an upload session.`,
      );
    }
    const content = await readBody(req, simpleUploadLimit).catch((err: unknown) => {
      throw (err as { status?: number }).status === 413
        ? new GraphError(
            413,
            "invalidRequest",
            `Simple uploads are limited to ${simpleUploadLimit} bytes; use an upload session.`,
          )
        : err;
    });
    const behavior = conflictBehaviorOf(url.searchParams, undefined, "replace");
    let parent: FolderItem;
    let name: string;
    if (address.segments.length === 0) {
      const target = existing(address);
      if (target.kind !== "file")
        throw new GraphError(400, "invalidRequest", "Content can only be written to a file.");
      ({ parent, name } = { parent: target.parent!, name: target.name });
    } else {
      ({ parent, name } = createTarget(address, true));
    }
    const { item, created } = drive.writeFile(parent, name, content, hash(content), behavior, quotaBytes);
    counters.simpleUploads++;
    send(res, created ? 201 : 200, itemJson(item, false));
  };

  const createSession = async (req: IncomingMessage, res: ServerResponse, address: ItemAddress, url: URL) => {
    const body = await readJson(req);
    for (const key of Object.keys(body ?? {})) {
      // The item properties belong inside "item" (reference §A.5: several users got this wrong).
      if (key !== "item" && key !== "deferCommit") {
        throw new GraphError(
          400,
          "invalidRequest",
          `Property '${key}' does not exist on the upload session request; put item properties inside "item".`,
        );
      }
    }
    if (body?.deferCommit === true) throw new GraphError(501, "notSupported", "deferCommit is not emulated.");
    const item = (typeof body?.item === "object" && body.item !== null ? body.item : undefined) as
      | Record<string, unknown>
      | undefined;
    let parent: FolderItem;
    let name: string;
    let behavior: ConflictBehavior;
    if (address.segments.length === 0) {
      const target = existing(address);
      if (target.kind !== "file")
        throw new GraphError(400, "invalidRequest", "An upload session needs a file name.");
      ({ parent, name } = { parent: target.parent!, name: target.name });
      behavior = "replace";
    } else {
      ({ parent, name } = createTarget(address, false));
      // Newer Graph docs make "fail" the default (reference §A.5).
      behavior = conflictBehaviorOf(url.searchParams, item, "fail");
    }
    drive.acceptName(name, "file", parent);
    const fileSize = item?.fileSize;
    if (
      fileSize !== undefined &&
      (typeof fileSize !== "number" || !Number.isSafeInteger(fileSize) || fileSize < 0)
    ) {
      throw new GraphError(400, "invalidRequest", "fileSize must be a non-negative integer.");
    }
    if (typeof fileSize === "number" && drive.used + fileSize > quotaBytes) {
      throw new GraphError(507, "quotaLimitReached", "Insufficient Space Available");
    }
    const session = sessions.create({
      parentId: parent.id,
      name,
      behavior,
      declaredSize: fileSize as number | undefined,
      lifetimeMs: sessionLifetimeMs,
    });
    counters.sessionsCreated++;
    send(res, 200, {
      uploadUrl: `${uploadOrigin}/up/${session.id}?tempauth=${session.secret}`,
      expirationDateTime: iso(session.expiresAt),
      nextExpectedRanges: ["0-"],
    });
  };

  const handleGraph = async (req: IncomingMessage, res: ServerResponse) => {
    const url = requestUrl(req);
    record("graph", req, res, `${url.pathname}${url.search}`);
    authenticate(req);
    const target = parseGraphPath(url.pathname);
    if (target.drive !== "me" && target.drive !== driveId) {
      throw new GraphError(404, "itemNotFound", `The drive '${target.drive}' was not found.`);
    }
    const method = req.method ?? "GET";
    if (!("item" in target)) {
      if (method !== "GET")
        throw new GraphError(405, "notSupported", `${method} is not supported on a drive.`);
      return send(res, 200, {
        id: driveId,
        driveType,
        owner: { user: { displayName: "Emulated User" } },
        quota: {
          total: quotaBytes,
          used: drive.used,
          remaining: quotaBytes - drive.used,
          deleted: 0,
          state: "normal",
        },
      });
    }
    const address = target.item;
    switch (`${method} ${address.action}`) {
      case "GET ":
        return send(res, 200, itemJson(existing(address), true));
      case "GET children":
        return listChildren(res, existing(address), url);
      case "GET content": {
        const file = existing(address);
        if (file.kind !== "file") throw new GraphError(404, "itemNotFound", "A folder has no content.");
        if (!redirectDownloads) return serveBytes(req, res, file);
        res.writeHead(302, { location: downloadUrlFor(file), "content-length": "0" });
        return void res.end();
      }
      case "PUT content":
        return simpleUpload(req, res, address, url);
      case "POST children": {
        const parent = existing(address);
        if (parent.kind !== "folder")
          throw new GraphError(400, "invalidRequest", "Children can only be created in a folder.");
        const body = (await readJson(req)) ?? {};
        if (typeof body.name !== "string")
          throw new GraphError(400, "invalidRequest", "The name is required.");
        if (typeof body.folder !== "object" || body.folder === null) {
          throw new GraphError(
            400,
            "invalidRequest",
            "Only folders can be created here; upload files with PUT or an upload session.",
          );
        }
        const behavior = conflictBehaviorOf(url.searchParams, body, "fail");
        const { item, created } = drive.createFolder(parent, body.name, behavior);
        return send(res, created ? 201 : 200, itemJson(item, false));
      }
      case "POST createUploadSession":
        return createSession(req, res, address, url);
      case "DELETE ": {
        const item = existing(address);
        const ifMatch = req.headers["if-match"];
        if (ifMatch !== undefined && ifMatch !== `"{${item.id}},${item.version}"` && ifMatch !== "*") {
          throw new GraphError(412, "resourceModified", "The eTag does not match the item's current eTag.");
        }
        drive.remove(item);
        res.writeHead(204);
        return void res.end();
      }
      default:
        throw new GraphError(405, "notSupported", `${method} is not supported here.`);
    }
  };

  const sessionPath = (session: UploadSession) =>
    `${drive.pathText(drive.item(session.parentId) ?? drive.root)}/${session.name}`;

  const sessionGone = (session: "expired" | "unknown", created?: number): never => {
    if (session === "expired" && expiredSessionStatus === 401) {
      throw new GraphError(
        401,
        "unauthenticated",
        `The access token has expired. It's valid from '${iso(created ?? 0)}' and to '${iso(now())}'.`,
        { innerCode: "expiredToken" },
      );
    }
    throw new GraphError(404, "itemNotFound", "The upload session was not found.", {
      innerCode: "uploadSessionNotFound",
    });
  };

  const sessionStatus = (session: UploadSession) => ({
    expirationDateTime: iso(session.expiresAt),
    nextExpectedRanges: session.commitFailed ? [] : [`${session.received}-`],
  });

  const handleUpload = async (req: IncomingMessage, res: ServerResponse) => {
    const url = requestUrl(req);
    record("upload", req, res, url.pathname);
    const id = /^\/up\/([0-9a-f]+)$/.exec(url.pathname)?.[1];
    if (!id)
      throw new GraphError(404, "itemNotFound", "The upload session was not found.", {
        innerCode: "uploadSessionNotFound",
      });
    const found = sessions.lookup(id);
    if (typeof found === "string") return sessionGone(found);
    const session = found;
    if (url.searchParams.get("tempauth") !== session.secret) {
      throw new GraphError(401, "unauthenticated", "The upload URL is not valid.");
    }
    if (strict.noAuthorizationOnUploads && req.headers.authorization !== undefined) {
      // Reference §A.5: the fragments must not carry the bearer token; the service may answer 401.
      throw new GraphError(401, "unauthenticated", "Do not send an Authorization header to an upload URL.");
    }
    switch (req.method) {
      case "GET":
        return send(res, 200, sessionStatus(session));
      case "DELETE":
        sessions.delete(session.id);
        counters.sessionsDeleted++;
        res.writeHead(204);
        return void res.end();
      case "PUT":
        return acceptFragment(req, res, session);
      default:
        throw new GraphError(405, "notSupported", `${req.method} is not supported on an upload URL.`);
    }
  };

  const acceptFragment = async (req: IncomingMessage, res: ServerResponse, session: UploadSession) => {
    const range = parseContentRange(req.headers["content-range"]);
    const refuse = (status: number, code: string, message: string, innerCode?: string): never => {
      req.resume();
      throw new GraphError(status, code, message, { innerCode });
    };
    if (!range) refuse(400, "invalidRequest", "A valid Content-Range header (bytes a-b/total) is required.");
    const { start, end, total } = range!;
    const length = end - start + 1;
    if (length >= MAX_FRAGMENT_BYTES) {
      refuse(413, "invalidRequest", "A fragment must be smaller than 60 MiB.", "maxFragmentLengthExceeded");
    }
    const contentLength = req.headers["content-length"];
    if (contentLength !== undefined && Number(contentLength) !== length) {
      refuse(400, "invalidRequest", "Content-Length does not match Content-Range.");
    }
    const expectedTotal = session.total ?? session.declaredSize;
    if (expectedTotal !== undefined && total !== expectedTotal) {
      refuse(
        400,
        "invalidRequest",
        "The total in Content-Range differs from the file's size.",
        "fragmentLengthMismatch",
      );
    }
    if (start < session.received || session.commitFailed) {
      refuse(416, "invalidRange", "The fragment overlaps bytes already received.", "fragmentOverlap");
    }
    if (start > session.received) {
      refuse(
        400,
        "invalidRequest",
        `Fragments must be sent in order; the next expected byte is ${session.received}.`,
        "fragmentOutOfOrder",
      );
    }
    if (strict.fragmentMultiple && end + 1 < total && length % FRAGMENT_MULTIPLE !== 0) {
      refuse(
        400,
        "invalidRequest",
        "Every fragment but the last must be a multiple of 320 KiB (327,680 bytes).",
      );
    }
    // A request cut off before its end is discarded whole (reference §A.5): readBody throws then.
    const bytes = await readBody(req, length);
    if (bytes.length !== length)
      refuse(400, "invalidRequest", "The body is shorter than Content-Range says.");
    if (start !== session.received) {
      // Another request for this range landed while this one was being read.
      refuse(416, "invalidRange", "The fragment overlaps bytes already received.", "fragmentOverlap");
    }
    session.parts.push(bytes);
    session.received = end + 1;
    session.total = total;
    session.fragments++;
    counters.fragmentsAccepted++;
    counters.fragmentBytes += length;
    options.onFragment?.({
      session: session.id,
      path: sessionPath(session),
      received: session.received,
      total,
    });
    if (session.received < total) return send(res, 202, sessionStatus(session));
    commit(res, session);
  };

  const commit = (res: ServerResponse, session: UploadSession) => {
    const parent = drive.item(session.parentId);
    if (parent?.kind !== "folder") {
      session.commitFailed = true;
      throw new GraphError(409, "invalidRequest", "The parent folder no longer exists.");
    }
    const content = Buffer.concat(session.parts);
    let result: { item: FileItem; created: boolean };
    try {
      result = drive.writeFile(parent, session.name, content, hash(content), session.behavior, quotaBytes);
    } catch (err) {
      // The bytes stay with the session until it expires or is deleted (reference §A.5).
      session.commitFailed = true;
      throw err;
    }
    sessions.delete(session.id);
    counters.sessionsCommitted++;
    send(res, result.created ? 201 : 200, itemJson(result.item, false));
  };

  const handleDownload = async (req: IncomingMessage, res: ServerResponse) => {
    const url = requestUrl(req);
    record("download", req, res, url.pathname);
    const token = /^\/dl\/([A-Za-z0-9_-]+)$/.exec(url.pathname)?.[1];
    const grant = token === undefined ? undefined : downloads.get(token);
    const file = grant ? drive.item(grant.itemId) : undefined;
    if (
      !grant ||
      grant.expiresAt <= now() ||
      file?.kind !== "file" ||
      file.contentVersion !== grant.contentVersion
    ) {
      throw new GraphError(404, "itemNotFound", "The download URL has expired or its item has changed.");
    }
    if (strict.noAuthorizationOnDownloads && req.headers.authorization !== undefined) {
      // Reference §A.6: the pre-authenticated URL needs no token, and a client must drop it on redirect.
      throw new GraphError(401, "unauthenticated", "Do not send an Authorization header to a download URL.");
    }
    if (req.method !== "GET")
      throw new GraphError(405, "notSupported", `${req.method} is not supported on a download URL.`);
    await serveBytes(req, res, file);
  };

  const [graphServer, uploadServer, downloadServer] = await Promise.all([
    startHttpServer(drainOnError(handleGraph), { faults }),
    startHttpServer(drainOnError(handleUpload), { faults }),
    startHttpServer(drainOnError(handleDownload), { faults }),
  ]);
  graphOrigin = graphServer.url;
  uploadOrigin = uploadServer.url;
  downloadOrigin = downloadServer.url;

  const splitPath = (path: string) => path.split("/").filter((segment) => segment !== "");

  return {
    url: graphOrigin,
    graphUrl: `${graphOrigin}/v1.0`,
    uploadOrigin,
    downloadOrigin,
    driveId,
    faults,
    counters,
    requests,
    get sessions() {
      return sessions.live().map((session) => ({
        id: session.id,
        path: sessionPath(session),
        received: session.received,
        total: session.total,
        fragments: session.fragments,
        expiresAt: new Date(session.expiresAt),
      }));
    },
    file(path) {
      const resolved = drive.resolve(drive.root, splitPath(path));
      if (!("found" in resolved) || resolved.found.kind !== "file") return undefined;
      const file = resolved.found;
      return {
        id: file.id,
        name: file.name,
        size: file.content.length,
        content: file.content,
        quickXorHash: file.quickXorHash,
      };
    },
    list(path) {
      const resolved = drive.resolve(drive.root, splitPath(path));
      if (!("found" in resolved) || resolved.found.kind !== "folder") return undefined;
      return [...resolved.found.children.values()].map((item) => item.name);
    },
    addFolder(path) {
      drive.ensureFolders(drive.root, splitPath(path));
    },
    addFile(path, content) {
      const segments = splitPath(path);
      const parent = drive.ensureFolders(drive.root, segments.slice(0, -1));
      const bytes = Buffer.from(content);
      drive.writeFile(parent, segments.at(-1)!, bytes, hash(bytes), "replace", quotaBytes);
    },
    expireSessions() {
      sessions.expireAll();
    },
    async close() {
      await Promise.all([graphServer.close(), uploadServer.close(), downloadServer.close()]);
    },
  };
}

/** A refused request's unread body is drained, so that its connection can carry the next one. */
function drainOnError(
  handler: (req: IncomingMessage, res: ServerResponse) => Promise<void>,
): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  return async (req, res) => {
    try {
      await handler(req, res);
    } catch (err) {
      req.resume();
      throw err;
    }
  };
}

function decodeSkipToken(token: string): { folder: string; after: string } | undefined {
  try {
    const value = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as {
      folder?: unknown;
      after?: unknown;
    };
    return typeof value.folder === "string" && typeof value.after === "string"
      ? { folder: value.folder, after: value.after }
      : undefined;
  } catch {
    return undefined;
  }
}

const WRITE_CHUNK = 256 * 1024;

/** Writes a body in pieces with backpressure, so that a `resetAfterBytes` fault can cut it mid-way. */
async function writeAll(res: ServerResponse, bytes: Buffer): Promise<void> {
  for (let offset = 0; offset < bytes.length; offset += WRITE_CHUNK) {
    if (res.destroyed) return;
    if (!res.write(bytes.subarray(offset, offset + WRITE_CHUNK))) {
      await new Promise<void>((resolve) => {
        const done = () => {
          res.off("drain", done);
          res.off("close", done);
          resolve();
        };
        res.once("drain", done);
        res.once("close", done);
      });
    }
  }
  if (!res.destroyed) res.end();
}
