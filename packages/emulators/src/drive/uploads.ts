import { createHash, type Hash, randomBytes } from "node:crypto";
import { appendFile } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { readBody, requestUrl, sendJson } from "../http-server.js";
import { driveError, invalidParameter } from "./errors.js";
import {
  type Caller,
  type DriveService,
  type FileMetadata,
  flag,
  parseMetadata,
  readMetadata,
} from "./service.js";
import { removeQuietly, type StoredFile } from "./state.js";

/** Chunks of a resumable upload are multiples of this, except the last (reference §B.3). */
export const RESUMABLE_CHUNK_MULTIPLE = 262_144;

/** What a test sees of one resumable upload session. */
export interface DriveUploadSessionView {
  readonly id: string;
  /** Bytes persisted so far. */
  readonly received: number;
  /** The total, once the client has said it (`X-Upload-Content-Length` or a `Content-Range`). */
  readonly total?: number;
  readonly completed: boolean;
  /** Forgets the session, as Drive does when one expires: every later request to it is a 404. */
  expire(): void;
}

/** Callbacks a test sets to act at a precise point of an upload. */
export interface DriveUploadHooks {
  /** Called after a chunk is persisted and before it is answered (not for status queries). */
  afterChunk?: (session: DriveUploadSessionView) => void;
}

export interface UploadOptions {
  now: () => number;
  sessionLifetimeMs: number;
  /** Persist at most this many bytes of each chunk request (reference §B.3: the server may keep fewer). */
  persistAtMost?: number;
  /** The emulator's base URL, for `Location`. */
  baseUrl: () => string;
  hooks: DriveUploadHooks;
  /** The largest body one request may carry. */
  maxRequestBytes: number;
}

type Target =
  | { kind: "create"; parentId: string; metadata: FileMetadata }
  | { kind: "update"; fileId: string; metadata: FileMetadata };

interface Session {
  id: string;
  caller: Caller;
  target: Target;
  supportsAllDrives: boolean;
  /** The initiating request's query, echoed in `Location` (so `fields` applies to the final answer). */
  query: URLSearchParams;
  path: string;
  hash: Hash;
  received: number;
  total?: number;
  expiresAt: number;
  completed?: { fileId: string; status: number };
  busy: Promise<void>;
}

type ContentRange =
  | { kind: "status"; total?: number }
  | { kind: "bytes"; start: number; end: number; total?: number };

/**
 * Drive's upload endpoint (`/upload/drive/v3/files`): `uploadType=media`, `multipart` and
 * `resumable` for creates (POST) and updates (PATCH `/{id}`), and the resumable session URIs.
 */
export class UploadService {
  private readonly service: DriveService;
  private readonly options: UploadOptions;
  private readonly sessions = new Map<string, Session>();

  constructor(service: DriveService, options: UploadOptions) {
    this.service = service;
    this.options = options;
  }

  /** Every live session, oldest first. */
  views(): DriveUploadSessionView[] {
    return [...this.sessions.values()].map((session) => this.view(session));
  }

  /** Forgets every session (their later requests get 404). */
  expireAll(): void {
    for (const session of [...this.sessions.values()]) this.drop(session);
  }

  dispose(): void {
    this.expireAll();
  }

