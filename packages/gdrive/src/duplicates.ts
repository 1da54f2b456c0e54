import { type Logger, StorageError } from "@stowage/core";
import type { DriveFile } from "./api.js";

/**
 * What to do when Drive holds several files (or folders) of one name in one folder, which it allows
 * (reference §B.6): `newest` uses the most recently modified one and logs a warning; `error` fails
 * with `Conflict` naming the key.
 */
export type DuplicatesPolicy = "newest" | "error";

/** Newest first: by modifiedTime, then createdTime, then id, so that every call picks the same one. */
function newestFirst(a: DriveFile, b: DriveFile): number {
  const time = (value: string | undefined) => (value === undefined ? 0 : Date.parse(value));
  return (
    time(b.modifiedTime) - time(a.modifiedTime) ||
    time(b.createdTime) - time(a.createdTime) ||
    (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  );
}

/** Where a duplicate was met, for the message. */
export interface DuplicateSite {
  operation: string;
  /** The key (relative to the root) the name stands for; a folder above the root names its path. */
  key: string;
  kind: "object" | "folder";
  /** How many share the name, when known. */
  count?: number;
}

/**
 * Applies the policy the same way for stat, get, put, delete and list, and warns once per key so
 * that a listing of a folder full of duplicates does not flood the log.
 */
export class DuplicateChooser {
  readonly policy: DuplicatesPolicy;
  private readonly logger: Logger;
  private readonly warned = new Set<string>();

  constructor(policy: DuplicatesPolicy, logger: Logger) {
    this.policy = policy;
    this.logger = logger;
  }

  /** The one file the key stands for, or undefined when there is none. */
  choose(candidates: readonly DriveFile[], site: Omit<DuplicateSite, "count">): DriveFile | undefined {
    if (candidates.length <= 1) return candidates[0];
    this.met({ ...site, count: candidates.length });
    return [...candidates].sort(newestFirst)[0];
  }

  /** Reports a duplicate: throws `Conflict` under `error`, warns (once per key) under `newest`. */
  met(site: DuplicateSite): void {
    const what = site.kind === "folder" ? "folders" : "files";
    // A listing meets the second copy before it knows how many there are.
    const count = site.count === undefined ? "at least 2" : String(site.count);
    const name = site.key.slice(site.key.lastIndexOf("/") + 1);
    if (this.policy === "error") {
      throw new StorageError({
        provider: "gdrive",
        operation: site.operation,
        key: site.key,
        code: "Conflict",
        message: `${count} ${what} in one Drive folder are named '${name}' (Drive allows duplicate names), and duplicates is 'error'`,
        hint: "keep one of them (delete the others in the Drive web UI), or open the storage with duplicates: 'newest' to use the most recently modified",
      });
    }
    const id = `${site.kind}:${site.key}`;
    if (this.warned.has(id)) return;
    this.warned.add(id);
    this.logger.warn(
      { provider: "gdrive", operation: site.operation, key: site.key, kind: site.kind, count: site.count },
      `${count} ${what} in one Drive folder are named '${name}'; using the most recently modified (duplicates: 'newest')`,
    );
  }
}
