import {
  createCipheriv,
  createDecipheriv,
  createHash,
  hkdfSync,
  randomBytes,
  timingSafeEqual,
} from "node:crypto";

/**
 * The handler's cryptography, in one place (docs/security-model.md describes it for users).
 *
 * An AuthID v1 is `KEYID:SECRET`: KEYID is 16 random bytes as hex (the record's name in the store),
 * SECRET is 32 random bytes as base64url. Only the user holds SECRET; each record is sealed with
 * AES-256-GCM under HKDF-SHA256(SECRET, salt = KEYID, info = "stowage-handler/v1"), so the store
 * alone reveals no token.
 */

const VERSION = 1;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const KEY_INFO = "stowage-handler/v1";

const KEY_ID = /^[0-9a-f]{32}$/;
const SECRET = /^[A-Za-z0-9_-]{43}$/;

/** A fresh AuthID v1, from the CSPRNG. */
export function newAuthId(): { authId: string; keyId: string; secret: string } {
  const keyId = randomBytes(16).toString("hex");
  const secret = randomBytes(32).toString("base64url");
  return { authId: `${keyId}:${secret}`, keyId, secret };
}

/** What a presented AuthID turned out to be. */
export type PresentedAuthId =
  | { kind: "v1"; keyId: string; secret: string }
  | { kind: "v2"; service: string; refreshToken: string }
  | { kind: "invalid"; why: string };

/**
 * Classifies an AuthID as a client sent it (header, query or form): surrounding whitespace is
 * trimmed and a percent-encoded one (`…%3A…`, duplicati#1736) is decoded once.
 */
export function classifyAuthId(raw: string): PresentedAuthId {
  let text = raw.trim();
  if (!text.includes(":") && /%3a/i.test(text)) {
    try {
      text = decodeURIComponent(text);
    } catch {
      return { kind: "invalid", why: "it has a malformed percent-encoding" };
    }
  }
  const colon = text.indexOf(":");
  if (colon < 0) return { kind: "invalid", why: "it has no ':' (it may have been cut when copied)" };
  if (colon === 0) return { kind: "invalid", why: "it starts with ':'" };
  const head = text.slice(0, colon);
  const rest = text.slice(colon + 1);
  if (head === "v2") {
    const second = rest.indexOf(":");
    if (second <= 0 || second === rest.length - 1) {
      return { kind: "invalid", why: "a v2 AuthID looks like v2:SERVICE:REFRESH_TOKEN" };
    }
    return { kind: "v2", service: rest.slice(0, second).toLowerCase(), refreshToken: rest.slice(second + 1) };
  }
  if (!KEY_ID.test(head) || !SECRET.test(rest)) {
    return {
      kind: "invalid",
      why: "this handler's AuthIDs are 32 hex digits, ':' and 43 letters, digits, '-' or '_' (it may have been cut when copied, or come from another handler)",
    };
  }
  return { kind: "v1", keyId: head, secret: rest };
}

/** The key that seals one record; derive it once per request. */
export function recordKey(keyId: string, secret: string): Buffer {
  return derive(Buffer.from(secret, "base64url"), Buffer.from(keyId, "hex"), KEY_INFO);
}

/**
 * A key from a value only the browser or the client holds (a login `state`, a fetch token), so that
 * what the store keeps under that value's hash is unreadable without it.
 */
export function ephemeralKey(value: string, purpose: "state" | "fetch"): Buffer {
  return derive(Buffer.from(value, "utf8"), Buffer.alloc(0), `${KEY_INFO} ${purpose}`);
}

function derive(ikm: Buffer, salt: Buffer, info: string): Buffer {
  return Buffer.from(hkdfSync("sha256", ikm, salt, info, 32));
}

/**
 * Additional authenticated data for a record field: the KEYID and provider (so a sealed value cannot
 * be moved to another record or provider) and the field (so a cached access token cannot be swapped
 * in as the refresh token).
 */
export function recordAad(keyId: string, provider: string, field: "grant" | "access"): Buffer {
  return Buffer.from(`${keyId}:${provider}:${field}`, "utf8");
}

/** AES-256-GCM: `version(1) ‖ nonce(12) ‖ ciphertext ‖ tag(16)`. */
export function seal(key: Buffer, aad: Buffer, plaintext: string): Buffer {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv("aes-256-gcm", key, nonce);
  cipher.setAAD(aad);
  const body = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
  return Buffer.concat([Buffer.of(VERSION), nonce, body, cipher.getAuthTag()]);
}

/**
 * Opens a sealed value; `undefined` when the key is wrong or the value was altered (GCM checks the
 * tag in constant time, so a wrong password and a tampered record look the same, at the same speed).
 */
export function open(key: Buffer, aad: Buffer, box: Uint8Array): string | undefined {
  const bytes = Buffer.from(box.buffer, box.byteOffset, box.byteLength);
  if (bytes.length < 1 + NONCE_BYTES + TAG_BYTES || bytes[0] !== VERSION) return undefined;
  const nonce = bytes.subarray(1, 1 + NONCE_BYTES);
  const tag = bytes.subarray(bytes.length - TAG_BYTES);
  const body = bytes.subarray(1 + NONCE_BYTES, bytes.length - TAG_BYTES);
  try {
    const decipher = createDecipheriv("aes-256-gcm", key, nonce);
    decipher.setAAD(aad);
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(body), decipher.final()]).toString("utf8");
  } catch {
    return undefined;
  }
}

/** SHA-256 as hex: how states, fetch tokens and v2 refresh tokens are named without being stored. */
export function sha256Hex(value: string): string {
  return createHash("sha256").update(value, "utf8").digest("hex");
}

/** Compares two secrets in constant time (their hashes, so lengths do not leak either). */
export function sameSecret(given: string, expected: string): boolean {
  const a = createHash("sha256").update(given, "utf8").digest();
  const b = createHash("sha256").update(expected, "utf8").digest();
  return timingSafeEqual(a, b);
}

/** A random URL-safe token: login `state` values and PKCE verifiers (RFC 7636 §4.1: 43-128 chars). */
export function randomToken(bytes = 32): string {
  return randomBytes(bytes).toString("base64url");
}

/** The PKCE S256 challenge of a verifier (RFC 7636 §4.2). */
export function pkceChallenge(verifier: string): string {
  return createHash("sha256").update(verifier, "ascii").digest("base64url");
}
