import type { TokenSource } from "@stowage/core";
import {
  type FaultResponse,
  type GraphEmulator,
  graphErrorResponse,
  graphThrottled,
} from "@stowage/emulators";
import { describe, expect, it } from "vitest";
import {
  classifyGraphResponse,
  createOneDriveStorage,
  graphErrorTable,
  type OneDriveStorage,
} from "../src/index.js";
import { emulator, failure } from "./support/setup.js";

const statPath = "/v1.0/me/drive/root:/errors/a.txt:";
const where = `onedrive stat 'a.txt': GET ${statPath} returned`;
const tested = new Set<string>();

/** A token source that always has another token, so that a second 401 reaches the error table. */
function endlessTokens(): TokenSource {
  let n = 0;
  return { kind: "test", getToken: async () => ({ token: `token-${++n}` }), invalidate: () => undefined };
}

async function setup(): Promise<{ graph: GraphEmulator; storage: OneDriveStorage }> {
  const graph = await emulator();
  graph.addFolder("errors");
  const storage = createOneDriveStorage({
    auth: endlessTokens(),
    graphUrl: graph.graphUrl,
    root: "errors",
    retry: false,
  });
  await storage.createRoot();
  return { graph, storage };
}

/** The error a `stat` meets when Graph answers `respond` (twice, for the 401 that is retried once). */
async function statFailure(respond: FaultResponse) {
  const { graph, storage } = await setup();
  graph.faults.add({ method: "GET", path: statPath, times: 2, respond });
  const err = await failure(storage.stat("a.txt"));
  await storage.close();
  return err;
}

const rowKey = (status: number | string, code?: string) => `${status}:${code ?? "*"}`;

