import { inspect } from "node:util";
import { redact, redactUrl, registerSecret, StorageError, toStorageError } from "@stowage/core";
import { describe, expect, it } from "vitest";

describe("redact", () => {
  it.each([
    ["Authorization: Bearer eyJhbGciOi.abc.def", "Authorization: [redacted]"],
    ["sent Bearer eyJhbGciOi.abc.def to the server", "sent Bearer [redacted] to the server"],
    ["X-AuthID: 0123456789abcdef0123456789abcdef:c2VjcmV0", "X-AuthID: [redacted]"],
    ["GET /refresh?authid=abc%3Adef&x=1", "GET /refresh?authid=[redacted]&x=1"],
    ["?client_secret=s3cr3t&code=4/abc", "?client_secret=[redacted]&code=[redacted]"],
    ['{"access_token":"ya29.token","expires_in":3599}', '{"access_token":"[redacted]","expires_in":3599}'],
    ['{"refresh_token": "1//0g-abc"}', '{"refresh_token": "[redacted]"}'],
    ["https://me:hunter2@dav.example.com/x", "https://me:[redacted]@dav.example.com/x"],
    [
      "id 0123456789abcdef0123456789abcdef:AbCdEfGhIjKlMnOpQrStUvWxYz012345 pasted",
      "id 0123456789abcdef0123456789abcdef:[redacted] pasted",
    ],
    ["v2:onedrive:M.R3_BAY.refresh-token", "v2:onedrive:[redacted]"],
  ])("redacts %j", (input, expected) => {
    expect(redact(input)).toBe(expected);
  });

  it("removes a registered secret wherever it appears", () => {
    registerSecret("plain-looking-secret-value");
    expect(redact("server said: plain-looking-secret-value is wrong")).toBe(
      "server said: [redacted] is wrong",
    );
    expect(redact(`encoded ${encodeURIComponent("plain-looking-secret-value")}`)).toBe("encoded [redacted]");
  });

  it("copies objects with secret-named fields replaced, keeping error codes", () => {
    const out = redact({
      code: "NotFound",
      password: "pw",
      nested: { token: "t", list: ["Bearer abc123def456"] },
      ok: 1,
    });
    expect(out).toEqual({
      code: "NotFound",
      password: "[redacted]",
      nested: { token: "[redacted]", list: ["Bearer [redacted]"] },
      ok: 1,
    });
  });

  it("redacts URLs' passwords and secret parameters", () => {
    expect(redactUrl("webdavs://me:pw@host/x?token=abc&region=eu")).toBe(
      "webdavs://me:[redacted]@host/x?token=[redacted]&region=eu",
    );
  });

  it("handles cycles", () => {
    const a: Record<string, unknown> = { name: "a" };
    a.self = a;
    expect(redact(a)).toEqual({ name: "a", self: "[circular]" });
  });
});

describe("StorageError", () => {
  const secret = "Sup3rS3cretTokenValue";
  registerSecret(secret);
  const err = new StorageError({
    code: "Unauthenticated",
    provider: "onedrive",
    operation: "put",
    key: "vol/1.zip",
    status: 401,
    message: `the server rejected token ${secret}`,
    hint: `create a new token (not ${secret})`,
    cause: new Error(`Bearer ${secret}`),
  });

  it("names the provider, operation and key, and says what to do", () => {
    expect(err.message).toBe(
      "onedrive put 'vol/1.zip': the server rejected token [redacted] (create a new token (not [redacted]))",
    );
    expect(err.retryable).toBe(false);
    expect(err.status).toBe(401);
  });

  it("never shows a secret through message, toString, JSON or inspect", () => {
    for (const text of [err.message, String(err), JSON.stringify(err), inspect(err), err.hint ?? ""]) {
      expect(text).not.toContain(secret);
    }
  });

  it("marks RateLimited, Unavailable and Timeout retryable", () => {
    for (const code of ["RateLimited", "Unavailable", "Timeout"] as const) {
      expect(new StorageError({ code, message: "x" }).retryable).toBe(true);
    }
    expect(new StorageError({ code: "NotFound", message: "x" }).retryable).toBe(false);
  });

  it("maps network and filesystem errors", () => {
    const reset = toStorageError(Object.assign(new Error("socket hang up"), { code: "ECONNRESET" }), {
      provider: "s3",
      operation: "get",
    });
    expect(reset.code).toBe("Unavailable");
    expect(reset.message).toBe("s3 get: the connection was reset (ECONNRESET)");
    const full = toStorageError(Object.assign(new Error("no space"), { code: "ENOSPC" }), {
      provider: "fs",
      operation: "put",
    });
    expect(full.code).toBe("QuotaExceeded");
    const abort = toStorageError(new DOMException("aborted", "AbortError"), {
      provider: "fs",
      operation: "get",
    });
    expect(abort.code).toBe("Aborted");
    const other = toStorageError(new TypeError(`boom ${secret}`), { provider: "fs", operation: "get" });
    expect(other.code).toBe("Protocol");
    expect(other.message).toBe("fs get: unexpected failure: TypeError: boom [redacted]");
  });
});

describe("redact leaves prose alone", () => {
  it("does not mistake words after 'basic' or 'bearer' for credentials", () => {
    expect(redact("pass basic credentials or a bearer token")).toBe(
      "pass basic credentials or a bearer token",
    );
    expect(redact("Authorization header: Basic dXNlcjpwYXNz")).toContain("[redacted]");
  });
  it("maps an untrusted TLS certificate to a clear, non-retryable error", () => {
    const err = toStorageError(
      Object.assign(new Error("self-signed"), { code: "DEPTH_ZERO_SELF_SIGNED_CERT" }),
      {
        provider: "webdav",
        operation: "list",
      },
    );
    expect(err.code).toBe("Unavailable");
    expect(err.retryable).toBe(false);
    expect(err.message).toContain(
      "the server's TLS certificate is not trusted (DEPTH_ZERO_SELF_SIGNED_CERT)",
    );
  });
});
