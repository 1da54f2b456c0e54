import { randomUUID } from "node:crypto";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { basicCredentials } from "@stowage/auth";
import { type Entry, isStorageError, type StorageError, type TokenSource } from "@stowage/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createWebDavStorage, type WebDavStorage, type WebDavStorageOptions } from "../src/index.js";
import { type FaultProxy, startFaultProxy } from "./support/fault-proxy.js";
import {
  password,
  startApache,
  startRclone,
  startWebdavServer,
  type TestServer,
  username,
} from "./support/servers.js";

const servers: Record<TestServer["name"], TestServer> = {} as Record<TestServer["name"], TestServer>;
/** What each server needs, as in conformance.test.ts. */
const serverOptions: Record<TestServer["name"], Partial<WebDavStorageOptions>> = {
  "webdav-server": { reservedCharacters: "\\" },
  apache: {},
  rclone: { conditionalPut: true },
};
const opened: WebDavStorage[] = [];
const proxies: FaultProxy[] = [];

beforeAll(async () => {
  for (const server of await Promise.all([startWebdavServer(), startApache(), startRclone()]))
    servers[server.name] = server;
}, 60_000);

afterAll(async () => {
  await Promise.all(opened.map((storage) => storage.close()));
  await Promise.all(proxies.map((proxy) => proxy.close()));
  await Promise.all(Object.values(servers).map((server) => server.stop()));
}, 30_000);

async function storageOn(
  name: TestServer["name"],
  options: Partial<WebDavStorageOptions> = {},
): Promise<WebDavStorage> {
  const storage = createWebDavStorage({
    url: servers[name].url,
    root: `behaviour/${randomUUID()}`,
    auth: basicCredentials({ username, password }),
    ...serverOptions[name],
    ...options,
  });
  opened.push(storage);
  await storage.createRoot();
  return storage;
}

async function proxyFor(name: TestServer["name"]): Promise<FaultProxy> {
  const proxy = await startFaultProxy(servers[name].url);
  proxies.push(proxy);
  return proxy;
}

