import { createHash } from "node:crypto";
import { isStorageError, type StorageError } from "@stowage/core";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type FaultProxy, startFaultProxy } from "./support/fault-proxy.js";
import { bytesOf, openStorage } from "./support/fixture.js";
import { type RunningS3rver, startS3rver } from "./support/s3rver.js";

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

const md5 = (bytes: Uint8Array) => createHash("md5").update(bytes).digest("hex");

async function failure(promise: Promise<unknown>): Promise<StorageError> {
  try {
    await promise;
  } catch (err) {
    if (isStorageError(err)) return err;
    throw err;
  }
  throw new Error("expected the call to fail");
}

describe("get", () => {
  const data = bytesOf(100_000, 7);

  it("sends a Range header and reports the whole object's size in the entry", async () => {
    const storage = openStorage(proxy.endpoint);
    await storage.put("r.bin", data);
    const download = await storage.get("r.bin", { range: { offset: 10, length: 20 } });
    expect(await download.bytes()).toEqual(data.subarray(10, 30));
    expect(download.entry.size).toBe(data.byteLength);
    expect(proxy.requests.find((r) => r.method === "GET" && r.url.includes("r.bin"))!.headers.range).toBe(
      "bytes=10-29",
    );
  });

  it("returns exactly the first byte for { offset: 0, length: 1 } (s3rver answers bytes=0-0 with the whole object)", async () => {
    const storage = openStorage(server.endpoint);
    await storage.put("first.bin", data);
    const bytes = await (await storage.get("first.bin", { range: { offset: 0, length: 1 } })).bytes();
    expect(bytes).toEqual(data.subarray(0, 1));
  });

  it("cuts the object down when a server ignores the Range header", async () => {
    const storage = openStorage(proxy.endpoint);
    await storage.put("ignored.bin", data);
    proxy.add({
      match: (r) => r.method === "GET" && r.url.includes("ignored.bin"),
      dropRequestHeaders: ["range"],
    });
    const bytes = await (
      await storage.get("ignored.bin", { range: { offset: 70_000, length: 1_000 } })
    ).bytes();
    expect(bytes).toEqual(data.subarray(70_000, 71_000));
  });

  it("reads nothing from an offset at or past the end", async () => {
    const storage = openStorage(server.endpoint);
    await storage.put("end.bin", data);
    expect(
      (await (await storage.get("end.bin", { range: { offset: data.byteLength } })).bytes()).byteLength,
    ).toBe(0);
    expect(
      (await (await storage.get("end.bin", { range: { offset: data.byteLength + 50, length: 5 } })).bytes())
        .byteLength,
    ).toBe(0);
  });

  it("reads nothing for a zero length, and still says NotFound for a missing key", async () => {
    const storage = openStorage(server.endpoint);
    await storage.put("zero.bin", data);
    const download = await storage.get("zero.bin", { range: { offset: 5, length: 0 } });
    expect((await download.bytes()).byteLength).toBe(0);
    expect(download.entry.size).toBe(data.byteLength);
    expect((await failure(storage.get("absent.bin", { range: { offset: 0, length: 0 } }))).code).toBe(
      "NotFound",
    );
  });

  it("reads an empty object, whole and from offset 0", async () => {
    const storage = openStorage(server.endpoint);
    await storage.put("empty.bin", new Uint8Array(0));
    expect((await (await storage.get("empty.bin")).bytes()).byteLength).toBe(0);
    expect((await (await storage.get("empty.bin", { range: { offset: 0 } })).bytes()).byteLength).toBe(0);
  });

  it("verifies a whole read against the ETag's MD5 and errors the stream with Integrity on a mismatch", async () => {
    const storage = openStorage(proxy.endpoint);
    await storage.put("v.bin", data);
    const download = await storage.get("v.bin");
    expect(download.entry.hashes).toEqual({ md5: md5(data) });
    expect(await download.bytes()).toEqual(data);
    proxy.add({
      match: (r) => r.method === "GET" && r.url.includes("v.bin"),
      responseHeaders: { etag: '"0123456789abcdef0123456789abcdef"' },
    });
    const tampered = await storage.get("v.bin");
    const error = await failure(tampered.bytes());
    expect(error.code).toBe("Integrity");
    expect(error.message).toContain(
      `the md5 of the received bytes (${md5(data)}) differs from the stored one (0123456789abcdef0123456789abcdef)`,
    );
  });

  it("does not treat an SSE-KMS or multipart ETag as an MD5", async () => {
    const storage = openStorage(proxy.endpoint);
    await storage.put("kms.bin", data);
    proxy.add({
      match: (r) => r.method === "GET",
      responseHeaders: { "x-amz-server-side-encryption": "aws:kms" },
    });
    const kms = await storage.get("kms.bin");
    expect(kms.entry.hashes?.md5).toBeUndefined();
    expect(await kms.bytes()).toEqual(data);
    proxy.reset();
    proxy.add({
      match: (r) => r.method === "HEAD",
      responseHeaders: { etag: '"9b2cf535f27731c974343645a3985328-3"' },
    });
    const stat = await storage.stat("kms.bin");
    expect(stat.etag).toBe('"9b2cf535f27731c974343645a3985328-3"');
    expect(stat.hashes).toBeUndefined();
  });
});
