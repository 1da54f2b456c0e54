import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const FOLDER_MIME = "application/vnd.google-apps.folder";

/** Stored content of a binary file: on disk, so that large objects do not weigh on the process. */
export interface StoredContent {
  path: string;
  size: number;
  md5: string;
}

/** One file or folder as the emulator holds it. */
export interface StoredFile {
  id: string;
  name: string;
  mimeType: string;
  /** Empty only for the My Drive root and shared-drive roots. */
  parents: string[];
  /** The shared drive the file lives in; undefined in My Drive. */
  driveId?: string;
  createdTime: number;
  modifiedTime: number;
  /** Trashed by itself; a file is also trashed when one of its ancestors is. */
  explicitlyTrashed: boolean;
  /** The OAuth client that created it; undefined for files made elsewhere (the web UI, another tool). */
  appId?: string;
  content?: StoredContent;
  version: number;
}

/** What a test reads back about a file: a copy, never the live record. */
export interface DriveFileView {
  id: string;
  name: string;
  mimeType: string;
  parents: readonly string[];
  driveId?: string;
  createdTime: Date;
  modifiedTime: Date;
  /** Trashed by itself or through an ancestor. */
  trashed: boolean;
  appId?: string;
  size?: number;
  md5Checksum?: string;
  version: number;
}

/** Drive ids are opaque, URL-safe and case-sensitive; these look alike without claiming a format. */
export function newId(prefix = "1"): string {
  return `${prefix}${randomBytes(24).toString("base64url")}`;
}

/**
 * The emulator's files, with content stored in a temporary folder that {@link DriveState.dispose}
 * removes. Every write of content goes to a new path and is renamed into place, so a reader never
 * sees a half-written file and an update replaces content atomically, as Drive's uploads do.
 */
export class DriveState {
  readonly files = new Map<string, StoredFile>();
  readonly rootId: string;
  private readonly dir: string;
  private readonly now: () => number;

  constructor(now: () => number) {
    this.now = now;
    this.dir = mkdtempSync(join(tmpdir(), "stowage-drive-emulator-"));
    this.rootId = newId("0A");
    const time = now();
    this.files.set(this.rootId, {
      id: this.rootId,
      name: "My Drive",
      mimeType: FOLDER_MIME,
      parents: [],
      createdTime: time,
      modifiedTime: time,
      explicitlyTrashed: false,
      version: 1,
    });
  }

  /** A fresh path in the content folder, for an upload session or a new version. */
  newContentPath(): string {
    return join(this.dir, randomBytes(12).toString("hex"));
  }

  /** Writes whole content to a new path. */
  writeContent(bytes: Uint8Array): StoredContent {
    const path = this.newContentPath();
    writeFileSync(path, bytes);
    return { path, size: bytes.byteLength, md5: createHash("md5").update(bytes).digest("hex") };
  }

  /** Moves finished content (an upload session's file) to its own path. */
  adoptContent(path: string, size: number, md5: string): StoredContent {
    const target = this.newContentPath();
    renameSync(path, target);
    return { path: target, size, md5 };
  }

  readContent(file: StoredFile): Buffer {
    return file.content ? readFileSync(file.content.path) : Buffer.alloc(0);
  }

  /** Replaces a file's content; the old version's bytes are removed. */
  replaceContent(file: StoredFile, content: StoredContent): void {
    const old = file.content;
    file.content = content;
    file.version++;
    file.modifiedTime = Math.max(this.now(), file.modifiedTime + 1);
    if (old) removeQuietly(old.path);
  }

  isRoot(file: StoredFile): boolean {
    return file.parents.length === 0;
  }

  /** Trashed by itself or through an ancestor. */
  isTrashed(file: StoredFile): boolean {
    for (let current: StoredFile | undefined = file; current; ) {
      if (current.explicitlyTrashed) return true;
      const parent: string | undefined = current.parents[0];
      current = parent === undefined ? undefined : this.files.get(parent);
    }
    return false;
  }

  /** Removes a file and, for a folder, everything below it. */
  remove(id: string): void {
    const file = this.files.get(id);
    if (!file) return;
    for (const child of [...this.files.values()]) {
      if (child.parents.includes(id)) this.remove(child.id);
    }
    this.files.delete(id);
    if (file.content) removeQuietly(file.content.path);
  }

  /** Bytes of content stored in My Drive and shared drives together. */
  usedBytes(): number {
    let total = 0;
    for (const file of this.files.values()) total += file.content?.size ?? 0;
    return total;
  }

  view(file: StoredFile): DriveFileView {
    const view: DriveFileView = {
      id: file.id,
      name: file.name,
      mimeType: file.mimeType,
      parents: [...file.parents],
      createdTime: new Date(file.createdTime),
      modifiedTime: new Date(file.modifiedTime),
      trashed: this.isTrashed(file),
      version: file.version,
    };
    if (file.driveId !== undefined) view.driveId = file.driveId;
    if (file.appId !== undefined) view.appId = file.appId;
    if (file.content) {
      view.size = file.content.size;
      view.md5Checksum = file.content.md5;
    } else if (file.mimeType !== FOLDER_MIME && !file.mimeType.startsWith("application/vnd.google-apps.")) {
      view.size = 0;
      view.md5Checksum = EMPTY_MD5;
    }
    return view;
  }

  dispose(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

const EMPTY_MD5 = createHash("md5").digest("hex");

export function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Already gone: a concurrent replacement or the final cleanup removed it.
  }
}
