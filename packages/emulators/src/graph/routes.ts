import type { ConflictBehavior } from "./drive.js";
import { GraphError } from "./errors.js";

/** What a Graph drive URL names (reference §A.1): a base item, a relative path, and an action. */
export interface ItemAddress {
  /** `root`, or the id after `items/`. */
  base: { root: true } | { id: string };
  /** The decoded names between the colons, relative to the base. */
  segments: string[];
  action: "" | "children" | "content" | "createUploadSession";
}

/** What a URL below `/v1.0/` addresses: the drive itself, or an item in it. */
export type GraphTarget = { drive: string } | { drive: string; item: ItemAddress };

const ACTIONS = new Set(["", "children", "content", "createUploadSession"]);

/**
 * Parses the path of a Graph request, still percent-encoded as sent. The drive is `me/drive` or
 * `drives/{id}`; items are `root` or `items/{id}`, optionally followed by `:/relative/path:` (the
 * trailing colon may be left out when nothing follows), then `/children`, `/content` or
 * `/createUploadSession`. Each path segment is decoded once, separately, so an encoded `/` stays
 * inside its name (and is refused there as a reserved character).
 */
export function parseGraphPath(pathname: string): GraphTarget {
  const rest = pathname.replace(/^\/v1\.0\//, "");
  if (rest === pathname) throw new GraphError(400, "BadRequest", "Invalid version: use /v1.0.");
  const drive = /^(me\/drive|drives\/([^/:]+))(\/.*)?$/.exec(rest);
  if (!drive) throw new GraphError(400, "BadRequest", `Resource not found for the segment '${rest}'.`);
  const driveRef = drive[2] === undefined ? "me" : decodeSegment(drive[2]);
  const tail = drive[3] ?? "";
  if (tail === "" || tail === "/") return { drive: driveRef };

  const item = /^\/(root|items\/([^/:]+))(.*)$/.exec(tail);
  if (!item) throw new GraphError(400, "BadRequest", `Resource not found for the segment '${tail}'.`);
  const base = item[2] === undefined ? { root: true as const } : { id: decodeSegment(item[2]) };
  let after = item[3]!;
  let segments: string[] = [];
  if (after.startsWith(":")) {
    const close = after.indexOf(":", 1);
    const path = close < 0 ? after.slice(1) : after.slice(1, close);
    after = close < 0 ? "" : after.slice(close + 1);
    if (path !== "" && !path.startsWith("/")) {
      // Duplicati issue #3460: `root:Dokumente/…` without the slash is a 400.
      throw new GraphError(400, "invalidRequest", "A path after ':' must start with '/'.");
    }
    segments = path
      .split("/")
      .slice(1)
      .filter((segment, index, all) => segment !== "" || index < all.length - 1)
      .map(decodeSegment);
    if (segments.some((segment) => segment === "")) {
      throw new GraphError(400, "invalidRequest", "The path has an empty segment.");
    }
  }
  const action = after.replace(/^\//, "").replace(/\/$/, "");
  if (!ACTIONS.has(action)) {
    throw new GraphError(400, "BadRequest", `Resource not found for the segment '${action}'.`);
  }
  return { drive: driveRef, item: { base, segments, action: action as ItemAddress["action"] } };
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new GraphError(400, "invalidRequest", "The path has a malformed percent-encoding.");
  }
}

/**
 * The conflict behaviour a request asks for: `@microsoft.graph.conflictBehavior` or the legacy
 * `@name.conflictBehavior` (which rclone sends), in the query string or in a body object
 * (reference §A.4, §A.8).
 */
export function conflictBehaviorOf(
  query: URLSearchParams,
  body: Record<string, unknown> | undefined,
  fallback: ConflictBehavior,
): ConflictBehavior {
  const names = ["@microsoft.graph.conflictBehavior", "@name.conflictBehavior"];
  const given = [
    ...names.map((name) => query.get(name) ?? undefined),
    ...names.map((name) => body?.[name]),
  ].find((value) => value !== undefined);
  if (given === undefined) return fallback;
  if (given === "fail" || given === "replace" || given === "rename") return given;
  throw new GraphError(400, "invalidRequest", `Invalid conflictBehavior '${String(given)}'.`);
}

/** A single `Range: bytes=…` request against `size` bytes; undefined when absent or not understood. */
export function parseRange(
  header: string | undefined,
  size: number,
): { start: number; end: number } | "unsatisfiable" | undefined {
  if (header === undefined) return undefined;
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

/** `Content-Range: bytes a-b/total` of an upload fragment (reference §A.5). */
export function parseContentRange(
  header: string | undefined,
): { start: number; end: number; total: number } | undefined {
  const match = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(header?.trim() ?? "");
  if (!match) return undefined;
  const [start, end, total] = [Number(match[1]), Number(match[2]), Number(match[3])];
  return end < start || end >= total ? undefined : { start, end, total };
}
