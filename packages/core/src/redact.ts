/**
 * Redaction: one place that knows what a secret looks like, used by errors, logs, diagnostics events
 * and `Storage.location`.
 *
 * Two mechanisms work together:
 * - patterns: bearer tokens, `Authorization`/`X-AuthID`/`X-API-Key` headers, URL passwords, and query
 *   or JSON fields whose name marks a secret (`token`, `password`, `authid`, `client-secret`, …);
 * - registered values: every auth strategy calls {@link registerSecret} with the secrets it holds, so a
 *   secret is removed wherever it appears, even inside a server's error text.
 */

export const REDACTED = "[redacted]";

const secretNames = [
  "token",
  "access_token",
  "access-token",
  "accesstoken",
  "refresh_token",
  "refresh-token",
  "refreshtoken",
  "id_token",
  "client_secret",
  "client-secret",
  "clientsecret",
  "secret",
  "secret-access-key",
  "secret_access_key",
  "secretaccesskey",
  "session-token",
  "sessiontoken",
  "x-amz-security-token",
  "x-amz-signature",
  "x-amz-credential",
  "password",
  "passwd",
  "pass",
  "authid",
  "auth-id",
  "x-authid",
  "apikey",
  "api-key",
  "api_key",
  "x-api-key",
  "authorization",
  "proxy-authorization",
  "cookie",
  "set-cookie",
  "code_verifier",
  "signature",
  "tempauth",
];

// Names that are secrets in URLs and forms only: `code` is an OAuth authorization code there, but an
// error code in a JSON log line.
const querySecretNames = ["code", "sig"];

const secretNameSet = new Set(secretNames);
const querySecretNameSet = new Set([...secretNames, ...querySecretNames]);

/** Whether a field, header or parameter with this name holds a secret. */
export function isSecretName(name: string): boolean {
  return secretNameSet.has(name.toLowerCase());
}

/** Whether a URL query or form parameter with this name holds a secret. */
export function isSecretParam(name: string): boolean {
  return querySecretNameSet.has(name.toLowerCase());
}

const registered = new Set<string>();
const MAX_REGISTERED = 4096;
// Shorter values would match ordinary words and mangle messages; secrets worth the name are longer.
const MIN_REGISTERED_LENGTH = 6;

/**
 * Remembers a secret value so that {@link redact} removes it from any text. Auth strategies call this
 * for every token, password and AuthID they hold. The set is bounded (oldest dropped first).
 */
export function registerSecret(value: string | undefined | null): void {
  if (!value || value.length < MIN_REGISTERED_LENGTH) return;
  if (registered.has(value)) return;
  if (registered.size >= MAX_REGISTERED) {
    const oldest = registered.values().next().value;
    if (oldest !== undefined) registered.delete(oldest);
  }
  registered.add(value);
  // Percent-encoded and decoded forms appear in URLs and bodies.
  const encoded = encodeURIComponent(value);
  if (encoded !== value && encoded.length >= MIN_REGISTERED_LENGTH) registered.add(encoded);
}

const toPattern = (names: string[]) => names.map((n) => n.replace(/[-_]/g, "[-_]?")).join("|");
const namesPattern = toPattern(secretNames);
const queryNamesPattern = toPattern([...secretNames, ...querySecretNames]);

