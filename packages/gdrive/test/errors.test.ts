import { oauthRefreshToken, personalAccessToken } from "@stowage/auth";
import { isStorageError, type StorageError, type TokenSource } from "@stowage/core";
import {
  DRIVE_FILE_SCOPE,
  defaultOAuthClient,
  driveErrorBody,
  driveErrors,
  type FaultResponse,
} from "@stowage/emulators";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGoogleDriveStorage, driveErrorTable, type GoogleDriveStorage } from "../src/index.js";
import { type Emulators, startEmulators } from "./support/emulators.js";

let emulators: Emulators;
const opened: GoogleDriveStorage[] = [];

beforeAll(async () => {
  emulators = await startEmulators({ drive: { quotaBytes: 64 } });
  const setup = open();
  await setup.createRoot();
  await setup.put("present.bin", "0123456789");
});

afterAll(async () => {
  await Promise.all(opened.map((storage) => storage.close()));
  await emulators.close();
});

/** A storage that does not retry, so that each answer surfaces as it is classified. */
function open(auth: TokenSource = emulators.tokenSource()): GoogleDriveStorage {
  const storage = createGoogleDriveStorage({
    auth,
    root: "Errors",
    driveUrl: emulators.drive.url,
    retry: false,
  });
  opened.push(storage);
  return storage;
}

async function failure(promise: Promise<unknown>): Promise<StorageError> {
  try {
    await promise;
  } catch (err) {
    if (isStorageError(err)) return err;
    throw err;
  }
  throw new Error("expected the call to fail");
}

/** The next `times` requests matching `path` get `respond`. */
function fault(respond: FaultResponse, path: string | RegExp = "/drive/v3/files", times = 1): void {
  emulators.drive.faults.clear();
  emulators.drive.faults.add({ path, times, respond });
}

