import { PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type FaultProxy, startFaultProxy } from "./support/fault-proxy.js";
import { collect, openStorage } from "./support/fixture.js";
import {
  type RunningS3rver,
  S3RVER_ACCESS_KEY_ID,
  S3RVER_SECRET_ACCESS_KEY,
  startS3rver,
} from "./support/s3rver.js";

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

const listRequests = () => proxy.requests.filter((r) => r.method === "GET" && r.url.includes("list-type=2"));

describe("listing", () => {
  it("lists 1,050 keys with the default page size (1,000) exactly once each, direct and recursive", {
    timeout: 120_000,
  }, async () => {
    const storage = openStorage(proxy.endpoint);
    const keys = Array.from({ length: 1050 }, (_, i) => `big/k${String(i).padStart(5, "0")}`);
    let t = performance.now();
    for (let i = 0; i < keys.length; i += 32) {
      await Promise.all(keys.slice(i, i + 32).map((key) => storage.put(key, "")));
    }
    console.log("PUTS", performance.now() - t);
    t = performance.now();
    proxy.reset();
    const direct = (await collect(storage.list("big"))).map((e) => e.key);
    expect(direct).toHaveLength(1050);
    expect(new Set(direct).size).toBe(1050);
    expect([...direct].sort()).toEqual(keys);
    // Two pages: 1,000 then 50 (the continuation token needs s3rver's legacy DES cipher).
    console.log("LIST", performance.now() - t);
    expect(listRequests()).toHaveLength(2);
    expect(listRequests()[0]!.url).toContain("max-keys=1000");
    expect(listRequests()[1]!.url).toContain("continuation-token=");
    const recursive = (await collect(storage.list("", { recursive: true }))).map((e) => e.key);
    expect(new Set(recursive).size).toBe(1050);
    expect([...recursive].sort()).toEqual(keys);
  });

  it("fetches the next page only when the iterator reaches it", async () => {
    const storage = openStorage(proxy.endpoint, { pageSize: 3 });
    await Promise.all(Array.from({ length: 10 }, (_, i) => storage.put(`lazy/${i}`, "x")));
    proxy.reset();
    const iterator = storage.list("lazy")[Symbol.asyncIterator]();
    for (let i = 0; i < 3; i++) expect((await iterator.next()).done).toBe(false);
    expect(listRequests()).toHaveLength(1);
    expect((await iterator.next()).done).toBe(false);
    expect(listRequests()).toHaveLength(2);
    await iterator.return?.();
    expect(listRequests()).toHaveLength(2);
  });

  it("lists direct children with the '/' delimiter and everything below without it", async () => {
    const storage = openStorage(proxy.endpoint);
    await storage.put("d/a.txt", "a");
    await storage.put("d/sub/b.txt", "b");
    proxy.reset();
    expect((await collect(storage.list("d"))).map((e) => `${e.kind}:${e.key}`).sort()).toEqual([
      "file:d/a.txt",
      "folder:d/sub",
    ]);
    expect(listRequests()[0]!.url).toContain("delimiter=%2F");
    proxy.reset();
    expect((await collect(storage.list("d", { recursive: true }))).map((e) => e.key).sort()).toEqual([
      "d/a.txt",
      "d/sub/b.txt",
    ]);
    expect(listRequests()[0]!.url).not.toContain("delimiter");
  });

  it("reports a folder once even when the server repeats its prefix on the next page", async () => {
    // s3rver does not count common prefixes towards max-keys, so with two keys a page, "c/" is sent
    // with page one (a, b) and again with page two (d).
    const storage = openStorage(proxy.endpoint, { pageSize: 2 });
    for (const key of ["a", "b", "c/1", "d"]) await storage.put(`rep/${key}`, key);
    const entries = await collect(storage.list("rep"));
    expect(entries.map((e) => `${e.kind}:${e.key}`).sort()).toEqual([
      "file:rep/a",
      "file:rep/b",
      "file:rep/d",
      "folder:rep/c",
    ]);
    expect(listRequests().length).toBeGreaterThanOrEqual(2);
  });

  it("skips folder-marker objects ('dir/') that other tools create, and shows the folder", async () => {
    const storage = openStorage(server.endpoint);
    const client = new S3Client({
      region: "us-east-1",
      endpoint: server.endpoint,
      forcePathStyle: true,
      credentials: { accessKeyId: S3RVER_ACCESS_KEY_ID, secretAccessKey: S3RVER_SECRET_ACCESS_KEY },
    });
    await client.send(
      new PutObjectCommand({ Bucket: storage.bucket, Key: `${storage.prefix}/marked/`, Body: "" }),
    );
    client.destroy();
    await storage.put("marked/inside.txt", "x");
    expect((await collect(storage.list())).map((e) => `${e.kind}:${e.key}`)).toEqual(["folder:marked"]);
    expect((await collect(storage.list("", { recursive: true }))).map((e) => e.key)).toEqual([
      "marked/inside.txt",
    ]);
  });

  it("carries size, modification time, ETag and the MD5 the ETag stands for", async () => {
    const storage = openStorage(server.endpoint);
    await storage.put("meta.txt", "hello");
    const [entry] = await collect(storage.list());
    expect(entry).toMatchObject({
      key: "meta.txt",
      kind: "file",
      size: 5,
      hashes: { md5: "5d41402abc4b2a76b9719d911017c592" },
    });
    expect(entry!.modified).toBeInstanceOf(Date);
    expect(entry!.etag).toBe('"5d41402abc4b2a76b9719d911017c592"');
  });
});
