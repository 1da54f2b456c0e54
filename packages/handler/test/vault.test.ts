import { createDecipheriv, hkdfSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { newRecord, RecordKey } from "../src/records.js";
import {
  classifyAuthId,
  newAuthId,
  open,
  pkceChallenge,
  recordAad,
  recordKey,
  sameSecret,
  seal,
} from "../src/vault.js";

describe("AuthID v1", () => {
  it("is a 16-byte hex KEYID and a 32-byte base64url SECRET, fresh each time", () => {
    const ids = Array.from({ length: 100 }, () => newAuthId());
    for (const { authId, keyId, secret } of ids) {
      expect(keyId).toMatch(/^[0-9a-f]{32}$/);
      expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(Buffer.from(secret, "base64url")).toHaveLength(32);
      expect(authId).toBe(`${keyId}:${secret}`);
    }
    expect(new Set(ids.map((id) => id.keyId)).size).toBe(100);
    expect(new Set(ids.map((id) => id.secret)).size).toBe(100);
  });

  it("derives its key with HKDF-SHA256(SECRET, salt = KEYID, info = stowage-handler/v1)", () => {
    const { keyId, secret } = newAuthId();
    const expected = Buffer.from(
      hkdfSync(
        "sha256",
        Buffer.from(secret, "base64url"),
        Buffer.from(keyId, "hex"),
        "stowage-handler/v1",
        32,
      ),
    );
    expect(recordKey(keyId, secret).equals(expected)).toBe(true);
  });
});

describe("classifyAuthId", () => {
  const { authId, keyId, secret } = newAuthId();

  it("reads v1 and v2 AuthIDs, trimmed, percent-decoded once", () => {
    expect(classifyAuthId(` ${authId}\n`)).toEqual({ kind: "v1", keyId, secret });
    expect(classifyAuthId(authId.replace(":", "%3A"))).toEqual({ kind: "v1", keyId, secret });
    expect(classifyAuthId("v2:Emu:rt:with:colons")).toEqual({
      kind: "v2",
      service: "emu",
      refreshToken: "rt:with:colons",
    });
  });

  it.each([
    ["no colon", keyId, "it has no ':' (it may have been cut when copied)"],
    ["a leading colon", `:${secret}`, "it starts with ':'"],
    ["a short secret", `${keyId}:${secret.slice(0, 20)}`, /^this handler's AuthIDs are 32 hex digits/],
    [
      "a Duplicati AuthID",
      "0f3a4b5c6d7e8f90a1b2c3d4e5f60718:aB3.xY-9_k!zQ2.wE5_rT8",
      /come from another handler/,
    ],
    ["a v2 without token", "v2:emu", "a v2 AuthID looks like v2:SERVICE:REFRESH_TOKEN"],
    ["a v2 with an empty token", "v2:emu:", "a v2 AuthID looks like v2:SERVICE:REFRESH_TOKEN"],
    ["bad percent-encoding", `${keyId}%3A%zz`, "it has a malformed percent-encoding"],
  ])("refuses %s", (_what, text, why) => {
    const result = classifyAuthId(text);
    expect(result.kind).toBe("invalid");
    if (result.kind === "invalid") {
      if (typeof why === "string") expect(result.why).toBe(why);
      else expect(result.why).toMatch(why);
    }
  });
});

describe("sealing", () => {
  const { keyId, secret } = newAuthId();
  const key = recordKey(keyId, secret);
  const aad = recordAad(keyId, "onedrive", "grant");

  it("is AES-256-GCM: version, 12-byte nonce, ciphertext, 16-byte tag", () => {
    const box = seal(key, aad, "refresh-token-value");
    expect(box[0]).toBe(1);
    expect(box).toHaveLength(1 + 12 + "refresh-token-value".length + 16);
    const decipher = createDecipheriv("aes-256-gcm", key, box.subarray(1, 13));
    decipher.setAAD(aad);
    decipher.setAuthTag(box.subarray(box.length - 16));
    expect(
      Buffer.concat([decipher.update(box.subarray(13, box.length - 16)), decipher.final()]).toString(),
    ).toBe("refresh-token-value");
  });

  it("uses a fresh nonce for every seal", () => {
    expect(seal(key, aad, "same").equals(seal(key, aad, "same"))).toBe(false);
  });

  it("opens only with the same key, KEYID, provider and field", () => {
    const box = seal(key, aad, "refresh-token-value");
    expect(open(key, aad, box)).toBe("refresh-token-value");
    const other = newAuthId();
    expect(open(recordKey(keyId, other.secret), aad, box)).toBeUndefined();
    expect(open(key, recordAad(keyId, "gdrive", "grant"), box)).toBeUndefined();
    expect(open(key, recordAad(other.keyId, "onedrive", "grant"), box)).toBeUndefined();
    expect(open(key, recordAad(keyId, "onedrive", "access"), box)).toBeUndefined();
  });

  it("refuses an altered, truncated or unknown-version box", () => {
    const box = seal(key, aad, "refresh-token-value");
    const flipped = Buffer.from(box);
    flipped[20] = flipped[20]! ^ 1;
    expect(open(key, aad, flipped)).toBeUndefined();
    expect(open(key, aad, box.subarray(0, 20))).toBeUndefined();
    const version = Buffer.from(box);
    version[0] = 2;
    expect(open(key, aad, version)).toBeUndefined();
  });
});

describe("records", () => {
  it("keep the refresh and access tokens only sealed, and open them with the AuthID", () => {
    const now = 1_700_000_000_000;
    const { authId, record } = newRecord(
      "emu",
      { refreshToken: "rt_plain", scope: "files" },
      { accessToken: "at_plain", expiresIn: 3600 },
      now,
    );
    const bytes = Buffer.concat([record.grant, record.access!.box]).toString("latin1");
    expect(bytes).not.toContain("rt_plain");
    expect(bytes).not.toContain("at_plain");
    const [keyId, secret] = authId.split(":") as [string, string];
    const key = new RecordKey(keyId, secret);
    expect(key.openGrant(record)).toEqual({ refreshToken: "rt_plain", scope: "files" });
    expect(key.openAccess(record, now)).toEqual({
      state: "fresh",
      accessToken: "at_plain",
      expiresAt: now + 3_600_000,
    });
    // Served until 5 minutes before expiry (or half its life, if shorter).
    expect(key.openAccess(record, now + 3_300_000)).toEqual({ state: "stale" });
    expect(new RecordKey(keyId, newAuthId().secret).openAccess(record, now)).toEqual({
      state: "wrong-secret",
    });
    const short = newRecord("emu", { refreshToken: "r" }, { accessToken: "a", expiresIn: 60 }, now).record;
    expect(short.access).toMatchObject({ expiresAt: now + 60_000, staleAt: now + 30_000 });
  });
});

describe("helpers", () => {
  it("computes the PKCE S256 challenge of RFC 7636 appendix B", () => {
    expect(pkceChallenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")).toBe(
      "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
    );
  });

  it("compares secrets of any length", () => {
    expect(sameSecret("api-key-1", "api-key-1")).toBe(true);
    expect(sameSecret("api-key-1", "api-key-12")).toBe(false);
    expect(sameSecret("", "x")).toBe(false);
  });
});
