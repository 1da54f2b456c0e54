import { NoSuchBucket, NoSuchKey, NotFound, S3ServiceException } from "@aws-sdk/client-s3";
import { staticCredentials } from "@stowage/auth";
import { type ErrorCode, isStorageError, type StorageError } from "@stowage/core";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { s3ErrorTable, toS3StorageError } from "../src/errors.js";
import { type FaultProxy, startFaultProxy } from "./support/fault-proxy.js";
import { openStorage } from "./support/fixture.js";
import { type RunningS3rver, S3RVER_ACCESS_KEY_ID, startS3rver } from "./support/s3rver.js";

const context = {
  provider: "s3",
  operation: "get",
  key: "vol/0001.zip",
  bucket: "backups",
  target: "object" as const,
};

/** An error as the SDK throws it for an S3 error response: `name` and `Code` are the S3 code. */
function sdkError(
  code: string,
  status: number,
  message = `${code} from the server`,
  headers: Record<string, string> = {},
) {
  const error = new S3ServiceException({
    name: code,
    $fault: status >= 500 ? "server" : "client",
    $metadata: { httpStatusCode: status },
    message,
  });
  return Object.assign(error, { Code: code, $response: { statusCode: status, headers } });
}

/** An error for a response without a body (HEAD): the SDK names it after the status, with no code. */
function bodylessError(name: string, status: number) {
  return new S3ServiceException({
    name,
    $fault: "client",
    $metadata: { httpStatusCode: status },
    message: "UnknownError",
  });
}

