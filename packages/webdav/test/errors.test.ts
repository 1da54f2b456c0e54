import { randomUUID } from "node:crypto";
import { basicCredentials } from "@stowage/auth";
import { isStorageError, type StorageError } from "@stowage/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createWebDavStorage,
  statusTable,
  type WebDavStorage,
  type WebDavStorageOptions,
} from "../src/index.js";
import { type FaultProxy, startFaultProxy } from "./support/fault-proxy.js";
import {
  freePort,
  password,
  startApache,
  startWebdavServer,
  type TestServer,
  username,
} from "./support/servers.js";

let apache: TestServer;
let webdavServer: TestServer;
let proxy: FaultProxy;
const opened: WebDavStorage[] = [];

beforeAll(async () => {
  [apache, webdavServer] = await Promise.all([startApache(), startWebdavServer()]);
  proxy = await startFaultProxy(apache.url);
}, 60_000);

afterAll(async () => {
  await Promise.all(opened.map((storage) => storage.close()));
  await proxy?.close();
  await Promise.all([apache?.stop(), webdavServer?.stop()]);
}, 30_000);

/** A storage with a fresh root; retries kept short so that retried rows stay fast. */
async function storageOn(url: string, options: Partial<WebDavStorageOptions> = {}): Promise<WebDavStorage> {
  const storage = createWebDavStorage({
    url,
    root: `errors/${randomUUID()}`,
    auth: basicCredentials({ username, password }),
    retry: { attempts: 2, minDelayMs: 1, maxDelayMs: 10 },
    ...options,
  });
  opened.push(storage);
  if (options.root === undefined) await storage.createRoot();
  return storage;
}

async function failure(promise: Promise<unknown>): Promise<StorageError> {
  try {
    await promise;
  } catch (err) {
    if (!isStorageError(err)) throw err;
    return err;
  }
  throw new Error("expected the call to fail");
}

const basicHeader = Buffer.from(`${username}:${password}`).toString("base64");

function expectNoSecret(err: StorageError): void {
  for (const text of [err.message, err.hint ?? "", JSON.stringify(err), String(err)]) {
    expect(text).not.toContain(password);
    expect(text).not.toContain(basicHeader);
  }
}

const tested = new Set<number>();