  /** `POST /upload/drive/v3/files` (create) and `PATCH /upload/drive/v3/files/{id}` (update). */
  async handle(req: IncomingMessage, res: ServerResponse, fileId: string | undefined): Promise<void> {
    const query = requestUrl(req).searchParams;
    const uploadId = query.get("upload_id");
    if (uploadId !== null) {
      if (req.method !== "PUT" && req.method !== "POST") throw notFoundRoute();
      return this.sessionRequest(req, res, uploadId);
    }
    const expected = fileId === undefined ? "POST" : "PATCH";
    if (req.method !== expected) throw notFoundRoute();
    const caller = this.service.authenticate(req);
    const supportsAllDrives = flag(query, "supportsAllDrives");
    const uploadType = query.get("uploadType");
    const existing =
      fileId === undefined ? undefined : this.service.visibleFile(fileId, caller, supportsAllDrives);
    if (uploadType === "resumable") return this.initiate(req, res, query, caller, existing);
    let metadata: FileMetadata = {};
    let bytes: Uint8Array;
    if (uploadType === "media") {
      bytes = await readBody(req, this.options.maxRequestBytes);
      const type = req.headers["content-type"];
      if (type !== undefined) metadata.mimeType = type.split(";")[0]!.trim();
    } else if (uploadType === "multipart") {
      ({ metadata, media: bytes } = parseMultipart(req, await readBody(req, this.options.maxRequestBytes)));
    } else {
      throw invalidParameter("uploadType", `Invalid value for uploadType: ${uploadType ?? "(none)"}`);
    }
    if (existing) {
      if (metadata.parents !== undefined) throw parentsNotWritable();
      this.service.checkQuota(bytes.byteLength, existing.content?.size ?? 0);
      this.service.state.replaceContent(existing, this.service.state.writeContent(bytes));
      this.service.applyMetadata(existing, metadata);
      return sendJson(res, 200, this.service.fileAnswer(existing, query));
    }
    const parent = this.service.parentFor(metadata.parents, caller, supportsAllDrives);
    this.service.checkQuota(bytes.byteLength);
    const file = this.service.createFile(metadata, parent, caller, this.service.state.writeContent(bytes));
    sendJson(res, 200, this.service.fileAnswer(file, query));
  }

  private async initiate(
    req: IncomingMessage,
    res: ServerResponse,
    query: URLSearchParams,
    caller: Caller,
    existing: StoredFile | undefined,
  ): Promise<void> {
    const metadata = await readMetadata(req);
    const supportsAllDrives = flag(query, "supportsAllDrives");
    const lengthHeader = req.headers["x-upload-content-length"];
    let total: number | undefined;
    if (lengthHeader !== undefined) {
      total = Number(lengthHeader);
      if (!Number.isSafeInteger(total) || total < 0) {
        throw driveError(400, "badRequest", "Invalid X-Upload-Content-Length", {
          locationType: "header",
          location: "X-Upload-Content-Length",
        });
      }
      this.service.checkQuota(total, existing?.content?.size ?? 0);
    }
    const uploadType = req.headers["x-upload-content-type"];
    if (metadata.mimeType === undefined && typeof uploadType === "string") metadata.mimeType = uploadType;
    let target: Target;
    if (existing) {
      if (metadata.parents !== undefined) throw parentsNotWritable();
      target = { kind: "update", fileId: existing.id, metadata };
    } else {
      const parent = this.service.parentFor(metadata.parents, caller, supportsAllDrives);
      target = { kind: "create", parentId: parent.id, metadata };
    }
    const id = randomBytes(24).toString("base64url");
    const session: Session = {
      id,
      caller,
      target,
      supportsAllDrives,
      query,
      path: this.service.state.newContentPath(),
      hash: createHash("md5"),
      received: 0,
      expiresAt: this.options.now() + this.options.sessionLifetimeMs,
      busy: Promise.resolve(),
    };
    if (total !== undefined) session.total = total;
    this.sessions.set(id, session);
    const location = new URL(requestUrl(req).pathname, this.options.baseUrl());
    for (const [name, value] of query) location.searchParams.append(name, value);
    location.searchParams.set("upload_id", id);
    res.writeHead(200, { location: location.href, "content-length": "0" });
    res.end();
  }

