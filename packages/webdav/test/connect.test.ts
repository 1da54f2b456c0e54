import { randomUUID } from "node:crypto";
import { type AddressInfo, createServer } from "node:net";
import { inspect } from "node:util";
import { basicCredentials } from "@stowage/auth";
import { connect, isStorageError, type StorageError } from "@stowage/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createWebDavStorage, type WebDavStorageOptions } from "../src/index.js";
import { type FaultProxy, startFaultProxy } from "./support/fault-proxy.js";
import { password, startApache, type TestServer, username } from "./support/servers.js";

let apache: TestServer;
let proxy: FaultProxy;
let hostAndPath: string;

beforeAll(async () => {
  apache = await startApache();
  proxy = await startFaultProxy(apache.url);
  hostAndPath = apache.url.replace(/^http:\/\//, "");
}, 60_000);

afterAll(async () => {
  await proxy?.close();
  await apache?.stop();
}, 30_000);

function configFailure(call: () => unknown): StorageError {
  try {
    call();
  } catch (err) {
    if (isStorageError(err, "InvalidConfig")) return err;
    throw err;
  }
  throw new Error("expected InvalidConfig");
}

describe("connect()", () => {
  it("opens webdav:// over http with username and password parameters; location keeps no secret", async () => {
    const root = `connect/${randomUUID()}`;
    const storage = await connect(`webdav://${hostAndPath}/${root}?username=${username}&create-root=true`, {
      password,
    });
    try {
      expect(storage.provider).toBe("webdav");
      expect(storage.location).toBe(`webdav://${hostAndPath}/${root}`);
      await storage.put("a.txt", "over connect");
      expect(await (await storage.get("a.txt")).text()).toBe("over connect");
      for (const text of [
        storage.location,
        JSON.stringify(storage),
        inspect(storage, { depth: 6 }),
        String(storage),
      ]) {
        expect(text).not.toContain(password);
      }
    } finally {
      await storage.close();
    }
  });

  it("takes credentials from the URL's user info, percent-decoded once", async () => {
    const storage = await connect(
      `webdav://${username}:${encodeURIComponent(password)}@${hostAndPath}/connect/${randomUUID()}?create-root=true`,
    );
    try {
      expect(storage.location).not.toContain(password);
      expect(storage.location).not.toContain(username);
      const report = await storage.test({ write: true });
      expect(report.ok, JSON.stringify(report)).toBe(true);
    } finally {
      await storage.close();
    }
  });

  it("sends a token parameter as a bearer token", async () => {
    const upstream = `Basic ${Buffer.from(`${username}:${password}`).toString("base64")}`;
    proxy.authorize = (header) => (header === "Bearer pat-0123456789" ? upstream : undefined);
    const storage = await connect(
      `${proxy.url.replace(/^http/, "webdav")}/connect/${randomUUID()}?create-root=true`,
      {
        token: "pat-0123456789",
      },
    );
    try {
      await storage.put("t.txt", "t");
      expect(proxy.requests.at(-1)?.headers.authorization).toBe("Bearer pat-0123456789");
    } finally {
      proxy.authorize = undefined;
      await storage.close();
    }
  });

  it("speaks https for webdavs:// and plain http for webdav://", async () => {
    // A listener that records how each client opens the conversation, then hangs up.
    const openings: number[] = [];
    const listener = createServer((socket) =>
      socket.once("data", (data) => openings.push(data[0]!) && socket.destroy()),
    );
    await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", () => resolve()));
    const { port } = listener.address() as AddressInfo;
    try {
      for (const scheme of ["webdavs", "webdav"]) {
        const storage = await connect(`${scheme}://127.0.0.1:${port}/remote.php/dav/files/me`, {
          retry: { attempts: 1 },
        });
        expect(storage.location).toBe(`${scheme}://127.0.0.1:${port}/remote.php/dav/files/me`);
        await expect(storage.stat("a.txt")).rejects.toMatchObject({ code: "Unavailable" });
        await storage.close();
      }
    } finally {
      listener.close();
    }
    // 0x16 starts a TLS handshake; "P" starts "PROPFIND".
    expect(openings).toEqual([0x16, "P".charCodeAt(0)]);
  });

  it("refuses half or doubled credentials and unknown parameters with InvalidConfig", async () => {
    await expect(connect(`webdav://${hostAndPath}/x?username=me`)).rejects.toMatchObject({
      code: "InvalidConfig",
      message: expect.stringContaining("'username' is set without 'password'"),
    });
    const doubled = await connect(`webdav://${hostAndPath}/x?username=me&token=abcdef123456`, {
      password,
    }).catch((err: StorageError) => err);
    expect((doubled as StorageError).code).toBe("InvalidConfig");
    expect((doubled as StorageError).message).toContain("credentials are given more than once");
    expect((doubled as StorageError).message).not.toContain(password);
    await expect(connect(`webdav://${hostAndPath}/x?atomic-puts=false`)).rejects.toMatchObject({
      code: "InvalidConfig",
      hint: "did you mean 'atomic-put'?",
    });
  });
});

describe("createWebDavStorage options", () => {
  it("names a wrong option without echoing its value", () => {
    const err = configFailure(() => createWebDavStorage({ url: apache.url, bufferSize: -1 }));
    expect(err.message).toMatch(/^webdav open: option 'bufferSize': /);
    const auth = configFailure(() =>
      createWebDavStorage({
        url: apache.url,
        auth: { username, password } as unknown as WebDavStorageOptions["auth"],
      }),
    );
    expect(auth.message).toContain("option 'auth': expected basicCredentials(…) or a TokenSource");
    expect(auth.message).not.toContain(password);
    const unknown = configFailure(() =>
      createWebDavStorage({ url: apache.url, atomic: true } as unknown as WebDavStorageOptions),
    );
    expect(unknown.message).toContain("unknown option 'atomic'");
  });

  it("refuses a URL that is not an http(s) endpoint, or that has a query, without echoing it", () => {
    expect(configFailure(() => createWebDavStorage({ url: "ftp://host/x" })).message).toContain(
      "must be an http(s):// or webdav(s):// URL",
    );
    const query = configFailure(() => createWebDavStorage({ url: `http://me:${password}@host/dav?x=1` }));
    expect(query.message).toContain("query or fragment");
    expect(query.message).not.toContain(password);
    expect(
      configFailure(() => createWebDavStorage({ url: "http://host/x", reservedCharacters: "/" })).message,
    ).toContain("reservedCharacters");
  });

  it("refuses credentials given both in the URL and in auth", () => {
    const err = configFailure(() =>
      createWebDavStorage({
        url: `http://me:${password}@host/dav`,
        auth: basicCredentials({ username, password }),
      }),
    );
    expect(err.message).toContain("both in the URL and in 'auth'");
  });

  it("warns when credentials would travel over plain http to another host", () => {
    const warnings: string[] = [];
    const logger = {
      debug() {},
      info() {},
      error() {},
      warn: (_: object, msg?: string) => void warnings.push(msg ?? ""),
    };
    createWebDavStorage({
      url: "http://dav.example.com/x",
      auth: basicCredentials({ username, password }),
      logger,
    });
    createWebDavStorage({
      url: "http://127.0.0.1/x",
      auth: basicCredentials({ username, password }),
      logger,
    });
    createWebDavStorage({
      url: "https://dav.example.com/x",
      auth: basicCredentials({ username, password }),
      logger,
    });
    expect(warnings).toEqual(["credentials are sent over plain http; use https (webdavs://)"]);
  });
});