async function collect(iterable: AsyncIterable<Entry>): Promise<Entry[]> {
  const out: Entry[] = [];
  for await (const entry of iterable) out.push(entry);
  return out;
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

/** The local folder the server keeps a storage's root in. */
function rootFolder(name: TestServer["name"], storage: WebDavStorage): string {
  const root = new URL(storage.location.replace(/^webdav/, "http")).pathname
    .split("/")
    .filter(Boolean)
    .map(decodeURIComponent);
  return join(servers[name].folder, ...(name === "apache" ? root.slice(1) : root));
}

describe.each(["webdav-server", "apache", "rclone"] as const)("on %s", (name) => {
  it("a put over a folder is Conflict and keeps the folder's objects (MOVE would delete them)", async () => {
    const storage = await storageOn(name);
    await storage.put("dir/a.txt", "a");
    const err = await failure(storage.put("dir", "object"));
    expect(err.code).toBe("Conflict");
    expect(err.message).toContain("a folder has this key");
    expect(await (await storage.get("dir/a.txt")).text()).toBe("a");
  });

  it("a delete of a folder's key is Conflict and keeps its objects", async () => {
    const storage = await storageOn(name);
    await storage.put("dir/a.txt", "a");
    const err = await failure(storage.delete("dir"));
    expect(err.code).toBe("Conflict");
    expect(err.message).toContain("names a folder");
    expect(await (await storage.get("dir/a.txt")).text()).toBe("a");
  });

  it("stat and get of a folder's key are NotFound", async () => {
    const storage = await storageOn(name);
    await storage.put("dir/a.txt", "a");
    expect((await failure(storage.stat("dir"))).code).toBe("NotFound");
    const err = await failure(storage.get("dir"));
    expect(err.code).toBe("NotFound");
  });

  it("a temporary upload is never listed, and an aborted one is cleaned up", async () => {
    const storage = await storageOn(name);
    await storage.put("keep.txt", "k");
    const controller = new AbortController();
    let listedMidway: string[] = [];
    async function* slow(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < 40; i++) {
        yield new Uint8Array(64 * 1024).fill(i);
        if (i === 20) {
          listedMidway = (await collect(storage.list("", { recursive: true }))).map((e) => e.key);
          controller.abort();
        }
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
    }
    const err = await failure(storage.put("big.bin", slow(), { signal: controller.signal }));
    expect(err.code).toBe("Aborted");
    expect(listedMidway).toEqual(["keep.txt"]);
    // The server may finish writing the aborted temporary object a moment after the DELETE.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect((await readdir(rootFolder(name, storage))).sort()).toEqual(["keep.txt"]);
  });

  it("creates a chain of missing parents, then sends the put again", async () => {
    const storage = await storageOn(name);
    await storage.put("a/b/c/d/e.txt", "deep");
    expect(await (await storage.get("a/b/c/d/e.txt")).text()).toBe("deep");
    expect((await collect(storage.list("a/b"))).map((e) => `${e.kind}:${e.key}`)).toEqual(["folder:a/b/c"]);
  });

  it("passes the server's ETag through on stat, list and get, and on a direct put that answers one", async () => {
    const storage = await storageOn(name);
    const put = await storage.put("e.txt", "etag");
    // No ETag from an atomic put: the one answered for the temporary name need not be the object's.
    expect(put).toEqual({ key: "e.txt", kind: "file", size: 4 });
    const stat = await storage.stat("e.txt");
    expect(stat.etag).toBeTruthy();
    const listed = (await collect(storage.list())).find((e) => e.key === "e.txt");
    expect(listed?.etag).toBe(stat.etag);
    // webdav-server sends no ETag on GET; Apache's is weak for a second after a write.
    const got = (await storage.get("e.txt")).entry.etag;
    if (name === "webdav-server") expect(got).toBeUndefined();
    else expect(got?.replace(/^W\//, "")).toBe(stat.etag?.replace(/^W\//, ""));

    // Only rclone serve answers a PUT with an ETag; Apache and webdav-server do not.
    const direct = await storageOn(name, { atomicPut: false });
    const written = await direct.put("d.txt", "direct");
    if (name === "rclone") expect(written.etag).toBe((await direct.stat("d.txt")).etag);
    else expect(written.etag).toBeUndefined();
  });
});

describe("Content-Length and chunked puts (recorded in front of Apache)", () => {
  it("sends Content-Length when the size is known, and chunked otherwise", async () => {
    const proxy = await proxyFor("apache");
    const storage = createWebDavStorage({
      url: proxy.url,
      root: `behaviour/${randomUUID()}`,
      auth: basicCredentials({ username, password }),
      bufferSize: 1024,
      createRoot: true,
    });
    opened.push(storage);
    const data = new Uint8Array(10_000).fill(7);
    async function* pieces() {
      for (let i = 0; i < data.length; i += 1000) yield data.subarray(i, i + 1000);
    }
    proxy.requests.length = 0;
    await storage.put("sized.bin", pieces(), { size: data.length });
    await storage.put("unsized.bin", pieces());
    await storage.put("small.bin", data.subarray(0, 100));
    const puts = proxy.requests.filter((r) => r.method === "PUT");
    expect(puts.map((r) => [r.headers["content-length"], r.headers["transfer-encoding"]])).toEqual([
      ["10000", undefined],
      [undefined, "chunked"],
      ["100", undefined],
    ]);
    expect((await storage.stat("unsized.bin")).size).toBe(10_000);
  });

  it("makes missing parents bottom-up: one MKCOL per missing level, none for known folders", async () => {
    const proxy = await proxyFor("apache");
    const storage = createWebDavStorage({
      url: proxy.url,
      root: `behaviour/${randomUUID()}`,
      auth: basicCredentials({ username, password }),
    });
    opened.push(storage);
    await storage.createRoot();
    proxy.requests.length = 0;
    await storage.put("x/y/z.txt", "1");
    await storage.put("x/y/w.txt", "2");
    const calls = proxy.requests.map((r) => `${r.method} ${r.path.split("/").slice(-2).join("/")}`);
    expect(calls.filter((c) => c.startsWith("MKCOL"))).toEqual(["MKCOL y/", "MKCOL x/", "MKCOL y/"]);
    // The second put goes straight to its known folder, one PUT (mod_dav_fs's PUT is atomic).
    expect(calls.at(-1)).toBe("PUT y/w.txt");
  });
});

describe("atomicPut", () => {
  it("is one PUT on Apache, whose mod_dav_fs writes a hidden temporary file; PUT and MOVE elsewhere", async () => {
    for (const name of ["apache", "rclone", "webdav-server"] as const) {
      const proxy = await proxyFor(name);
      const storage = createWebDavStorage({
        url: proxy.url,
        root: `behaviour/${randomUUID()}`,
        auth: basicCredentials({ username, password }),
        createRoot: true,
        ...serverOptions[name],
      });
      opened.push(storage);
      await storage.put("first.txt", "1");
      proxy.requests.length = 0;
      await storage.put("second.txt", "2");
      const methods = proxy.requests.map((r) => r.method);
      expect(methods, name).toEqual(name === "apache" ? ["PUT"] : ["PUT", "MOVE"]);
    }
  });

  it("on Apache, an object being replaced stays readable whole, and an aborted replacement leaves it", async () => {
    const storage = await storageOn("apache");
    const old = new Uint8Array(100_000).fill(1);
    await storage.put("obj.bin", old);
    const controller = new AbortController();
    let seenMidway: Uint8Array | undefined;
    let listedMidway: string[] = [];
    async function* slow(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < 40; i++) {
        yield new Uint8Array(64 * 1024).fill(2);
        if (i === 20) {
          seenMidway = await (await storage.get("obj.bin")).bytes();
          listedMidway = (await collect(storage.list())).map((e) => e.key);
          controller.abort();
        }
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
    }
    expect((await failure(storage.put("obj.bin", slow(), { signal: controller.signal }))).code).toBe(
      "Aborted",
    );
    expect(Buffer.from(seenMidway!).equals(Buffer.from(old))).toBe(true);
    expect(listedMidway).toEqual(["obj.bin"]);
    expect(Buffer.from(await (await storage.get("obj.bin")).bytes()).equals(Buffer.from(old))).toBe(true);
  });
});

describe("ranges", () => {
  it("cuts the range out when a server ignores Range", async () => {
    const proxy = await proxyFor("apache");
    const storage = createWebDavStorage({
      url: proxy.url,
      root: `behaviour/${randomUUID()}`,
      auth: basicCredentials({ username, password }),
      createRoot: true,
    });
    opened.push(storage);
    const data = Uint8Array.from({ length: 5000 }, (_, i) => i % 251);
    await storage.put("r.bin", data);
    proxy.add({ method: "GET", dropHeaders: ["range"] });
    const part = await (await storage.get("r.bin", { range: { offset: 1234, length: 1000 } })).bytes();
    expect(Buffer.from(part).equals(Buffer.from(data.subarray(1234, 2234)))).toBe(true);
    const tail = await (await storage.get("r.bin", { range: { offset: 4990 } })).bytes();
    expect(Buffer.from(tail).equals(Buffer.from(data.subarray(4990)))).toBe(true);
  });
});

describe("ifNotExists", () => {
  it("is atomic on rclone serve with atomicPut: exactly one of 8 writers wins, 25 rounds in a row", async () => {
    const storage = await storageOn("rclone");
    expect(storage.capabilities.conditionalPut).toBe(true);
    for (let round = 0; round < 25; round++) {
      const results = await Promise.allSettled(
        Array.from({ length: 8 }, (_, i) =>
          storage.put(`race/${round}.txt`, `writer ${i}`, { ifNotExists: true }),
        ),
      );
      const won = results.filter((r) => r.status === "fulfilled");
      expect(won, `round ${round}`).toHaveLength(1);
      for (const r of results)
        if (r.status === "rejected") expect((r.reason as StorageError).code).toBe("AlreadyExists");
    }
  });

  it("Apache and webdav-server claim no conditionalPut by default, and still refuse an existing key", async () => {
    for (const name of ["apache", "webdav-server"] as const) {
      const storage = await storageOn(name);
      expect(storage.capabilities.conditionalPut).toBe(false);
      await storage.put("once.txt", "first");
      expect((await failure(storage.put("once.txt", "second", { ifNotExists: true }))).code).toBe(
        "AlreadyExists",
      );
      expect(await (await storage.get("once.txt")).text()).toBe("first");
    }
  });
});

describe("folders made concurrently by two clients", () => {
  it("Apache's 403 on a MKCOL race counts as success once the folder is seen", async () => {
    const root = `behaviour/${randomUUID()}`;
    const clients = [0, 1].map(() => {
      const storage = createWebDavStorage({
        url: servers.apache.url,
        root,
        auth: basicCredentials({ username, password }),
        createRoot: true,
      });
      opened.push(storage);
      return storage;
    });
    for (let round = 0; round < 10; round++) {
      await Promise.all(
        clients.flatMap((storage, c) =>
          Array.from({ length: 4 }, (_, i) => storage.put(`r${round}/a/b/${c}-${i}.txt`, "x")),
        ),
      );
      expect((await collect(clients[0]!.list(`r${round}/a/b`))).length).toBe(8);
    }
  });
});

describe("bearer tokens", () => {
  it("sends Authorization: Bearer, and on a 401 invalidates the token and retries once with a new one", async () => {
    const proxy = await proxyFor("apache");
    const upstream = `Basic ${Buffer.from(`${username}:${password}`).toString("base64")}`;
    const valid = new Set(["fresh-token-2"]);
    proxy.authorize = (header) =>
      header && valid.has(header.replace(/^Bearer /, "")) ? upstream : undefined;
    const tokens = ["stale-token-1", "fresh-token-2"];
    const invalidated: string[] = [];
    const source: TokenSource = {
      kind: "test",
      getToken: async () => ({ token: tokens[0]! }),
      invalidate(token) {
        invalidated.push(token);
        if (tokens[0] === token) tokens.shift();
      },
    };
    const storage = createWebDavStorage({
      url: proxy.url,
      root: `behaviour/${randomUUID()}`,
      auth: source,
      createRoot: true,
    });
    opened.push(storage);
    proxy.requests.length = 0;
    await storage.put("t.txt", "token");
    expect(invalidated).toEqual(["stale-token-1"]);
    expect(proxy.requests[0]?.headers.authorization).toBe("Bearer stale-token-1");
    expect(proxy.requests[1]?.headers.authorization).toBe("Bearer fresh-token-2");
    expect(await (await storage.get("t.txt")).text()).toBe("token");

    valid.clear();
    const err = await failure(storage.stat("t.txt"));
    expect(err.code).toBe("Unauthenticated");
    expect(err.message).not.toContain("fresh-token-2");
  });
});
