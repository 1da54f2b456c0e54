import { randomUUID } from "node:crypto";
import { StorageError } from "@stowage/core";

/**
 * Temporary upload names start with U+0001, a character no key may contain (core's `validateKey`
 * refuses control characters), so a temporary name can never collide with a key, and a listing can
 * skip it without ever hiding a real object. Apache, rclone serve and webdav-server all store it.
 */
const TEMP_PREFIX = "\u0001stowage-";

/** A fresh temporary name for an upload in progress; short, so that it fits beside a 255-byte name. */
export function tempName(): string {
  return `${TEMP_PREFIX}${randomUUID().replaceAll("-", "").slice(0, 16)}`;
}

export function isTempName(name: string): boolean {
  return name.startsWith(TEMP_PREFIX);
}

/** Converts one key segment to the name stored on the server, and back. */
export interface NameCodec {
  encode(segment: string): string;
  decode(name: string): string;
}

// rclone's escape (lib/encoder): a look-alike that was already in the name is stored behind U+201B,
// so that decoding can tell it from one that stands for a reserved character.
const ESCAPE = "\u201b";
const FULL_WIDTH_OFFSET = 0xfee0;

const identity: NameCodec = { encode: (segment) => segment, decode: (name) => name };

/**
 * The codec for a server that cannot store some characters in a name (webdav-server splits names
 * on `\`): each reserved character is stored as its Unicode full-width look-alike (`\` as `＼`), a
 * look-alike already present is stored behind U+201B, and a U+201B itself is doubled. Every key
 * round-trips exactly. With no reserved characters, names are stored as they are.
 *
 * @example
 * createNameCodec("\\").encode("back\\slash") // "back＼slash"
 */
export function createNameCodec(reserved: string): NameCodec {
  if (reserved === "") return identity;
  for (const char of reserved) {
    const code = char.charCodeAt(0);
    if (char.length !== 1 || code < 0x21 || code > 0x7e || char === "/") {
      throw new StorageError({
        provider: "webdav",
        operation: "open",
        code: "InvalidConfig",
        message: `reservedCharacters may hold printable ASCII characters other than '/', not ${JSON.stringify(char)}`,
        hint: "list the characters the server cannot store in a name, e.g. '\\\\' for webdav-server",
      });
    }
  }
  const toLookAlike = new Map(
    [...reserved].map((c) => [c, String.fromCharCode(c.charCodeAt(0) + FULL_WIDTH_OFFSET)]),
  );
  const fromLookAlike = new Map([...toLookAlike].map(([c, look]) => [look, c]));
  return {
    encode(segment) {
      let out = "";
      for (const char of segment) {
        const look = toLookAlike.get(char);
        if (look !== undefined) out += look;
        else if (char === ESCAPE || fromLookAlike.has(char)) out += ESCAPE + char;
        else out += char;
      }
      return out;
    },
    decode(name) {
      let out = "";
      const chars = [...name];
      for (let i = 0; i < chars.length; i++) {
        const char = chars[i]!;
        const next = chars[i + 1];
        if (char === ESCAPE && next !== undefined && (next === ESCAPE || fromLookAlike.has(next))) {
          out += next;
          i++;
        } else {
          out += fromLookAlike.get(char) ?? char;
        }
      }
      return out;
    },
  };
}

/**
 * Percent-encodes one path segment: everything but RFC 3986's unreserved characters, so that `%`,
 * `#`, `?`, `;` and friends reach the server as data, never as syntax.
 */
export function encodeSegment(name: string): string {
  return encodeURIComponent(name).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

/** A server path (`/dav/a%20b/`) from decoded segments; collections end with `/`. */
export function pathFromSegments(segments: readonly string[], collection: boolean): string {
  const path = `/${segments.map(encodeSegment).join("/")}`;
  return collection && segments.length > 0 ? `${path}/` : path;
}

// A run of escapes is decoded as one, so that multi-byte UTF-8 sequences come out whole; a run that is
// not valid UTF-8, and a '%' that starts no escape, are left as they are.
function decodeSegment(segment: string): string {
  return segment.replace(/(?:%[0-9A-Fa-f]{2})+/g, (run) => {
    try {
      return decodeURIComponent(run);
    } catch {
      return run;
    }
  });
}

/**
 * The decoded path segments of an `href` from a multistatus, whatever its form: an absolute URL
 * (webdav-server) or a path (Apache, rclone), percent-encoded in upper or lower case or not at all
 * (webdav-server leaves `#` and `?` raw, so nothing after them is taken for a query or fragment).
 */
export function hrefSegments(href: string): string[] {
  const path = href.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/]*/i, "");
  return path
    .split("/")
    .filter((segment) => segment !== "")
    .map(decodeSegment);
}

/** The decoded path segments of a URL's path. */
export function urlSegments(url: URL): string[] {
  return hrefSegments(url.pathname);
}