  private async sessionRequest(req: IncomingMessage, res: ServerResponse, uploadId: string): Promise<void> {
    const found = this.sessions.get(uploadId);
    const session = found && found.expiresAt > this.options.now() ? found : undefined;
    if (found && !session) this.drop(found);
    if (!session) {
      req.resume();
      throw driveError(404, "notFound", "The upload session was not found or has expired.", {
        locationType: "parameter",
        location: "upload_id",
      });
    }
    // The session URI itself grants access; a token that is sent must still be valid.
    this.service.optionalCaller(req);
    const header = req.headers["content-range"];
    const parsed = header === undefined ? undefined : parseContentRange(header);
    const body = await readBody(req, this.options.maxRequestBytes);
    // Without Content-Range the body is the whole content (reference §B.3: "PUT with the whole file").
    const range: ContentRange =
      parsed ??
      (body.length === 0
        ? { kind: "status", total: 0 }
        : { kind: "bytes", start: 0, end: body.length - 1, total: body.length });
    await this.exclusive(session, async () => {
      if (session.completed) return this.answerFinal(res, session);
      if (range.kind === "status") {
        if (body.length > 0) throw badRange("a status query (bytes */N) has no body");
        this.checkTotal(session, range.total);
        return this.answerProgress(req, res, session);
      }
      const { start, end } = range;
      if (body.length !== end - start + 1) {
        throw badRange(`Content-Range says ${end - start + 1} bytes, the body holds ${body.length}`);
      }
      this.checkTotal(session, range.total);
      const total = session.total;
      if (total !== undefined && end + 1 > total) throw badRange(`the range ends past the total ${total}`);
      if (start > session.received) {
        throw badRange(
          `the chunk starts at ${start} but ${session.received} bytes are persisted; query the status (bytes */*) and continue from there`,
        );
      }
      const final = total !== undefined && end + 1 === total;
      if (!final && (end - start + 1) % RESUMABLE_CHUNK_MULTIPLE !== 0) {
        throw badRange(`chunks other than the last must be multiples of ${RESUMABLE_CHUNK_MULTIPLE} bytes`);
      }
      // Bytes the session already holds (a chunk sent again) are skipped.
      const fresh = body.subarray(Math.min(body.length, session.received - start));
      const limit = this.options.persistAtMost;
      const kept = limit === undefined ? fresh : fresh.subarray(0, Math.min(fresh.length, limit));
      if (kept.length > 0) {
        await appendFile(session.path, kept);
        session.hash.update(kept);
        session.received += kept.length;
      }
      if (session.total !== undefined && session.received === session.total) this.complete(session);
      this.options.hooks.afterChunk?.(this.view(session));
      if (session.completed) return this.answerFinal(res, session);
      this.answerProgress(req, res, session);
    });
  }

  private checkTotal(session: Session, total: number | undefined): void {
    if (total === undefined) return;
    if (session.total !== undefined && session.total !== total) {
      throw badRange(`the total ${total} differs from the ${session.total} given before`);
    }
    if (total < session.received)
      throw badRange(`the total ${total} is less than the ${session.received} bytes persisted`);
    session.total = total;
    if (session.received === total && !session.completed) this.complete(session);
  }

  private complete(session: Session): void {
    const { state } = this.service;
    const size = session.received;
    const md5 = session.hash.copy().digest("hex");
    const target = session.target;
    if (target.kind === "update") {
      const file = state.files.get(target.fileId);
      if (!file || !this.service.canSee(file, session.caller, session.supportsAllDrives)) {
        this.drop(session);
        throw driveError(404, "notFound", `File not found: ${target.fileId}.`);
      }
      this.service.checkQuota(size, file.content?.size ?? 0);
      state.replaceContent(file, this.adopt(session, size, md5));
      this.service.applyMetadata(file, target.metadata);
      session.completed = { fileId: file.id, status: 200 };
      return;
    }
    const parent = state.files.get(target.parentId);
    if (!parent || !this.service.canSee(parent, session.caller, session.supportsAllDrives)) {
      this.drop(session);
      throw driveError(404, "notFound", `File not found: ${target.parentId}.`);
    }
    this.service.checkQuota(size);
    const file = this.service.createFile(
      target.metadata,
      parent,
      session.caller,
      this.adopt(session, size, md5),
    );
    session.completed = { fileId: file.id, status: 201 };
  }

  private adopt(session: Session, size: number, md5: string) {
    const { state } = this.service;
    // An empty upload never appended anything: its content file does not exist yet.
    return size === 0 ? state.writeContent(new Uint8Array(0)) : state.adoptContent(session.path, size, md5);
  }

  private answerFinal(res: ServerResponse, session: Session): void {
    const done = session.completed!;
    const file = this.service.state.files.get(done.fileId);
    if (!file) throw driveError(404, "notFound", `File not found: ${done.fileId}.`);
    sendJson(res, done.status, this.service.fileAnswer(file, session.query));
  }

  /**
   * 308 Resume Incomplete with `Range: bytes=0-N` (no Range while nothing is persisted); with
   * `X-GUploader-No-308: yes`, 200 plus `X-HTTP-Status-Code-Override: 308`, as Google's Go client
   * asks (reference §B.3).
   */
  private answerProgress(req: IncomingMessage, res: ServerResponse, session: Session): void {
    const headers: Record<string, string> = { "content-length": "0" };
    if (session.received > 0) headers.range = `bytes=0-${session.received - 1}`;
    if (String(req.headers["x-guploader-no-308"]).toLowerCase() === "yes") {
      res.writeHead(200, { ...headers, "x-http-status-code-override": "308" });
    } else {
      res.writeHead(308, "Resume Incomplete", headers);
    }
    res.end();
  }