describe("the WebDAV error table, one test per row", () => {
  it("401 is Unauthenticated, with a hint about the credentials", async () => {
    tested.add(401);
    const storage = createWebDavStorage({
      url: apache.url,
      auth: basicCredentials({ username, password: `wrong-${password}` }),
    });
    opened.push(storage);
    const err = await failure(storage.stat("a.txt"));
    expect(err.code).toBe("Unauthenticated");
    expect(err.status).toBe(401);
    expect(err.message).toMatch(
      /^webdav stat 'a\.txt': PROPFIND \/dav\/a\.txt returned 401 Unauthorized: the server refused the credentials/,
    );
    expect(err.hint).toContain("password");
    expectNoSecret(err);
    expect(err.message).not.toContain("wrong-");
  });

  it("403 is PermissionDenied (a folder where the user may only read)", async () => {
    tested.add(403);
    const storage = await storageOn(apache.url.replace(/\/dav$/, "/dav-readonly"), { root: "" });
    const err = await failure(storage.put("x.txt", "data"));
    expect(err.code).toBe("PermissionDenied");
    expect(err.status).toBe(403);
    expect(err.message).toMatch(
      /^webdav put 'x\.txt': PUT \/dav-readonly\/x\.txt returned 403 Forbidden: the server forbids this operation here/,
    );
    expect(err.retryable).toBe(false);
    expectNoSecret(err);
  });

  it("404 is NotFound (a GET of a missing key)", async () => {
    tested.add(404);
    const storage = await storageOn(apache.url);
    const err = await failure(storage.get("missing.bin"));
    expect(err.code).toBe("NotFound");
    expect(err.status).toBe(404);
    expect(err.message).toMatch(
      /^webdav get 'missing\.bin': GET \/dav\/errors\/[-0-9a-f]+\/missing\.bin returned 404 Not Found: no object has this key/,
    );
    expectNoSecret(err);
  });

  it("405 is Conflict (webdav-server refuses a PUT on a folder)", async () => {
    tested.add(405);
    const storage = await storageOn(webdavServer.url, { atomicPut: false });
    await storage.put("dir/inside.txt", "x");
    const err = await failure(storage.put("dir", "x"));
    expect(err.code).toBe("Conflict");
    expect(err.status).toBe(405);
    expect(err.message).toMatch(
      /^webdav put 'dir': PUT \/errors\/[-0-9a-f]+\/dir returned 405 Method Not Allowed: the server does not allow this method on this resource/,
    );
    expect(await (await storage.get("dir/inside.txt")).text()).toBe("x");
    expectNoSecret(err);
  });

  it("405 on PROPFIND is Unsupported: the URL leads to no WebDAV folder", async () => {
    const storage = createWebDavStorage({
      url: apache.url.replace(/\/dav$/, "/plain"),
      auth: basicCredentials({ username, password }),
    });
    opened.push(storage);
    const report = await storage.test();
    expect(report.ok).toBe(false);
    expect(report.steps[0]?.error?.code).toBe("Unsupported");
    expect(report.steps[0]?.error?.message).toMatch(
      /PROPFIND \/plain\/ returned 405 Method Not Allowed: the URL does not lead to a WebDAV folder/,
    );
    expect(report.steps[0]?.error?.hint).toContain("endpoint");
  });

  it("409 is Conflict: a PUT over a folder or below an object is explained, any other 409 is the row", async () => {
    tested.add(409);
    const storage = await storageOn(apache.url, { atomicPut: false });
    await storage.put("dir/inside.txt", "x");
    const overFolder = await failure(storage.put("dir", "y"));
    expect(overFolder.code).toBe("Conflict");
    expect(overFolder.status).toBe(409);
    expect(overFolder.message).toMatch(
      /^webdav put 'dir': PUT \/dav\/errors\/[-0-9a-f]+\/dir returned 409: a folder has this key/,
    );
    expectNoSecret(overFolder);

    // Apache answers a PUT below an object with 400; the walk up finds the object.
    await storage.put("file", "x");
    const below = await failure(storage.put("file/child", "y"));
    expect(below.code).toBe("Conflict");
    expect(below.message).toMatch(
      /^webdav put 'file\/child': PUT \/dav\/errors\/[-0-9a-f]+\/file\/child returned 400: 'file' is an object, not a folder/,
    );
    expect(below.hint).toContain("parents are folders");

    const proxied = await storageOn(proxy.url);
    await proxied.put("a.bin", "x");
    proxy.add({ method: "GET", status: 409, body: "conflicting state", times: 1 });
    const err = await failure(proxied.get("a.bin"));
    expect(err.code).toBe("Conflict");
    expect(err.status).toBe(409);
    expect(err.message).toMatch(
      /GET \/dav\/errors\/[-0-9a-f]+\/a\.bin returned 409 Conflict: the request conflicts with the server's state; .* \(the server said: conflicting state\)/,
    );
    expectNoSecret(err);
  });

  it("412 is AlreadyExists (Apache honours If-None-Match: *)", async () => {
    tested.add(412);
    const storage = await storageOn(apache.url, { atomicPut: false, conditionalPut: true });
    await storage.put("once.txt", "first");
    proxy.requests.length = 0;
    const err = await failure(storage.put("once.txt", "second", { ifNotExists: true }));
    expect(err.code).toBe("AlreadyExists");
    expect(err.status).toBe(412);
    expect(err.message).toMatch(
      /^webdav put 'once\.txt': PUT \/dav\/errors\/[-0-9a-f]+\/once\.txt returned 412 Precondition Failed: an object with this key already exists/,
    );
    expect(await (await storage.get("once.txt")).text()).toBe("first");
    expectNoSecret(err);
  });

  it("423 Locked is Conflict, retried first since locks are usually brief", async () => {
    tested.add(423);
    const storage = await storageOn(proxy.url, { atomicPut: false });
    await storage.put("locked.txt", "old");
    const lockUrl = `${apache.url}/${storage.location.split("/dav/")[1]}/locked.txt`;
    const lock = await fetch(lockUrl, {
      method: "LOCK",
      headers: {
        authorization: `Basic ${basicHeader}`,
        timeout: "Second-60",
        "content-type": "application/xml",
      },
      body: '<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>another client</D:owner></D:lockinfo>',
    });
    expect(lock.status).toBe(200);
    const token = lock.headers.get("lock-token")!;
    await lock.arrayBuffer();
    proxy.requests.length = 0;
    try {
      const err = await failure(storage.put("locked.txt", "new"));
      expect(err.code).toBe("Conflict");
      expect(err.status).toBe(423);
      expect(err.retryable).toBe(true);
      expect(err.message).toMatch(
        /^webdav put 'locked\.txt': PUT \/dav\/errors\/[-0-9a-f]+\/locked\.txt returned 423 Locked: the resource is locked by another client/,
      );
      expect(err.hint).toContain("lock");
      expect(proxy.requests.filter((r) => r.method === "PUT")).toHaveLength(2);
      expectNoSecret(err);
    } finally {
      await fetch(lockUrl, {
        method: "UNLOCK",
        headers: { authorization: `Basic ${basicHeader}`, "lock-token": token },
      });
    }
    expect(await (await storage.get("locked.txt")).text()).toBe("old");
  });

  it("507 Insufficient Storage is QuotaExceeded", async () => {
    tested.add(507);
    const storage = await storageOn(proxy.url);
    proxy.add({ method: "PUT", status: 507, body: "quota exceeded for stowage", times: 1 });
    const err = await failure(storage.put("big.bin", new Uint8Array(1000)));
    expect(err.code).toBe("QuotaExceeded");
    expect(err.status).toBe(507);
    expect(err.message).toMatch(
      /^webdav put 'big\.bin': PUT \/dav\/errors\/[-0-9a-f]+\/big\.bin returned 507 Insufficient Storage: the server has no space left for this object \(the server said: quota exceeded for stowage\) \(free some space/,
    );
    expect(err.hint).toContain("quota");
    await expect(storage.stat("big.bin")).rejects.toMatchObject({ code: "NotFound" });
    expectNoSecret(err);
  });

  it("5xx is Unavailable, retried, and carries Retry-After", async () => {
    const storage = await storageOn(proxy.url);
    proxy.requests.length = 0;
    proxy.add({
      method: "PROPFIND",
      status: 503,
      headers: { "retry-after": "0" },
      body: "maintenance",
      times: 2,
    });
    const err = await failure(storage.stat("a.txt"));
    expect(err.code).toBe("Unavailable");
    expect(err.retryable).toBe(true);
    expect(err.retryAfterMs).toBe(0);
    expect(err.message).toMatch(
      /^webdav stat 'a\.txt': PROPFIND \/dav\/errors\/[-0-9a-f]+\/a\.txt returned 503 Service Unavailable: the server failed to answer \(the server said: maintenance\) \(try again later/,
    );
    expect(proxy.requests.filter((r) => r.method === "PROPFIND")).toHaveLength(2);
    expectNoSecret(err);

    proxy.add({ method: "GET", status: 500, times: 2 });
    await storage.put("b.txt", "b");
    const internal = await failure(storage.get("b.txt"));
    expect(internal.code).toBe("Unavailable");
    expect(internal.message).toMatch(
      /GET \/dav\/errors\/[-0-9a-f]+\/b\.txt returned 500 Internal Server Error: the server failed to answer \(try again later/,
    );
  });

  it("network failures are Unavailable: a refused connection, a connection reset", async () => {
    const closed = createWebDavStorage({
      url: `http://127.0.0.1:${await freePort()}/dav`,
      auth: basicCredentials({ username, password }),
      retry: false,
    });
    opened.push(closed);
    const refused = await failure(closed.stat("a.txt"));
    expect(refused.code).toBe("Unavailable");
    expect(refused.message).toMatch(
      /^webdav stat 'a\.txt': PROPFIND \/dav\/a\.txt: the connection was refused \(ECONNREFUSED\)$/,
    );
    expectNoSecret(refused);

    const storage = await storageOn(proxy.url, { retry: false });
    proxy.add({ method: "PROPFIND", reset: true, times: 1 });
    const reset = await failure(storage.stat("a.txt"));
    expect(reset.code).toBe("Unavailable");
    expect(reset.message).toMatch(
      /^webdav stat 'a\.txt': PROPFIND \/dav\/errors\/[-0-9a-f]+\/a\.txt: the connection (was reset|was closed by the server|closed before the body ended) \(\w+\)$/,
    );
    expectNoSecret(reset);
  });

  it("every row of the table has a test above", () => {
    expect([...tested].sort()).toEqual(Object.keys(statusTable).map(Number).sort());
  });
});
