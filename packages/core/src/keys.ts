import { StorageError } from "./errors.js";

export const MAX_KEY_BYTES = 1024;
export const MAX_SEGMENT_BYTES = 255;

const encoder = new TextEncoder();

function utf8Length(text: string): number {
  return encoder.encode(text).byteLength;
}

/** The first control character (U+0000–U+001F, U+007F) or lone surrogate in `text`, or -1. */
function badCharIndex(text: string): number {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c <= 0x1f || c === 0x7f) return i;
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        i++;
        continue;
      }
      return i;
    }
    if (c >= 0xdc00 && c <= 0xdfff) return i;
  }
  return -1;
}

function describeChar(text: string, index: number): string {
  const code = text.charCodeAt(index);
  return `U+${code.toString(16).toUpperCase().padStart(4, "0")}`;
}

export interface KeyContext {
  provider?: string;
  operation?: string;
}

function invalid(key: string, message: string, hint: string, context: KeyContext): StorageError {
  return new StorageError({ code: "InvalidKey", message, hint, key, ...context });
}

/**
 * Checks that `key` is a valid object key and returns it unchanged. Keys are strict: `/`-separated
 * segments, each non-empty, not `.` or `..`, with no control character and no lone surrogate; a
 * segment is at most 255 UTF-8 bytes and the key at most 1,024. Keys are case-sensitive and
 * Unicode-exact (never normalised).
 *
 * @throws StorageError `InvalidKey` with a hint saying what to change.
 * @example
 * validateKey("photos/2024/a.jpg"); // ok
 * validateKey("/a");                // InvalidKey: remove the leading "/"
 */
export function validateKey(key: unknown, context: KeyContext = {}): string {
  if (typeof key !== "string") {
    throw invalid(
      String(key),
      `a key must be a string, not ${typeof key}`,
      "pass the key as a string",
      context,
    );
  }
  if (key === "") throw invalid(key, "the key is empty", "name the object, e.g. 'folder/file.bin'", context);
  if (key.startsWith("/")) {
    throw invalid(
      key,
      "the key starts with '/'",
      `keys are relative to the root: use '${key.replace(/^\/+/, "")}'`,
      context,
    );
  }
  if (key.endsWith("/")) {
    throw invalid(
      key,
      "the key ends with '/'",
      `a key names an object, not a folder: use '${key.replace(/\/+$/, "")}'`,
      context,
    );
  }
  const bad = badCharIndex(key);
  if (bad >= 0) {
    const what =
      key.charCodeAt(bad) >= 0xd800 && key.charCodeAt(bad) <= 0xdfff
        ? "a lone surrogate"
        : "a control character";
    throw invalid(
      key,
      `the key contains ${what} (${describeChar(key, bad)}) at index ${bad}`,
      "remove it from the key",
      context,
    );
  }
  const bytes = utf8Length(key);
  if (bytes > MAX_KEY_BYTES) {
    throw invalid(
      key,
      `the key is ${bytes} UTF-8 bytes long; the limit is ${MAX_KEY_BYTES}`,
      "use a shorter key",
      context,
    );
  }
  for (const segment of key.split("/")) {
    if (segment === "") {
      throw invalid(
        key,
        "the key has an empty segment ('//')",
        `use single slashes: '${key.replace(/\/{2,}/g, "/")}'`,
        context,
      );
    }
    if (segment === "." || segment === "..") {
      throw invalid(
        key,
        `the key has a '${segment}' segment`,
        "keys are literal paths: remove '.' and '..' segments",
        context,
      );
    }
    const segmentBytes = utf8Length(segment);
    if (segmentBytes > MAX_SEGMENT_BYTES) {
      throw invalid(
        key,
        `a segment is ${segmentBytes} UTF-8 bytes long; the limit is ${MAX_SEGMENT_BYTES}`,
        "shorten the segment or split it with '/'",
        context,
      );
    }
  }
  return key;
}

/**
 * Checks a folder argument of `list`: `""` (the root) or a valid key; a trailing `/` is tolerated
 * since folders are often written that way.
 */
export function validateFolder(folder: unknown, context: KeyContext = {}): string {
  if (folder === undefined || folder === "") return "";
  if (typeof folder === "string" && folder.length > 1 && folder.endsWith("/") && !folder.endsWith("//")) {
    return validateKey(folder.slice(0, -1), context);
  }
  return validateKey(folder, context);
}

/**
 * Normalises a root path, leniently: leading, trailing and doubled slashes are dropped, so
 * `"/Backups//pc1/"` is `"Backups/pc1"`. `.` and `..` segments and control characters are refused
 * with `InvalidConfig`, since a root that climbs out of itself is never what the user meant.
 */
export function normalizeRoot(root: string | undefined, context: KeyContext = {}): string {
  if (root === undefined) return "";
  const segments = root.split("/").filter((s) => s !== "");
  for (const segment of segments) {
    if (segment === "." || segment === "..") {
      throw new StorageError({
        ...context,
        code: "InvalidConfig",
        message: `the root '${root}' has a '${segment}' segment`,
        hint: "give the root as a plain path such as 'Backups/pc1'",
      });
    }
    const bad = badCharIndex(segment);
    if (bad >= 0) {
      throw new StorageError({
        ...context,
        code: "InvalidConfig",
        message: `the root contains a control character or lone surrogate (${describeChar(segment, bad)})`,
        hint: "remove it from the root path",
      });
    }
  }
  return segments.join("/");
}

/** Joins path parts with `/`, skipping empty ones. */
export function joinKey(...parts: string[]): string {
  return parts.filter((p) => p !== "").join("/");
}

/** The folder that holds `key` (`""` for a top-level key). */
export function parentOf(key: string): string {
  const i = key.lastIndexOf("/");
  return i < 0 ? "" : key.slice(0, i);
}

/** The last segment of `key`. */
export function baseName(key: string): string {
  return key.slice(key.lastIndexOf("/") + 1);
}