describe("the OneDrive error table, one test per row (status first, then the innermost known code)", () => {
  it("400 pathIsTooLong (inner) is InvalidKey", async () => {
    tested.add(rowKey(400, "pathIsTooLong"));
    const err = await statFailure(
      graphErrorResponse(400, "invalidRequest", "Path too long", { innerCode: "pathIsTooLong" }),
    );
    expect(err.code).toBe("InvalidKey");
    expect(err.message).toBe(
      `${where} 400 Bad Request: the path is too long for OneDrive (invalidRequest/pathIsTooLong: Path too long) (use shorter keys or a shorter root: OneDrive paths must stay under 400 characters)`,
    );
  });

  it("400 is Protocol", async () => {
    tested.add(rowKey(400));
    const err = await statFailure(
      graphErrorResponse(400, "invalidRequest", "Bad", { innerCode: "somethingNew" }),
    );
    expect(err.code).toBe("Protocol");
    expect(err.message).toBe(
      `${where} 400 Bad Request: OneDrive refused the request as invalid (invalidRequest/somethingNew: Bad)`,
    );
  });

  const signInAgain =
    "sign in again: create a new AuthID at the handler's login page, or pass a new token (it may have expired or been revoked)";

  it("401 InvalidAuthenticationToken (Graph's front door) is Unauthenticated, after one retry with a fresh token", async () => {
    tested.add(rowKey(401, "InvalidAuthenticationToken"));
    const { graph, storage } = await setup();
    const fault = graph.faults.add({
      method: "GET",
      path: statPath,
      times: 2,
      respond: graphErrorResponse(
        401,
        "InvalidAuthenticationToken",
        "Access token has expired or is not yet valid.",
      ),
    });
    const err = await failure(storage.stat("a.txt"));
    expect(fault.hits).toBe(2);
    expect(err.code).toBe("Unauthenticated");
    expect(err.message).toBe(
      `${where} 401 Unauthorized: Microsoft Graph refused the access token (InvalidAuthenticationToken: Access token has expired or is not yet valid.) (${signInAgain})`,
    );
    await storage.close();
  });

  it("401 unauthenticated (the OneDrive service) is Unauthenticated", async () => {
    tested.add(rowKey(401, "unauthenticated"));
    const err = await statFailure(
      graphErrorResponse(401, "unauthenticated", "Unauthenticated", { innerCode: "expiredToken" }),
    );
    expect(err.code).toBe("Unauthenticated");
    expect(err.message).toBe(
      `${where} 401 Unauthorized: OneDrive refused the credentials (unauthenticated/expiredToken: Unauthenticated) (${signInAgain})`,
    );
  });

  it("401 with another code is Unauthenticated", async () => {
    tested.add(rowKey(401));
    const err = await statFailure({ status: 401, body: "" });
    expect(err.code).toBe("Unauthenticated");
    expect(err.message).toBe(`${where} 401 Unauthorized: the request was not authenticated (${signInAgain})`);
  });

  it("403 accessDenied is PermissionDenied", async () => {
    tested.add(rowKey(403, "accessDenied"));
    const err = await statFailure(graphErrorResponse(403, "accessDenied", "Access denied"));
    expect(err.code).toBe("PermissionDenied");
    expect(err.message).toBe(
      `${where} 403 Forbidden: access was denied (accessDenied: Access denied) (check that the app was granted Files.ReadWrite and that the account may write to this folder)`,
    );
  });

  it("403 with another code is PermissionDenied", async () => {
    tested.add(rowKey(403));
    const err = await statFailure(graphErrorResponse(403, "notAllowed", "Not allowed"));
    expect(err.code).toBe("PermissionDenied");
    expect(err.message).toBe(
      `${where} 403 Forbidden: the request is forbidden (notAllowed: Not allowed) (check that the account may access this drive and folder)`,
    );
  });

  it("404 itemNotFound is NotFound (the emulator's own answer)", async () => {
    tested.add(rowKey(404, "itemNotFound"));
    const { storage } = await setup();
    const err = await failure(storage.stat("a.txt"));
    expect(err.code).toBe("NotFound");
    // The storage words a missing object itself; the table's text shows on other calls.
    expect(err.message).toBe("onedrive stat 'a.txt': no object has this key");
    const row = classifyGraphResponse({
      status: 404,
      headers: {},
      bodyText: JSON.stringify({ error: { code: "itemNotFound", message: "Gone" } }),
    });
    expect(row).toEqual({
      code: "NotFound",
      hint: undefined,
      retryable: undefined,
      message: "no item has this path (itemNotFound: Gone)",
    });
    await storage.close();
  });

  it("404 with another code is NotFound", async () => {
    tested.add(rowKey(404));
    const row = classifyGraphResponse({ status: 404, headers: {}, bodyText: "<html>Not Found</html>" });
    expect(row).toEqual({ code: "NotFound", hint: undefined, retryable: undefined, message: "not found" });
  });

  it("409 nameAlreadyExists is AlreadyExists", async () => {
    tested.add(rowKey(409, "nameAlreadyExists"));
    const { graph, storage } = await setup();
    graph.addFile("errors/b.txt", Buffer.from("x"));
    const err = await failure(storage.put("b.txt", "y", { ifNotExists: true }));
    expect(err.code).toBe("AlreadyExists");
    expect(err.message).toMatch(
      /^onedrive put 'b\.txt': PUT \/v1\.0\/me\/drive\/root:\/errors\/b\.txt:\/content\?@microsoft\.graph\.conflictBehavior=fail returned 409 Conflict: an item with this name already exists \(nameAlreadyExists: An item named 'b\.txt' already exists\.\) \(delete it first or put without ifNotExists\)$/,
    );
    await storage.close();
  });

  it("409 with another code is Conflict", async () => {
    tested.add(rowKey(409));
    const err = await statFailure(graphErrorResponse(409, "invalidRequest", "Parent is a file"));
    expect(err.code).toBe("Conflict");
    expect(err.message).toBe(
      `${where} 409 Conflict: the request conflicts with the drive's state; a parent of this key may be a file, not a folder (invalidRequest: Parent is a file) (choose a key whose parents are folders)`,
    );
  });

  it("412 is Conflict", async () => {
    tested.add(rowKey(412));
    const err = await statFailure(graphErrorResponse(412, "resourceModified", "ETag mismatch"));
    expect(err.code).toBe("Conflict");
    expect(err.message).toBe(
      `${where} 412 Precondition Failed: the item changed since it was read (resourceModified: ETag mismatch) (try again; another client is changing the same key)`,
    );
  });

  it("413 is Unsupported", async () => {
    tested.add(rowKey(413));
    const err = await statFailure(
      graphErrorResponse(413, "invalidRequest", "Too big", { innerCode: "maxFragmentLengthExceeded" }),
    );
    expect(err.code).toBe("Unsupported");
    expect(err.message).toBe(
      `${where} 413 Payload Too Large: the request is too large for OneDrive (invalidRequest/maxFragmentLengthExceeded: Too big) (lower fragmentSize (a multiple of 327,680 bytes under 60 MiB))`,
    );
  });

  it("416 invalidRange is Protocol", async () => {
    tested.add(rowKey(416, "invalidRange"));
    const err = await statFailure(
      graphErrorResponse(416, "invalidRange", "Overlap", { innerCode: "fragmentOverlap" }),
    );
    expect(err.code).toBe("Protocol");
    expect(err.message).toBe(
      `${where} 416 Range Not Satisfiable: OneDrive refused the byte range (invalidRange/fragmentOverlap: Overlap)`,
    );
  });

  it("423 is Conflict, and retryable", async () => {
    tested.add(rowKey(423));
    const err = await statFailure(graphErrorResponse(423, "resourceLocked", "Locked"));
    expect([err.code, err.retryable]).toEqual(["Conflict", true]);
    expect(err.message).toBe(
      `${where} 423 Locked: the item is locked (resourceLocked: Locked) (try again once the lock is released (an Office app or sync client may hold it))`,
    );
  });

  it("429 (activityLimitReached, or any code) is RateLimited with Retry-After", async () => {
    tested.add(rowKey(429));
    const err = await statFailure(graphThrottled(429, 7));
    expect([err.code, err.retryable, err.retryAfterMs, err.status]).toEqual(["RateLimited", true, 7000, 429]);
    expect(err.message).toBe(
      `${where} 429 Too Many Requests: OneDrive is throttling this app (activityLimitReached: The request has been throttled) (make fewer requests at once (lower concurrency) and try again after the time Retry-After gives)`,
    );
    const other = await statFailure(
      graphErrorResponse(429, "accessDenied", "Too Many Requests", { innerCode: "throttledRequest" }),
    );
    expect(other.code).toBe("RateLimited");
  });

  it("503 (activityLimitReached, serviceNotAvailable) is Unavailable with Retry-After", async () => {
    tested.add(rowKey(503));
    const err = await statFailure(graphThrottled(503, 3));
    expect([err.code, err.retryable, err.retryAfterMs]).toEqual(["Unavailable", true, 3000]);
    expect(err.message).toBe(
      `${where} 503 Service Unavailable: OneDrive is unavailable or too busy (activityLimitReached: The request has been throttled) (try again after the time Retry-After gives)`,
    );
  });

  it("507 quotaLimitReached is QuotaExceeded (the emulator's own answer)", async () => {
    tested.add(rowKey(507, "quotaLimitReached"));
    const graph = await emulator({ quotaBytes: 10 });
    const storage = createOneDriveStorage({
      auth: endlessTokens(),
      graphUrl: graph.graphUrl,
      root: "q",
      createRoot: true,
      retry: false,
    });
    const err = await failure(storage.put("big.txt", "more than ten bytes"));
    expect([err.code, err.retryable]).toEqual(["QuotaExceeded", false]);
    expect(err.message).toBe(
      "onedrive put 'big.txt': PUT /v1.0/me/drive/root:/q/big.txt:/content?@microsoft.graph.conflictBehavior=replace returned 507 Insufficient Storage: the OneDrive is full (quotaLimitReached: Insufficient Space Available) (free some space (deleted files count until the recycle bin is emptied) or buy more storage)",
    );
    await storage.close();
  });

  it("507 with another code is QuotaExceeded", async () => {
    tested.add(rowKey(507));
    const err = await statFailure({ status: 507, body: "" });
    expect(err.code).toBe("QuotaExceeded");
    expect(err.message).toBe(
      `${where} 507 Insufficient Storage: OneDrive has no space for this object (free some space)`,
    );
  });

  it("509 is RateLimited", async () => {
    tested.add(rowKey(509));
    const err = await statFailure({ status: 509, body: "" });
    expect(err.code).toBe("RateLimited");
    expect(err.message).toBe(
      `${where} 509 Bandwidth Limit Exceeded: the account's bandwidth limit was reached (try again later)`,
    );
  });

  it("any other 5xx is Unavailable", async () => {
    tested.add(rowKey("5xx"));
    const err = await statFailure(graphErrorResponse(500, "generalException", "Something broke"));
    expect([err.code, err.retryable]).toEqual(["Unavailable", true]);
    expect(err.message).toBe(
      `${where} 500 Internal Server Error: OneDrive failed to answer (generalException: Something broke) (try again later; if it persists, check https://status.cloud.microsoft)`,
    );
    expect((await statFailure({ status: 504, body: "" })).code).toBe("Unavailable");
  });

  it("a network failure (connection reset) is Unavailable, retryable", async () => {
    const { graph, storage } = await setup();
    graph.faults.add({ method: "GET", path: statPath, reset: true });
    const err = await failure(storage.stat("a.txt"));
    expect([err.code, err.retryable]).toEqual(["Unavailable", true]);
    expect(err.message).toMatch(
      /^onedrive stat 'a\.txt': GET \/v1\.0\/me\/drive\/root:\/errors\/a\.txt:: the connection was (reset|closed by the server)/,
    );
    await storage.close();
  });
});