function networkError(code: string) {
  return Object.assign(new Error(`connect ${code} 127.0.0.1:9`), { code });
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

interface Row {
  name: string;
  error: unknown;
  code: ErrorCode;
  message: string;
  retryable?: boolean;
  hint?: string;
  target?: "object" | "bucket";
}

// One row per row of the table in src/errors.ts (checked below), plus the network and SDK failures.
const rows: Row[] = [
  {
    name: "NoSuchBucket",
    error: new NoSuchBucket({
      $metadata: { httpStatusCode: 404 },
      message: "The specified bucket does not exist",
    }),
    code: "FolderMissing",
    message: "the bucket 'backups' does not exist",
    hint: "createRoot",
  },
  {
    name: "NoSuchKey",
    error: new NoSuchKey({
      $metadata: { httpStatusCode: 404 },
      message: "The specified key does not exist.",
    }),
    code: "NotFound",
    message: "no object has this key (NoSuchKey, HTTP 404)",
  },
  {
    name: "NotFound from a HEAD of an object",
    error: new NotFound({ $metadata: { httpStatusCode: 404 }, message: "UnknownError" }),
    code: "NotFound",
    message: "no object has this key",
  },
  {
    name: "NotFound from a HEAD of the bucket",
    error: bodylessError("NotFound", 404),
    code: "FolderMissing",
    message: "the bucket 'backups' does not exist",
    target: "bucket",
  },
  {
    name: "NoSuchUpload",
    error: sdkError("NoSuchUpload", 404),
    code: "Conflict",
    message: "the multipart upload no longer exists",
  },
  {
    name: "InvalidAccessKeyId",
    error: sdkError("InvalidAccessKeyId", 403),
    code: "Unauthenticated",
    message: "the server does not know this access key id",
    hint: "access key id",
  },
  {
    name: "SignatureDoesNotMatch",
    error: sdkError("SignatureDoesNotMatch", 403),
    code: "Unauthenticated",
    message: "the secret access key is wrong",
    hint: "secret access key",
  },
  {
    name: "ExpiredToken",
    error: sdkError("ExpiredToken", 400),
    code: "Unauthenticated",
    message: "the session token has expired",
  },
  {
    name: "RequestTimeTooSkewed",
    error: sdkError("RequestTimeTooSkewed", 403),
    code: "Unauthenticated",
    message: "clock differs",
    retryable: true,
  },
  {
    name: "AccessDenied",
    error: sdkError("AccessDenied", 403),
    code: "PermissionDenied",
    message: "access denied (AccessDenied, HTTP 403)",
  },
  {
    name: "a 403 without a body (HEAD)",
    error: bodylessError("Unknown", 403),
    code: "PermissionDenied",
    message: "access denied (HTTP 403)",
  },
  {
    name: "SlowDown 503 with Retry-After",
    error: sdkError("SlowDown", 503, "Please reduce your request rate.", { "Retry-After": "2" }),
    code: "RateLimited",
    message: "the server asks to slow down (SlowDown, HTTP 503)",
    retryable: true,
  },
  {
    name: "429 without a code",
    error: bodylessError("Unknown", 429),
    code: "RateLimited",
    message: "slow down",
    retryable: true,
  },
  {
    name: "RequestTimeout",
    error: sdkError("RequestTimeout", 400),
    code: "Timeout",
    message: "the body did not arrive in time",
    retryable: true,
  },
  {
    name: "InternalError 500",
    error: sdkError("InternalError", 500),
    code: "Unavailable",
    message: "the server failed the request (InternalError, HTTP 500)",
    retryable: true,
  },
  {
    name: "ServiceUnavailable 503",
    error: sdkError("ServiceUnavailable", 503),
    code: "Unavailable",
    message: "the server failed the request",
    retryable: true,
  },
  {
    name: "an unknown 5xx",
    error: sdkError("SomethingOdd", 502),
    code: "Unavailable",
    message: "SomethingOdd, HTTP 502",
    retryable: true,
  },
  {
    name: "PreconditionFailed 412",
    error: sdkError("PreconditionFailed", 412),
    code: "AlreadyExists",
    message: "an object with this key already exists",
  },
  {
    name: "ConditionalRequestConflict 409",
    error: sdkError("ConditionalRequestConflict", 409),
    code: "Conflict",
    message: "another conditional write",
    retryable: true,
  },
  {
    name: "EntityTooLarge",
    error: sdkError("EntityTooLarge", 400),
    code: "Unsupported",
    message: "larger than the server accepts",
  },
  {
    name: "EntityTooSmall",
    error: sdkError("EntityTooSmall", 400),
    code: "InvalidConfig",
    message: "smaller than the server's minimum part size",
    hint: "part-size",
  },
  {
    name: "QuotaExceeded",
    error: sdkError("QuotaExceeded", 403),
    code: "QuotaExceeded",
    message: "the storage quota is used up",
  },
  {
    name: "507 without a code",
    error: bodylessError("Unknown", 507),
    code: "QuotaExceeded",
    message: "quota",
  },
  {
    name: "BadDigest",
    error: sdkError("BadDigest", 400),
    code: "Integrity",
    message: "different bytes than were sent",
  },
  {
    name: "PermanentRedirect",
    error: sdkError("PermanentRedirect", 301),
    code: "InvalidConfig",
    message: "in another region",
    hint: "region",
  },
  {
    name: "InvalidBucketName",
    error: sdkError("InvalidBucketName", 400),
    code: "InvalidConfig",
    message: "'backups' is not a valid bucket name",
  },
  {
    name: "BucketAlreadyOwnedByYou",
    error: sdkError("BucketAlreadyOwnedByYou", 409),
    code: "Conflict",
    message: "already exists and is yours",
  },
  {
    name: "BucketAlreadyExists",
    error: sdkError("BucketAlreadyExists", 409),
    code: "Conflict",
    message: "taken by another account",
  },
  {
    name: "NotImplemented",
    error: sdkError("NotImplemented", 501),
    code: "Unsupported",
    message: "does not implement",
  },
  {
    name: "MethodNotAllowed",
    error: sdkError("MethodNotAllowed", 405),
    code: "Unsupported",
    message: "does not implement",
  },
  {
    name: "InvalidRange",
    error: sdkError("InvalidRange", 416),
    code: "InvalidConfig",
    message: "the range starts past the end",
  },
  {
    name: "InvalidObjectState",
    error: sdkError("InvalidObjectState", 403),
    code: "Unsupported",
    message: "archived",
  },
  {
    name: "an unknown 4xx",
    error: sdkError("WeirdThing", 400, "odd request"),
    code: "Protocol",
    message: "the server refused the request (WeirdThing, HTTP 400): odd request",
  },
  {
    name: "ECONNRESET",
    error: networkError("ECONNRESET"),
    code: "Unavailable",
    message: "the connection was reset (ECONNRESET)",
    retryable: true,
  },
  {
    name: "ECONNRESET as the SDK throws it (named TimeoutError)",
    error: Object.assign(new Error("socket hang up"), { name: "TimeoutError", code: "ECONNRESET" }),
    code: "Unavailable",
    message: "the connection was reset (ECONNRESET)",
    retryable: true,
  },
  {
    name: "ECONNREFUSED",
    error: networkError("ECONNREFUSED"),
    code: "Unavailable",
    message: "the connection was refused (ECONNREFUSED)",
    retryable: true,
  },
  {
    name: "ETIMEDOUT",
    error: networkError("ETIMEDOUT"),
    code: "Timeout",
    message: "the connection timed out",
    retryable: true,
  },
  {
    name: "the SDK's socket TimeoutError",
    error: Object.assign(new Error("socket timed out"), { name: "TimeoutError" }),
    code: "Timeout",
    message: "did not answer in time",
    retryable: true,
  },
  {
    name: "no credentials in the default chain",
    error: Object.assign(new Error("Could not load credentials from any providers"), {
      name: "CredentialsProviderError",
    }),
    code: "Unauthenticated",
    message: "no credentials were found",
  },
  {
    name: "no region",
    error: new Error("Region is missing"),
    code: "InvalidConfig",
    message: "no region is set",
    hint: "region",
  },
];

describe("the S3 error table", () => {
  for (const row of rows) {
    it(`maps ${row.name} to ${row.code}`, () => {
      const error = toS3StorageError(row.error, { ...context, target: row.target ?? "object" });
      expect(error.code).toBe(row.code);
      expect(error.message).toContain(row.message);
      expect(error.message).toMatch(/^s3 get 'vol\/0001\.zip': /);
      expect(error.retryable).toBe(row.retryable ?? false);
      if (row.hint) expect(error.hint).toContain(row.hint);
      expect(error.provider).toBe("s3");
      expect(error.cause).toBe(row.error);
    });
  }

  it("has a test row for every code it maps", () => {
    const tested = new Set(rows.map((row) => (row.error as { name?: string }).name));
    const untested = s3ErrorTable.flatMap((rule) => rule.codes).filter((code) => !tested.has(code));
    // Aliases that share a row with a tested code (same code, message and hint).
    const aliases = new Set([
      "TokenRefreshRequired",
      "InvalidToken",
      "AllAccessDisabled",
      "AccountProblem",
      "KMS.AccessDeniedException",
      "KMS.DisabledException",
      "TooManyRequests",
      "TooManyRequestsException",
      "Throttling",
      "ThrottlingException",
      "RequestLimitExceeded",
      "ServerBusy",
      "BadGateway",
      "GatewayTimeout",
      "XMinioServerNotInitialized",
      "MaxMessageLengthExceeded",
      "XMinioStorageFull",
      "StorageFull",
      "InsufficientStorage",
      "ServiceQuotaExceeded",
      "TooManyBuckets",
      "XAmzContentSHA256Mismatch",
      "InvalidDigest",
      "InvalidChecksum",
      "AuthorizationHeaderMalformed",
      "IllegalLocationConstraintException",
      "IncorrectEndpoint",
      "XNotImplemented",
    ]);
    expect(untested.filter((code) => !aliases.has(code))).toEqual([]);
  });

  it("carries Retry-After as retryAfterMs", () => {
    const error = toS3StorageError(sdkError("SlowDown", 503, "slow", { "Retry-After": "2" }), context);
    expect(error.retryAfterMs).toBe(2000);
    expect(error.status).toBe(503);
  });

  it("never puts a registered secret into a message, even when the server echoes it", () => {
    const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    // staticCredentials registers the secret with core's redaction.
    staticCredentials({ accessKeyId: "AKIDEXAMPLE", secretAccessKey: secret });
    const error = toS3StorageError(sdkError("WeirdThing", 400, `bad request signed with ${secret}`), context);
    expect(error.code).toBe("Protocol");
    expect(error.message).not.toContain(secret);
    expect(JSON.stringify(error)).not.toContain(secret);
    expect(String(error)).not.toContain(secret);
  });
});

describe("errors from a real server (s3rver), and from a fault proxy in front of it", () => {
  let server: RunningS3rver;
  let proxy: FaultProxy;

  beforeAll(async () => {
    server = await startS3rver();
    proxy = await startFaultProxy(server.endpoint);
    await openStorage(server.endpoint).createRoot();
  });

  afterAll(async () => {
    await proxy?.close();
    await server?.stop();
  });

  beforeEach(() => proxy.reset());

  it("a missing key is NotFound (NoSuchKey from GET, a bare 404 from HEAD)", async () => {
    const storage = openStorage(server.endpoint);
    const get = await failure(storage.get("no/such.bin"));
    expect(get.code).toBe("NotFound");
    expect(get.message).toBe("s3 get 'no/such.bin': no object has this key (NoSuchKey, HTTP 404)");
    expect(get.retryable).toBe(false);
    const stat = await failure(storage.stat("no/such.bin"));
    expect(stat.code).toBe("NotFound");
    expect(stat.message).toBe("s3 stat 'no/such.bin': no object has this key (HTTP 404)");
  });

  it("a missing bucket is FolderMissing with a createRoot hint", async () => {
    const storage = openStorage(server.endpoint, { bucket: "no-such-bucket" });
    const error = await failure(storage.stat("a.txt"));
    expect(error.code).toBe("FolderMissing");
    expect(error.message).toContain("does not exist");
    expect(error.hint).toContain("createRoot");
  });

  it("an unknown access key id is Unauthenticated, from a listing and from a HEAD (which has no body)", async () => {
    const storage = openStorage(server.endpoint, {
      credentials: staticCredentials({ accessKeyId: "NOT-A-KEY", secretAccessKey: "a-secret-value-123" }),
    });
    const list = await failure(storage.list()[Symbol.asyncIterator]().next());
    expect(list.code).toBe("Unauthenticated");
    expect(list.message).toContain("does not know this access key id (InvalidAccessKeyId, HTTP 403)");
    expect(list.hint).toContain("access key id");
    const stat = await failure(
      openStorage(server.endpoint, {
        credentials: staticCredentials({ accessKeyId: "NOT-A-KEY", secretAccessKey: "a-secret-value-123" }),
        createRoot: false,
      }).stat("a.txt"),
    );
    expect(stat.code).toBe("Unauthenticated");
    expect(stat.message).toContain("InvalidAccessKeyId");
    expect(stat.message).not.toContain("a-secret-value-123");
  });

  it("a wrong secret is Unauthenticated, without the secret in message, hint or JSON", async () => {
    // s3rver does not verify SigV4 signatures, so the proxy answers as S3 does for a wrong secret.
    proxy.add({
      match: () => true,
      respond: {
        status: 403,
        code: "SignatureDoesNotMatch",
        message: "The request signature we calculated does not match the signature you provided.",
      },
    });
    const secret = "Wrong-Secret-Value-0123456789";
    const storage = openStorage(proxy.endpoint, {
      credentials: staticCredentials({ accessKeyId: S3RVER_ACCESS_KEY_ID, secretAccessKey: secret }),
    });
    const report = await storage.test();
    expect(report.ok).toBe(false);
    expect(report.steps[0]).toMatchObject({
      name: "credentials",
      ok: false,
      error: { code: "Unauthenticated" },
    });
    const error = await failure(storage.put("a.txt", "x"));
    expect(error.code).toBe("Unauthenticated");
    expect(error.message).toContain("the secret access key is wrong");
    for (const text of [
      error.message,
      error.hint ?? "",
      JSON.stringify(error),
      JSON.stringify(report),
      String(storage),
    ]) {
      expect(text).not.toContain(secret);
    }
  });

  it("a closed port is Unavailable (ECONNREFUSED) and retryable", async () => {
    const closed = await startFaultProxy(server.endpoint);
    const endpoint = closed.endpoint;
    await closed.close();
    const error = await failure(openStorage(endpoint, { retry: false }).stat("a.txt"));
    expect(error.code).toBe("Unavailable");
    expect(error.message).toContain("the connection was refused (ECONNREFUSED)");
    expect(error.retryable).toBe(true);
  });

  it("a reset connection is Unavailable, and a retry recovers from it", async () => {
    const storage = openStorage(proxy.endpoint);
    await storage.put("reset.txt", "content");
    proxy.add({ match: (r) => r.method === "GET", reset: true, times: 1 });
    expect(await (await storage.get("reset.txt")).text()).toBe("content");
    proxy.add({ match: (r) => r.method === "GET", reset: true });
    const error = await failure(storage.get("reset.txt"));
    expect(error.code).toBe("Unavailable");
    expect(error.message).toBe("s3 get 'reset.txt': the connection was reset (ECONNRESET)");
    expect(error.retryable).toBe(true);
  });

  it("SlowDown is RateLimited: retried with backoff, and reported when it persists", async () => {
    const storage = openStorage(proxy.endpoint);
    proxy.add({
      match: (r) => r.method === "PUT",
      respond: { status: 503, code: "SlowDown", message: "Please reduce your request rate." },
      times: 2,
    });
    await storage.put("slow.txt", "eventually");
    expect(proxy.requests.filter((r) => r.method === "PUT")).toHaveLength(3);
    proxy.add({
      match: (r) => r.method === "PUT",
      respond: { status: 503, code: "SlowDown", message: "Please reduce your request rate." },
    });
    const error = await failure(storage.put("slow.txt", "never"));
    expect(error.code).toBe("RateLimited");
    expect(error.detail).toBe("the server asks to slow down (SlowDown, HTTP 503)");
    expect(error.message).toBe(
      "s3 put 'slow.txt': the server asks to slow down (SlowDown, HTTP 503) (lower concurrency or retry later)",
    );
    expect(error.retryable).toBe(true);
  });

  it("a Retry-After longer than the retry maximum fails at once with RateLimited", async () => {
    const storage = openStorage(proxy.endpoint, { retry: { attempts: 5, maxDelayMs: 1_000 } });
    proxy.add({
      match: (r) => r.method === "HEAD",
      respond: { status: 503, code: "SlowDown", headers: { "retry-after": "120" } },
    });
    const started = Date.now();
    const error = await failure(storage.stat("a.txt"));
    expect(error.code).toBe("RateLimited");
    expect(error.retryAfterMs).toBe(120_000);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  const proxied: Array<[string, number, ErrorCode, string]> = [
    ["InternalError", 500, "Unavailable", "the server failed the request (InternalError, HTTP 500)"],
    [
      "ServiceUnavailable",
      503,
      "Unavailable",
      "the server failed the request (ServiceUnavailable, HTTP 503)",
    ],
    [
      "RequestTimeout",
      400,
      "Timeout",
      "the server closed the request because the body did not arrive in time (RequestTimeout, HTTP 400)",
    ],
    ["AccessDenied", 403, "PermissionDenied", "access denied (AccessDenied, HTTP 403)"],
    [
      "EntityTooLarge",
      400,
      "Unsupported",
      "the object or part is larger than the server accepts (EntityTooLarge, HTTP 400)",
    ],
    ["QuotaExceeded", 403, "QuotaExceeded", "the storage quota is used up (QuotaExceeded, HTTP 403)"],
  ];
  for (const [code, status, expected, message] of proxied) {
    it(`${code} ${status} on a put is ${expected}`, async () => {
      const storage = openStorage(proxy.endpoint);
      await storage.createRoot();
      proxy.add({ match: (r) => r.method === "PUT", respond: { status, code, message: `${code} says no` } });
      const error = await failure(storage.put("row.bin", new Uint8Array(10)));
      expect(error.code).toBe(expected);
      expect(error.message.startsWith(`s3 put 'row.bin': ${message}`)).toBe(true);
      expect(error.detail).toBe(message);
      expect(error.status).toBe(status);
    });
  }

  it("PreconditionFailed on a conditional put is AlreadyExists", async () => {
    const storage = openStorage(proxy.endpoint, { conditionalPut: true });
    proxy.add({
      match: (r) => r.method === "PUT" && r.headers["if-none-match"] === "*",
      respond: {
        status: 412,
        code: "PreconditionFailed",
        message: "At least one of the pre-conditions you specified did not hold",
      },
    });
    const error = await failure(storage.put("cond.txt", "x", { ifNotExists: true }));
    expect(error.code).toBe("AlreadyExists");
    expect(error.detail).toBe("an object with this key already exists (PreconditionFailed, HTTP 412)");
    expect(error.hint).toBe("delete it first or put without ifNotExists");
    // Atomic on the server: no HEAD beforehand (that would be check-then-write).
    expect(proxy.requests.filter((r) => r.method === "HEAD")).toEqual([]);
  });
});