describe("the Drive error table, a test per row (code and message)", () => {
  it("401 authError → Unauthenticated, after the token was refreshed once", async () => {
    fault({ status: 401, body: driveErrors.authError }, "/drive/v3/files", 2);
    const error = await failure(open().stat("present.bin"));
    expect(error.code).toBe("Unauthenticated");
    expect(error.status).toBe(401);
    expect(error.message).toBe(
      "gdrive stat 'present.bin': GET /drive/v3/files?supportsAllDrives=true&q=%27root%27+in+parents+and+name+%3D+%27Errors%27+and+mimeType+%3D+%27application%2Fvnd.google-apps.folder%27+and+trashed+%3D+false&pageSize=1000&fields=nextPageToken%2Cfiles%28id%2Cname%2CmimeType%2Csize%2Cmd5Checksum%2CmodifiedTime%2CcreatedTime%29 returned 401 Unauthorized: Google refused the access token (Drive said authError: Invalid Credentials) (sign in again (create a new AuthID, or a new refresh token) if this persists)",
    );
    expect(error.retryable).toBe(false);
  });

  it("404 notFound → NotFound", async () => {
    const storage = open();
    await storage.stat("present.bin");
    fault({ status: 404, body: driveErrorBody(404, "notFound", "File not found: abc.") }, /alt=media/);
    const error = await failure(storage.get("present.bin"));
    expect(error.code).toBe("NotFound");
    expect(error.message).toMatch(
      /^gdrive get 'present\.bin': GET \/drive\/v3\/files\/[^?]+\?supportsAllDrives=true&alt=media returned 404 Not Found: Drive has no such file, or this app may not see it \(Drive said notFound: File not found: abc\.\)$/,
    );
  });

  it("403 userRateLimitExceeded → RateLimited (retryable)", async () => {
    fault({ status: 403, body: driveErrors.userRateLimitExceeded });
    const error = await failure(open().stat("present.bin"));
    expect(error.code).toBe("RateLimited");
    expect(error.retryable).toBe(true);
    expect(error.message).toContain(
      "returned 403 Forbidden: Drive's per-user rate limit was exceeded (Drive said userRateLimitExceeded: User rate limit exceeded.)",
    );
    expect(error.hint).toBe(driveErrorTable["403:userRateLimitExceeded"]!.hint);
  });

  it("403 rateLimitExceeded → RateLimited (retryable)", async () => {
    fault({ status: 403, body: driveErrors.rateLimitExceeded });
    const error = await failure(open().stat("present.bin"));
    expect(error.code).toBe("RateLimited");
    expect(error.retryable).toBe(true);
    expect(error.message).toContain(
      "returned 403 Forbidden: Drive's rate limit was exceeded (Drive said rateLimitExceeded: Rate limit exceeded.)",
    );
  });

  it("403 storageQuotaExceeded → QuotaExceeded (the emulator's quota, no fault)", async () => {
    emulators.drive.faults.clear();
    const error = await failure(
      open().put("big.bin", "more than the sixty-four bytes this account may hold, surely"),
    );
    expect(error.code).toBe("QuotaExceeded");
    expect(error.retryable).toBe(false);
    expect(error.message).toContain(
      "returned 403 Forbidden: the Google account's storage is full (Drive said storageQuotaExceeded: The user's Drive storage quota has been exceeded.)",
    );
    expect(error.hint).toContain("free some space");
  });

  it("403 with any other reason → PermissionDenied (a token without a Drive scope, no fault)", async () => {
    emulators.drive.faults.clear();
    const token = emulators.oauth.issueAccessToken({ scopes: ["openid"] });
    const error = await failure(open(personalAccessToken(token)).stat("present.bin"));
    expect(error.code).toBe("PermissionDenied");
    expect(error.message).toContain(
      "returned 403 Forbidden: Drive refused the request (Drive said insufficientPermissions: Request had insufficient authentication scopes.)",
    );
  });

  it("429 → RateLimited (retryable), with Retry-After when sent", async () => {
    fault({ status: 429, headers: { "retry-after": "3" }, body: driveErrors.tooManyRequests });
    const error = await failure(open().stat("present.bin"));
    expect(error.code).toBe("RateLimited");
    expect(error.retryAfterMs).toBe(3000);
    expect(error.message).toContain(
      "returned 429 Too Many Requests: Drive is receiving too many requests (Drive said rateLimitExceeded: Rate limit exceeded.)",
    );
  });

  it("5xx backendError → Unavailable (retryable)", async () => {
    fault({ status: 503, body: driveErrors.serviceUnavailable });
    const error = await failure(open().stat("present.bin"));
    expect(error.code).toBe("Unavailable");
    expect(error.retryable).toBe(true);
    expect(error.message).toContain(
      "returned 503 Service Unavailable: Drive failed to answer (Drive said backendError: Backend Error)",
    );
  });

  it("invalid_grant from the token endpoint → Unauthenticated, naming the refusal", async () => {
    emulators.drive.faults.clear();
    const refreshToken = emulators.oauth.issueRefreshToken({ scopes: [DRIVE_FILE_SCOPE] });
    emulators.oauth.revoke(refreshToken);
    const auth = oauthRefreshToken({
      tokenUrl: emulators.oauth.tokenUrl,
      clientId: defaultOAuthClient.clientId,
      clientSecret: defaultOAuthClient.clientSecret,
      refreshToken,
      onRotate: () => undefined,
      retry: false,
    });
    const error = await failure(open(auth).stat("present.bin"));
    expect(error.code).toBe("Unauthenticated");
    expect(error.operation).toBe("stat");
    expect(error.message).toContain("invalid_grant");
    expect(error.message).toContain("the refresh token was revoked");
    expect(error.message).not.toContain(refreshToken);
    expect(error.hint).toContain("sign in again");
  });

  it("a network failure (connection reset) → Unavailable (retryable)", async () => {
    emulators.drive.faults.clear();
    emulators.drive.faults.add({ path: "/drive/v3/files", reset: true });
    const error = await failure(open().stat("present.bin"));
    expect(error.code).toBe("Unavailable");
    expect(error.retryable).toBe(true);
    expect(error.message).toMatch(
      /^gdrive stat 'present\.bin': GET \/drive\/v3\/files\?.* (socket|connection|reset|closed)/,
    );
  });

  it("no error message or hint holds the access token", async () => {
    fault({ status: 403, body: driveErrors.userRateLimitExceeded });
    const token = emulators.oauth.issueAccessToken({ scopes: [DRIVE_FILE_SCOPE] });
    const error = await failure(open(personalAccessToken(token)).stat("present.bin"));
    expect(JSON.stringify(error)).not.toContain(token);
    expect(String(error)).not.toContain(token);
  });
});

describe("retries", () => {
  it("rate limits without Retry-After are retried with backoff until Drive answers", async () => {
    fault({ status: 403, body: driveErrors.userRateLimitExceeded }, "/drive/v3/files", 3);
    const storage = createGoogleDriveStorage({
      auth: emulators.tokenSource(),
      root: "Errors",
      driveUrl: emulators.drive.url,
      retry: { minDelayMs: 1, maxDelayMs: 10 },
    });
    opened.push(storage);
    expect((await storage.stat("present.bin")).size).toBe(10);
  });
});