  private async exclusive(session: Session, work: () => Promise<void> | void): Promise<void> {
    const previous = session.busy;
    let release!: () => void;
    session.busy = new Promise<void>((resolve) => {
      release = resolve;
    });
    await previous;
    try {
      await work();
    } finally {
      release();
    }
  }

  private drop(session: Session): void {
    this.sessions.delete(session.id);
    if (!session.completed) removeQuietly(session.path);
  }

  private view(session: Session): DriveUploadSessionView {
    const drop = () => this.drop(session);
    return {
      id: session.id,
      received: session.received,
      ...(session.total === undefined ? {} : { total: session.total }),
      completed: session.completed !== undefined,
      expire: drop,
    };
  }
}

function notFoundRoute() {
  return driveError(404, "notFound", "Not Found");
}

function parentsNotWritable() {
  return driveError(
    403,
    "fieldNotWritable",
    "The parents field is not directly writable in update requests. Use the addParents and removeParents parameters instead.",
  );
}

function badRange(message: string) {
  return driveError(400, "badRequest", `Invalid Content-Range: ${message}`, {
    locationType: "header",
    location: "Content-Range",
  });
}

// `bytes a-b/N`, `bytes a-b/*`, and the status queries `bytes */N` and `bytes */*`.
function parseContentRange(header: string): ContentRange {
  const match = /^bytes (?:\*|(\d+)-(\d+))\/(\*|\d+)$/.exec(header.trim());
  if (!match) throw badRange(`cannot read '${header}'`);
  const total = match[3] === "*" ? undefined : Number(match[3]);
  if (match[1] === undefined) return total === undefined ? { kind: "status" } : { kind: "status", total };
  const start = Number(match[1]);
  const end = Number(match[2]);
  if (end < start) throw badRange(`the range ${start}-${end} is empty`);
  return total === undefined ? { kind: "bytes", start, end } : { kind: "bytes", start, end, total };
}

/**
 * A `multipart/related` body: a JSON metadata part, then the media part (reference §B.3).
 */
function parseMultipart(req: IncomingMessage, body: Buffer): { metadata: FileMetadata; media: Uint8Array } {
  const type = req.headers["content-type"] ?? "";
  const boundary = /^multipart\/related\s*;.*boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(type);
  if (!boundary) {
    throw driveError(400, "badContent", "multipart uploads need Content-Type: multipart/related; boundary=…");
  }
  const delimiter = `--${boundary[1] ?? boundary[2]}`;
  const parts: Buffer[] = [];
  let position = body.indexOf(delimiter);
  while (position >= 0) {
    position += delimiter.length;
    if (body.subarray(position, position + 2).toString() === "--") break;
    if (body.subarray(position, position + 2).toString() !== "\r\n") break;
    position += 2;
    const next = body.indexOf(`\r\n${delimiter}`, position);
    if (next < 0) break;
    parts.push(body.subarray(position, next));
    position = next + 2;
  }
  if (parts.length !== 2) {
    throw driveError(
      400,
      "badContent",
      `a multipart upload has two parts (metadata, media); this one has ${parts.length}`,
    );
  }
  const [metadataPart, mediaPart] = parts.map(splitPart) as [
    ReturnType<typeof splitPart>,
    ReturnType<typeof splitPart>,
  ];
  const metadata = parseMetadata(metadataPart.body.toString("utf8"));
  const mediaType = mediaPart.headers["content-type"];
  if (metadata.mimeType === undefined && mediaType !== undefined)
    metadata.mimeType = mediaType.split(";")[0]!.trim();
  return { metadata, media: mediaPart.body };
}

function splitPart(part: Buffer): { headers: Record<string, string>; body: Buffer } {
  const split = part.indexOf("\r\n\r\n");
  if (split < 0) throw driveError(400, "badContent", "a multipart part has no header/body separator");
  const headers: Record<string, string> = {};
  for (const line of part.subarray(0, split).toString("utf8").split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { headers, body: part.subarray(split + 4) };
}
