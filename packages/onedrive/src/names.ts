/**
 * A reversible codec between key segments and OneDrive item names, so that every valid key
 * round-trips exactly although OneDrive forbids some characters and names (reference §A.1).
 *
 * The approach is rclone's: a forbidden character becomes its Unicode full-width look-alike
 * (`:` → `：`), a leading or trailing space becomes `␠`, a trailing `.` becomes `．`, and a reserved
 * name (`CON`, `.lock`, `desktop.ini`, …) gets its first character replaced by its look-alike, and the
 * `_` that starts a `_vti_` (refused anywhere in a name) becomes `＿`. To keep
 * the mapping reversible, every character the encoder may produce (the full-width block U+FF01–U+FF5E,
 * `␠`) that is already present in a key, and the escape `‛` itself, is written with a `‛` before it.
 * Decoding turns each unescaped look-alike back into its ASCII character and drops the escapes.
 */

const ESCAPE = "\u201b"; // ‛
const SPACE_SYMBOL = "\u2420"; // ␠
const FULL_WIDTH_OFFSET = 0xfee0; // U+FF01 − U+0021

const forbidden = new Set(['"', "*", ":", "<", ">", "?", "\\", "|"]);
/** OneDrive for Business also refuses these. */
const forbiddenBusiness = new Set(["#", "%"]);

const reservedNames = new Set([
  ".lock",
  "desktop.ini",
  "con",
  "prn",
  "aux",
  "nul",
  ...Array.from({ length: 10 }, (_, i) => `com${i}`),
  ...Array.from({ length: 10 }, (_, i) => `lpt${i}`),
]);

function toFullWidth(char: string): string {
  return String.fromCharCode(char.charCodeAt(0) + FULL_WIDTH_OFFSET);
}

function isFullWidth(char: string): boolean {
  const code = char.charCodeAt(0);
  return code >= 0xff01 && code <= 0xff5e;
}

/** Characters the encoder produces, which therefore need an escape when a key already holds them. */
function isActive(char: string): boolean {
  return char === ESCAPE || char === SPACE_SYMBOL || isFullWidth(char);
}

/** Names refused whole, which a changed first character makes harmless. */
function isReserved(name: string): boolean {
  const lower = name.toLowerCase();
  return reservedNames.has(lower) || lower.startsWith("~$");
}

export interface NameCodecOptions {
  /** OneDrive for Business and SharePoint: also encode `#`, `%`, and a leading `~`. */
  business?: boolean;
}

/** Encodes one key segment as a OneDrive item name. */
export function encodeName(segment: string, options: NameCodecOptions = {}): string {
  const chars = Array.from(segment);
  let out = "";
  chars.forEach((char, index) => {
    const edge = index === 0 || index === chars.length - 1;
    if (isActive(char)) out += ESCAPE + char;
    else if (forbidden.has(char) || (options.business && forbiddenBusiness.has(char)))
      out += toFullWidth(char);
    else if (char === " " && edge) out += SPACE_SYMBOL;
    else if (char === "." && index === chars.length - 1) out += toFullWidth(char);
    else if (char === "~" && index === 0 && options.business) out += toFullWidth(char);
    else out += char;
  });
  // A reserved name is made harmless by its first character: it must not be an escape already.
  if (isReserved(segment) && out.length > 0 && !isActive(out[0]!)) out = toFullWidth(out[0]!) + out.slice(1);
  // "_vti_" is refused anywhere in a name, so a changed first character is not enough: each
  // occurrence loses its first underscore instead.
  return out.replace(/_(?=vti_)/gi, toFullWidth("_"));
}

/** Decodes a OneDrive item name back into the key segment it encodes. */
export function decodeName(name: string): string {
  const chars = Array.from(name);
  let out = "";
  for (let i = 0; i < chars.length; i++) {
    const char = chars[i]!;
    if (char === ESCAPE && i + 1 < chars.length) {
      out += chars[++i];
    } else if (char === SPACE_SYMBOL) {
      out += " ";
    } else if (isFullWidth(char)) {
      out += String.fromCharCode(char.charCodeAt(0) - FULL_WIDTH_OFFSET);
    } else {
      out += char;
    }
  }
  return out;
}

/** Encodes every segment of a key. */
export function encodePath(key: string, options: NameCodecOptions = {}): string {
  return key === ""
    ? ""
    : key
        .split("/")
        .map((segment) => encodeName(segment, options))
        .join("/");
}

/** Decodes every segment of an item path. */
export function decodePath(path: string): string {
  return path === "" ? "" : path.split("/").map(decodeName).join("/");
}

/**
 * Why a folder name given by a user (a segment of the root) cannot exist on OneDrive, or undefined.
 * The root names folders the user sees in OneDrive, so it is used as it is, never encoded.
 */
export function unusableFolderName(name: string, options: NameCodecOptions = {}): string | undefined {
  const refused = [...name].find(
    (char) => forbidden.has(char) || (options.business && forbiddenBusiness.has(char)),
  );
  if (refused !== undefined) return `'${refused}' is not allowed in OneDrive names`;
  if (name.startsWith(" ") || name.endsWith(" ")) return "OneDrive names cannot start or end with a space";
  if (name.endsWith(".")) return "OneDrive folder names cannot end with '.'";
  if (options.business && name.startsWith("~")) return "OneDrive for Business names cannot start with '~'";
  if (isReserved(name) || name.toLowerCase().includes("_vti_")) return "OneDrive reserves this name";
  return undefined;
}