const patterns: Array<[RegExp, string | ((...m: string[]) => string)]> = [
  // Authorization: Bearer xyz / Basic xyz (also inside header dumps)
  // (the credential must look like one — 8+ token characters with a digit, a symbol or a capital
  // after a small letter — so that prose such as "basic credentials" or "bearer token" is left alone)
  [
    /\b(Bearer|Basic|Digest|Negotiate|AWS4-HMAC-SHA256)\s+(?=[\w.~+/=-]*(?:[\d.~+/=-]|[a-z][\w.~+/=-]*[A-Z]))[\w.~+/=-]{8,}/g,
    `$1 ${REDACTED}`,
  ],
  // header-style "name: value" lines
  [
    /\b(x-authid|x-api-key|authorization|proxy-authorization|cookie|set-cookie)(\s*[:=]\s*)([^\r\n]+)/gi,
    `$1$2${REDACTED}`,
  ],
  // JSON-style "name": "value"
  [new RegExp(`("(?:${namesPattern})"\\s*:\\s*)"(?:[^"\\\\]|\\\\.)*"`, "gi"), `$1"${REDACTED}"`],
  // query/form style name=value
  [new RegExp(`([?&;\\s](?:${queryNamesPattern})=)[^&#\\s"']+`, "gi"), `$1${REDACTED}`],
  // userinfo in URLs: scheme://user:password@host
  [/\b([a-z][a-z0-9+.-]*:\/\/[^/\s:@]*):[^@\s/]+@/gi, `$1:${REDACTED}@`],
  // an AuthID v1 (32 hex : base64url secret) wherever it appears
  [/\b([0-9a-f]{32}):[A-Za-z0-9_-]{20,}/g, `$1:${REDACTED}`],
  // an AuthID v2 (v2:service:refresh-token)
  [/\bv2:([a-z0-9_-]+):[^\s"'&]+/gi, `v2:$1:${REDACTED}`],
];

function redactString(text: string): string {
  let out = text;
  for (const secret of registered) {
    if (out.includes(secret)) out = out.split(secret).join(REDACTED);
  }
  for (const [pattern, replacement] of patterns) {
    out = out.replace(pattern, replacement as string);
  }
  return out;
}

/**
 * Removes secrets from a string, or from a value for logging: objects and arrays are copied with
 * secret-named fields replaced by `"[redacted]"` and every string redacted; `URL`s and `Headers` are
 * rendered redacted. Cycles and depth are bounded.
 *
 * @example
 * redact("GET /refresh?authid=abc:def") // "GET /refresh?authid=[redacted]"
 */
export function redact(value: string): string;
export function redact(value: unknown): unknown;
export function redact(value: unknown): unknown {
  return redactValue(value, 0, new WeakSet());
}

function redactValue(value: unknown, depth: number, seen: WeakSet<object>): unknown {
  if (typeof value === "string") return redactString(value);
  if (value === null || typeof value !== "object") return value;
  if (value instanceof URL) return redactUrl(value);
  if (value instanceof Date) return value;
  if (typeof Headers !== "undefined" && value instanceof Headers) {
    const out: Record<string, string> = {};
    value.forEach((v, k) => {
      out[k] = isSecretName(k) ? REDACTED : redactString(v);
    });
    return out;
  }
  if (value instanceof Error) {
    return {
      name: value.name,
      message: redactString(value.message),
      code: (value as { code?: unknown }).code,
    };
  }
  if (ArrayBuffer.isView(value)) return `[${value.byteLength} bytes]`;
  if (seen.has(value)) return "[circular]";
  if (depth > 8) return "[deep]";
  seen.add(value);
  if (Array.isArray(value)) return value.map((item) => redactValue(item, depth + 1, seen));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] =
      isSecretName(k) && v !== undefined && v !== null && v !== ""
        ? REDACTED
        : redactValue(v, depth + 1, seen);
  }
  return out;
}

/** A URL as a string with its password and every secret-named query parameter replaced. */
export function redactUrl(url: URL | string): string {
  let parsed: URL;
  try {
    parsed = typeof url === "string" ? new URL(url) : new URL(url.href);
  } catch {
    return redactString(String(url));
  }
  if (parsed.password) parsed.password = REDACTED;
  for (const name of [...parsed.searchParams.keys()]) {
    if (isSecretParam(name)) parsed.searchParams.set(name, REDACTED);
  }
  // URLSearchParams encodes the brackets; keep the marker readable.
  return redactString(parsed.href.replaceAll(encodeURIComponent(REDACTED), REDACTED));
}
