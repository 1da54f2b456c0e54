import { randomBytes } from "node:crypto";
import type { ConflictBehavior } from "./drive.js";

/** OneDrive's fragment rules (reference §A.5). */
export const FRAGMENT_MULTIPLE = 327_680;
/** A fragment must be under this (reference §A.5: "each request must be under 60 MiB"). */
export const MAX_FRAGMENT_BYTES = 60 * 1024 * 1024;

/** One upload session, from createUploadSession to commit, cancel or expiry. */
export interface UploadSession {
  readonly id: string;
  /** The pre-authentication in the upload URL: the URL alone grants access, no bearer token. */
  readonly secret: string;
  /** Where the file lands: a folder and a name, or the existing file the session was created on. */
  readonly parentId: string;
  readonly name: string;
  readonly behavior: ConflictBehavior;
  /** `item.fileSize` from the create request, when given. */
  readonly declaredSize?: number;
  readonly createdAt: number;
  expiresAt: number;
  /** The total from the first fragment's Content-Range; every later fragment must repeat it. */
  total?: number;
  /** Bytes received so far, in order. */
  received: number;
  readonly parts: Buffer[];
  fragments: number;
  /** A commit was refused (name conflict): the bytes stay until the session expires or is deleted. */
  commitFailed: boolean;
}

/** What a test sees of a live session. */
export interface GraphUploadSessionInfo {
  id: string;
  /** The drive path the file will have, `/a/b/c.bin`. */
  path: string;
  received: number;
  total?: number;
  fragments: number;
  expiresAt: Date;
}

/** The live upload sessions of one emulator. */
export class SessionStore {
  private readonly sessions = new Map<string, UploadSession>();
  private readonly now: () => number;

  constructor(now: () => number) {
    this.now = now;
  }

  create(init: {
    parentId: string;
    name: string;
    behavior: ConflictBehavior;
    declaredSize?: number;
    lifetimeMs: number;
  }): UploadSession {
    const createdAt = this.now();
    const session: UploadSession = {
      id: randomBytes(12).toString("hex"),
      secret: randomBytes(24).toString("base64url"),
      parentId: init.parentId,
      name: init.name,
      behavior: init.behavior,
      declaredSize: init.declaredSize,
      createdAt,
      expiresAt: createdAt + init.lifetimeMs,
      received: 0,
      parts: [],
      fragments: 0,
      commitFailed: false,
    };
    this.sessions.set(session.id, session);
    return session;
  }

  /**
   * The live session with this id, or why there is none. An expired session is dropped (its bytes are
   * cleaned up) and reported once as `"expired"`, later as `"unknown"`.
   */
  lookup(id: string): UploadSession | "expired" | "unknown" {
    const session = this.sessions.get(id);
    if (!session) return "unknown";
    if (this.now() >= session.expiresAt) {
      this.sessions.delete(id);
      return "expired";
    }
    return session;
  }

  delete(id: string): boolean {
    return this.sessions.delete(id);
  }

  /** Ends every live session now, as if it had reached its expiry. */
  expireAll(): void {
    const now = this.now();
    for (const session of this.sessions.values()) session.expiresAt = now;
  }

  live(): UploadSession[] {
    const now = this.now();
    return [...this.sessions.values()].filter((session) => now < session.expiresAt);
  }
}