describe("reading Graph error bodies", () => {
  const classify = (status: number, error: object) =>
    classifyGraphResponse({ status, headers: {}, bodyText: JSON.stringify({ error }) });

  it("keys on the status first: a 429 whose code says accessDenied is still RateLimited", () => {
    expect(classify(429, { code: "accessDenied", innerError: { code: "throttledRequest" } })?.code).toBe(
      "RateLimited",
    );
  });

  it("uses the innermost code it knows, reading both innererror and innerError", () => {
    expect(
      classify(400, {
        code: "invalidRequest",
        innererror: { code: "x", innererror: { code: "pathIsTooLong" } },
      })?.code,
    ).toBe("InvalidKey");
    expect(classify(400, { code: "invalidRequest", innerError: { code: "pathIsTooLong" } })?.code).toBe(
      "InvalidKey",
    );
    expect(
      classify(401, { code: "somethingElse", InnerError: { code: "unauthenticated" } })?.message,
    ).toMatch(/^OneDrive refused the credentials/);
  });

  it("keeps a status without a row to core's defaults, with the service's words", () => {
    expect(classify(418, { code: "teapot", message: "short and stout" })).toEqual({
      message: "teapot: short and stout",
    });
  });
});

// Tests run in file order, so this one sees every row the tests above marked.
it("every row of the table has a test above", () => {
  const rows = graphErrorTable.map((row) => rowKey(row.status, row.code));
  expect([...tested].sort()).toEqual([...rows].sort());
});
