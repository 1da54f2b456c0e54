import { StorageError } from "@stowage/core";
import type { CallContext, RemotePath, WebDavApi } from "./api.js";
import { pathFromSegments } from "./names.js";

// Enough for the folders of a large backup set; past it the cache starts over (a miss costs one MKCOL).
const MAX_KNOWN_FOLDERS = 10_000;

/**
 * Creates folders on demand with MKCOL, remembering the ones known to exist so that a put into a
 * known folder costs no extra request. Folders are made bottom-up: a MKCOL whose parent is missing
 * (409, or 404 on some servers) makes the parent first, so a deep path whose ancestors exist costs one
 * request. Concurrent requests for one folder share a single MKCOL.
 *
 * Server answers (issue 6): MKCOL on an existing folder is 405 (Apache, webdav-server) or 201 (rclone
 * serve); Apache answers a MKCOL race on a new folder with 403 "File exists", so a 403 is checked with
 * a PROPFIND before it counts as a refusal.
 */
export class FolderMaker {
  private readonly known = new Set<string>();
  private readonly inflight = new Map<string, Promise<void>>();

  constructor(private readonly api: WebDavApi) {}

  private static id(path: RemotePath): string {
    return path.join("/");
  }

  isKnown(path: RemotePath): boolean {
    return this.known.has(FolderMaker.id(path));
  }

  markKnown(path: RemotePath): void {
    if (this.known.size >= MAX_KNOWN_FOLDERS) this.known.clear();
    this.known.add(FolderMaker.id(path));
  }

  /** Forgets a folder (and everything below it) after a request showed it is gone. */
  forget(path: RemotePath): void {
    const id = FolderMaker.id(path);
    for (const known of this.known) if (known === id || known.startsWith(`${id}/`)) this.known.delete(known);
  }

  /**
   * Makes sure the folder `path` exists, creating it and its missing parents. Parents shorter than
   * `floor` segments are never created (the server's endpoint, or the storage root for puts).
   */
  ensure(call: CallContext, path: RemotePath, floor: number): Promise<void> {
    if (path.length <= floor || this.isKnown(path)) return Promise.resolve();
    const id = FolderMaker.id(path);
    let pending = this.inflight.get(id);
    if (!pending) {
      pending = this.make(call, path, floor).finally(() => this.inflight.delete(id));
      this.inflight.set(id, pending);
    }
    return pending;
  }

  private async make(call: CallContext, path: RemotePath, floor: number): Promise<void> {
    let status = await this.api.mkcol(call, path);
    if ((status === 409 || status === 404) && path.length - 1 > floor) {
      await this.ensure(call, path.slice(0, -1), floor);
      status = await this.api.mkcol(call, path);
    }
    // 405: something has this name. If it is an object, the request that needed the folder fails
    // with its own Conflict, which names the key.
    if (status === 201 || status === 405 || (status === 403 && (await this.isFolder(call, path)))) {
      this.markKnown(path);
      return;
    }
    throw new StorageError({
      provider: "webdav",
      operation: call.operation,
      key: call.key,
      code: status === 403 ? "PermissionDenied" : "Conflict",
      status,
      message:
        status === 403
          ? `MKCOL ${pathFromSegments(path, true)} returned 403 Forbidden: the server refused to create the folder`
          : `MKCOL ${pathFromSegments(path, true)} returned ${status}: the folder could not be created; a parent is missing or is an object`,
      hint:
        status === 403
          ? "check that the account may create folders here"
          : "choose a key whose parents are folders",
    });
  }

  private async isFolder(call: CallContext, path: RemotePath): Promise<boolean> {
    const found = await this.api.propfind(call, path, 0, true);
    return found?.[0]?.collection === true;
  }
}
