import { GraphError } from "./errors.js";

/** How a create meets an existing item of the same name (reference §A.4, §A.5, §A.8). */
export type ConflictBehavior = "fail" | "replace" | "rename";

interface ItemBase {
  readonly id: string;
  name: string;
  parent: FolderItem | undefined;
  created: number;
  modified: number;
  /** Bumped on every change: the eTag. */
  version: number;
}

export interface FolderItem extends ItemBase {
  readonly kind: "folder";
  /** Keyed by the lower-cased name: names are case-insensitive and case-preserving (reference §A.1). */
  readonly children: Map<string, DriveEntry>;
}

export interface FileItem extends ItemBase {
  readonly kind: "file";
  content: Buffer;
  /** Bumped when the content changes: the cTag, and what a download URL is bound to. */
  contentVersion: number;
  quickXorHash: string;
}

export type DriveEntry = FolderItem | FileItem;

/** Where a path leads: the item, or how far it got. */
export type Resolution =
  | { found: DriveEntry }
  | { missing: FolderItem; index: number }
  | { blockedByFile: FileItem; index: number };

const RESERVED_CHARACTERS = /["*:<>?/\\|]/;
const RESERVED_BUSINESS = /[#%]/;
const RESERVED_NAMES = new Set([
  ".lock",
  "desktop.ini",
  "con",
  "prn",
  "aux",
  "nul",
  ...Array.from({ length: 10 }, (_, i) => `com${i}`),
  ...Array.from({ length: 10 }, (_, i) => `lpt${i}`),
]);
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it looks for.
const CONTROL = /[\u0000-\u001f\u007f]/;
const MAX_NAME_CHARS = 255;
/** rclone's OneDrive docs: the whole path must stay under 400 characters. */
const MAX_PATH_CHARS = 400;

/** The emulated drive's items, with OneDrive's naming rules. */
export class DriveModel {
  readonly root: FolderItem;
  readonly driveId: string;
  readonly business: boolean;
  private readonly now: () => number;
  private readonly byId = new Map<string, DriveEntry>();
  private nextId = 1;
  private usedBytes = 0;

  constructor(driveId: string, business: boolean, now: () => number) {
    this.driveId = driveId;
    this.business = business;
    this.now = now;
    this.root = this.newFolder("root", undefined);
  }

  get used(): number {
    return this.usedBytes;
  }

  item(id: string): DriveEntry | undefined {
    return this.byId.get(id);
  }

  /** Walks `segments` (decoded names) from `base`, matching names case-insensitively. */
  resolve(base: DriveEntry, segments: readonly string[]): Resolution {
    let current: DriveEntry = base;
    for (let index = 0; index < segments.length; index++) {
      if (current.kind === "file") return { blockedByFile: current, index };
      const child = current.children.get(segments[index]!.toLowerCase());
      if (!child) return { missing: current, index };
      current = child;
    }
    return { found: current };
  }

  /**
   * The name an item is stored under, or a 400 for a name OneDrive refuses (reference §A.1). Leading
   * and trailing spaces are dropped, as OneDrive does, and so is a file name's trailing dot; a folder
   * name may not end with a dot.
   */
  acceptName(raw: string, kind: "file" | "folder", parent: FolderItem): string {
    const refuse = (why: string, innerCode?: string): never => {
      throw new GraphError(400, "invalidRequest", why, { innerCode });
    };
    let name = raw.replace(/^ +| +$/g, "");
    if (kind === "file") name = name.replace(/\.+$/, "");
    if (name === "") refuse("The name is empty.");
    if (kind === "folder" && name.endsWith(".")) refuse("A folder name cannot end with a period.");
    if (CONTROL.test(name) || RESERVED_CHARACTERS.test(name)) {
      refuse(`The name '${name}' contains characters that are not allowed.`);
    }
    if (this.business && (RESERVED_BUSINESS.test(name) || name.startsWith("~"))) {
      refuse(`The name '${name}' contains characters that are not allowed in OneDrive for Business.`);
    }
    const lower = name.toLowerCase();
    if (RESERVED_NAMES.has(lower) || lower.includes("_vti_") || lower.startsWith("~$")) {
      refuse(`The name '${name}' is reserved.`);
    }
    if (name.length > MAX_NAME_CHARS) refuse(`The name is longer than ${MAX_NAME_CHARS} characters.`);
    if (this.pathText(parent).length + 1 + name.length > MAX_PATH_CHARS) {
      refuse(`The path is longer than ${MAX_PATH_CHARS} characters.`, "pathIsTooLong");
    }
    return name;
  }

  /** Creates a folder (POST children). `created` is false when `replace` kept an existing folder. */
  createFolder(
    parent: FolderItem,
    rawName: string,
    behavior: ConflictBehavior,
  ): { item: FolderItem; created: boolean } {
    const name = this.acceptName(rawName, "folder", parent);
    const existing = parent.children.get(name.toLowerCase());
    if (existing) {
      if (behavior === "fail") throw nameConflict(existing.name);
      if (behavior === "replace" && existing.kind === "folder") return { item: existing, created: false };
      if (behavior === "replace") this.remove(existing);
    }
    const finalName = existing && behavior === "rename" ? this.freeName(parent, name) : name;
    const folder = this.newFolder(finalName, parent);
    this.touch(parent);
    return { item: folder, created: true };
  }

  /** The folder at `segments` below `base`, creating missing ones (a simple upload does: issue #364). */
  ensureFolders(base: FolderItem, segments: readonly string[]): FolderItem {
    let current = base;
    for (const segment of segments) {
      const child = current.children.get(segment.toLowerCase());
      if (child?.kind === "file") throw parentIsFile(child.name);
      current = child ?? this.createFolder(current, segment, "fail").item;
    }
    return current;
  }

  /**
   * Stores a file's content under `name` in `parent`, creating or replacing (a replace keeps the item's
   * id and name). Refuses with 409 `nameAlreadyExists` under `fail`, or when a folder has the name.
   */
  writeFile(
    parent: FolderItem,
    rawName: string,
    content: Buffer,
    quickXorHash: string,
    behavior: ConflictBehavior,
    quotaBytes: number,
  ): { item: FileItem; created: boolean } {
    const name = this.acceptName(rawName, "file", parent);
    const existing = parent.children.get(name.toLowerCase());
    if (existing && (behavior === "fail" || existing.kind === "folder")) {
      if (behavior !== "rename") throw nameConflict(existing.name);
    }
    if (existing?.kind === "file" && behavior === "replace") {
      this.reserve(content.length - existing.content.length, quotaBytes);
      existing.content = content;
      existing.quickXorHash = quickXorHash;
      existing.contentVersion++;
      this.touch(existing);
      this.touch(parent);
      return { item: existing, created: false };
    }
    this.reserve(content.length, quotaBytes);
    const finalName = existing ? this.freeName(parent, name) : name;
    const now = this.now();
    const file: FileItem = {
      kind: "file",
      id: this.newId(),
      name: finalName,
      parent,
      created: now,
      modified: now,
      version: 1,
      content,
      contentVersion: 1,
      quickXorHash,
    };
    this.attach(file);
    this.touch(parent);
    return { item: file, created: true };
  }

  /** Deletes an item and everything below it. */
  remove(item: DriveEntry): void {
    if (item === this.root) throw new GraphError(403, "accessDenied", "The root folder cannot be deleted.");
    const parent = item.parent!;
    parent.children.delete(item.name.toLowerCase());
    this.touch(parent);
    const drop = (entry: DriveEntry) => {
      this.byId.delete(entry.id);
      if (entry.kind === "file") this.usedBytes -= entry.content.length;
      else for (const child of entry.children.values()) drop(child);
    };
    drop(item);
  }

  /** Fails with 507 when `delta` more bytes would exceed the quota. */
  reserve(delta: number, quotaBytes: number): void {
    if (this.usedBytes + delta > quotaBytes) {
      throw new GraphError(507, "quotaLimitReached", "Insufficient Space Available");
    }
    this.usedBytes += delta;
  }

  /** The decoded path of an item from the drive root, `""` for the root, `/a/b` otherwise. */
  pathText(item: DriveEntry): string {
    const names: string[] = [];
    for (let current: DriveEntry | undefined = item; current?.parent; current = current.parent) {
      names.unshift(current.name);
    }
    return names.length === 0 ? "" : `/${names.join("/")}`;
  }

  /** Total bytes of the files below a folder (Graph reports a folder's size as that). */
  sizeOf(item: DriveEntry): number {
    if (item.kind === "file") return item.content.length;
    let total = 0;
    for (const child of item.children.values()) total += this.sizeOf(child);
    return total;
  }

  private newId(): string {
    return `${this.driveId.toUpperCase()}!${this.nextId++}`;
  }

  private newFolder(name: string, parent: FolderItem | undefined): FolderItem {
    const now = this.now();
    const folder: FolderItem = {
      kind: "folder",
      id: parent === undefined ? `${this.driveId.toUpperCase()}!root` : this.newId(),
      name,
      parent,
      created: now,
      modified: now,
      version: 1,
      children: new Map(),
    };
    this.attach(folder);
    return folder;
  }

  private attach(item: DriveEntry): void {
    this.byId.set(item.id, item);
    item.parent?.children.set(item.name.toLowerCase(), item);
  }

  private touch(item: DriveEntry): void {
    item.modified = this.now();
    item.version++;
  }

  /** `name 1`, `name 2`, … before the extension, as `rename` does. */
  private freeName(parent: FolderItem, name: string): string {
    const dot = name.lastIndexOf(".");
    const [stem, extension] = dot > 0 ? [name.slice(0, dot), name.slice(dot)] : [name, ""];
    for (let n = 1; ; n++) {
      const candidate = `${stem} ${n}${extension}`;
      if (!parent.children.has(candidate.toLowerCase())) return candidate;
    }
  }
}

function nameConflict(name: string): GraphError {
  return new GraphError(409, "nameAlreadyExists", `An item named '${name}' already exists.`);
}

export function parentIsFile(name: string): GraphError {
  return new GraphError(409, "invalidRequest", `'${name}' is a file, not a folder.`);
}
