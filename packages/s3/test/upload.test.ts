import { createHash } from "node:crypto";
import { subscribe, unsubscribe } from "node:diagnostics_channel";
import { isStorageError, type Logger, type StorageError } from "@stowage/core";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { MAX_PARTS, partSizeFor } from "../src/upload.js";
import { type FaultProxy, type SeenRequest, startFaultProxy } from "./support/fault-proxy.js";
import { bytesOf, MiB, openStorage, piecesOf } from "./support/fixture.js";
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
const isPart = (r: SeenRequest) => r.method === "PUT" && r.url.includes("partNumber=");
const isCreate = (r: SeenRequest) => r.method === "POST" && /[?&]uploads(=|&|$)/.test(r.url);
const isComplete = (r: SeenRequest) => r.method === "POST" && r.url.includes("uploadId=");
const isAbort = (r: SeenRequest) => r.method === "DELETE" && r.url.includes("uploadId=");
const isSinglePut = (r: SeenRequest) => r.method === "PUT" && !r.url.includes("uploadId=");
// s3rver lacks AbortMultipartUpload (it answers 405); the proxy answers as S3 does.
const answerAborts = () => proxy.add({ match: isAbort, respond: { status: 204 } });

async function failure(promise: Promise<unknown>): Promise<StorageError> {
  try {
    await promise;
  } catch (err) {
    if (isStorageError(err)) return err;
    throw err;
  }
  throw new Error("expected the call to fail");
}

function recordingLogger(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  return { warnings, debug() {}, info() {}, warn: (_obj, msg) => void warnings.push(msg ?? ""), error() {} };
}

describe("single and multipart puts", () => {
  it("puts a body of unknown length up to one part in one PutObject with its length", async () => {
    const storage = openStorage(proxy.endpoint, { partSize: 5 * MiB });
    const data = bytesOf(5 * MiB);
    const entry = await storage.put("one.bin", piecesOf(data));
    expect(entry).toMatchObject({ size: 5 * MiB, hashes: { md5: md5(data) } });
    const puts = proxy.requests.filter((r) => r.method === "PUT" || r.method === "POST");
    expect(puts).toHaveLength(1);
    expect(isSinglePut(puts[0]!)).toBe(true);
    expect(puts[0]!.headers["content-length"]).toBe(String(5 * MiB));
  });

  it("puts a larger body as a multipart upload of part-size parts, then reads back what was stored", async () => {
    const storage = openStorage(proxy.endpoint, { partSize: 5 * MiB });
    const data = bytesOf(11 * MiB + 3, 2);
    const entry = await storage.put("multi.bin", piecesOf(data));
    expect(proxy.requests.filter(isCreate)).toHaveLength(1);
    expect(proxy.requests.filter(isPart).map((r) => r.headers["content-length"])).toEqual([
      String(5 * MiB),
      String(5 * MiB),
      String(MiB + 3),
    ]);
    expect(proxy.requests.filter(isComplete)).toHaveLength(1);
    // The size (and here the MD5: s3rver's multipart ETag is a plain MD5) come from a HEAD after completing.
    expect(proxy.requests.at(-1)!.method).toBe("HEAD");
    expect(entry).toMatchObject({ key: "multi.bin", size: data.byteLength, hashes: { md5: md5(data) } });
    expect(md5(await (await storage.get("multi.bin")).bytes())).toBe(md5(data));
  });

  it("keeps at most queue-size parts in flight", { timeout: 60_000 }, async () => {
    const storage = openStorage(proxy.endpoint, { partSize: 5 * MiB, queueSize: 2 });
    proxy.add({ match: isPart, delayMs: 100 });
    await storage.put("queued.bin", piecesOf(bytesOf(31 * MiB)));
    expect(proxy.requests.filter(isPart)).toHaveLength(7);
    expect(proxy.maxInFlight).toBe(2);
  });

  it("grows the part size for large known sizes to stay within 10,000 parts", () => {
    expect(partSizeFor(undefined, 8 * MiB)).toBe(8 * MiB);
    expect(partSizeFor(8 * MiB * MAX_PARTS, 8 * MiB)).toBe(8 * MiB);
    const size = 100 * 1024 * MiB;
    const grown = partSizeFor(size, 8 * MiB);
    expect(grown).toBe(11 * MiB);
    expect(Math.ceil(size / grown)).toBeLessThanOrEqual(MAX_PARTS);
  });
});

describe("a failed or aborted multipart put", () => {
  it("aborting sends AbortMultipartUpload, rejects with Aborted and leaves no object", {
    timeout: 30_000,
  }, async () => {
    answerAborts();
    const storage = openStorage(proxy.endpoint, { partSize: 5 * MiB });
    const controller = new AbortController();
    async function* slow(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < 40; i++) {
        if (proxy.requests.some(isPart)) controller.abort();
        yield bytesOf(MiB, i);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    }
    const error = await failure(storage.put("aborted.bin", slow(), { signal: controller.signal }));
    expect(error.code).toBe("Aborted");
    expect(error.message).toBe("s3 put 'aborted.bin': the operation was aborted");
    const aborts = proxy.requests.filter(isAbort);
    expect(aborts).toHaveLength(1);
    const uploadId = new URL(aborts[0]!.url, "http://x").searchParams.get("uploadId");
    expect(proxy.requests.filter(isPart).every((r) => r.url.includes(`uploadId=${uploadId}`))).toBe(true);
    expect(proxy.requests.filter(isComplete)).toEqual([]);
    expect((await failure(storage.stat("aborted.bin"))).code).toBe("NotFound");
  });

  it("a part that keeps failing aborts the upload and reports the part's error", async () => {
    answerAborts();
    const storage = openStorage(proxy.endpoint, { partSize: 5 * MiB });
    proxy.add({
      match: (r) => isPart(r) && r.url.includes("partNumber=2"),
      respond: { status: 500, code: "InternalError", message: "We encountered an internal error." },
    });
    const error = await failure(storage.put("failing.bin", bytesOf(12 * MiB)));
    expect(error.code).toBe("Unavailable");
    expect(error.message).toBe(
      "s3 put 'failing.bin': the server failed the request (InternalError, HTTP 500)",
    );
    // Retried (three attempts), then aborted.
    expect(proxy.requests.filter((r) => isPart(r) && r.url.includes("partNumber=2"))).toHaveLength(3);
    expect(proxy.requests.filter(isAbort)).toHaveLength(1);
    expect(proxy.requests.filter(isComplete)).toEqual([]);
  });

  it("a body that ends short of its declared size fails with Integrity before anything is committed", async () => {
    answerAborts();
    const storage = openStorage(proxy.endpoint, { partSize: 5 * MiB });
    const error = await failure(storage.put("short.bin", piecesOf(bytesOf(11 * MiB)), { size: 12 * MiB }));
    expect(error.code).toBe("Integrity");
    expect(error.message).toContain("the body ended after 11534336 bytes; 12582912 were declared");
    expect(proxy.requests.filter(isAbort)).toHaveLength(1);
    expect(proxy.requests.filter(isComplete)).toEqual([]);
  });

  it("a body that fails mid-way aborts the upload", async () => {
    answerAborts();
    const storage = openStorage(proxy.endpoint, { partSize: 5 * MiB });
    async function* broken(): AsyncGenerator<Uint8Array> {
      yield bytesOf(6 * MiB);
      yield bytesOf(MiB);
      throw new Error("disk read failed");
    }
    const error = await failure(storage.put("broken.bin", broken()));
    expect(error.message).toContain("disk read failed");
    expect(proxy.requests.filter(isAbort)).toHaveLength(1);
  });

  it("when AbortMultipartUpload itself fails, a warning is logged and the original error stands", async () => {
    // s3rver answers AbortMultipartUpload with 405 MethodNotAllowed.
    const logger = recordingLogger();
    const storage = openStorage(proxy.endpoint, { partSize: 5 * MiB, logger });
    proxy.add({
      match: (r) => isPart(r) && r.url.includes("partNumber=2"),
      respond: { status: 403, code: "AccessDenied", message: "Access Denied" },
    });
    const error = await failure(storage.put("unabortable.bin", bytesOf(12 * MiB)));
    expect(error.code).toBe("PermissionDenied");
    expect(proxy.requests.filter(isAbort)).toHaveLength(1);
    expect(logger.warnings).toEqual([
      "could not abort the multipart upload; its parts stay stored (and billed) until a lifecycle rule removes them",
    ]);
  });
});

describe("conditional puts", () => {
  it("sends If-None-Match: * on PutObject and CompleteMultipartUpload where the server honours it", async () => {
    const storage = openStorage(proxy.endpoint, { partSize: 5 * MiB, conditionalPut: true });
    await storage.put("c1.txt", "x", { ifNotExists: true });
    await storage.put("c2.bin", bytesOf(6 * MiB), { ifNotExists: true });
    expect(proxy.requests.filter(isSinglePut).map((r) => r.headers["if-none-match"])).toEqual(["*"]);
    expect(proxy.requests.filter(isComplete).map((r) => r.headers["if-none-match"])).toEqual(["*"]);
    // Atomic on the server: no existence check first.
    expect(proxy.requests.filter((r) => r.method === "HEAD").map((r) => r.url)).not.toContainEqual(
      expect.stringContaining("c1.txt"),
    );
  });

  it("checks then writes (HEAD, then a plain PUT) where it does not (s3rver ignores If-None-Match)", async () => {
    const storage = openStorage(proxy.endpoint, { conditionalPut: false });
    expect(storage.capabilities.conditionalPut).toBe(false);
    await storage.put("c3.txt", "x", { ifNotExists: true });
    const methods = proxy.requests.filter((r) => r.url.includes("c3.txt")).map((r) => r.method);
    expect(methods).toEqual(["HEAD", "PUT"]);
    expect(proxy.requests.find(isSinglePut)!.headers["if-none-match"]).toBeUndefined();
    expect((await failure(storage.put("c3.txt", "y", { ifNotExists: true }))).code).toBe("AlreadyExists");
  });
});

describe("checksums and verification", () => {
  it("the minio preset sends CRC32 checksums (single and multipart) and s3rver stores the bytes intact", async () => {
    const storage = openStorage(proxy.endpoint, { preset: "minio", partSize: 5 * MiB });
    const small = bytesOf(1000, 3);
    const large = bytesOf(7 * MiB, 4);
    await storage.put("crc.bin", small);
    await storage.put("crc-multi.bin", piecesOf(large));
    const single = proxy.requests.find(isSinglePut)!;
    expect(single.headers["x-amz-checksum-crc32"]).toMatch(/^[A-Za-z0-9+/]{6}==$/);
    expect(proxy.requests.find(isCreate)!.headers["x-amz-checksum-algorithm"]).toBe("CRC32");
    for (const part of proxy.requests.filter(isPart))
      expect(part.headers["x-amz-checksum-crc32"]).toBeDefined();
    // Checksums go in headers, never as aws-chunked trailers, which s3rver would store verbatim.
    expect(proxy.requests.filter((r) => r.headers["content-encoding"] === "aws-chunked")).toEqual([]);
    expect(md5(await (await storage.get("crc.bin")).bytes())).toBe(md5(small));
    expect(md5(await (await storage.get("crc-multi.bin")).bytes())).toBe(md5(large));
  });

  it("the other preset sends no x-amz-checksum headers", async () => {
    const storage = openStorage(proxy.endpoint, { preset: "other" });
    await storage.put("plain.bin", bytesOf(1000));
    const headers = Object.keys(proxy.requests.find(isSinglePut)!.headers);
    expect(
      headers.filter((h) => h.startsWith("x-amz-checksum") || h === "x-amz-sdk-checksum-algorithm"),
    ).toEqual([]);
  });

  it("an ETag that is not the MD5 of what was sent fails the put with Integrity", async () => {
    const storage = openStorage(proxy.endpoint);
    proxy.add({ match: isSinglePut, responseHeaders: { etag: '"00000000000000000000000000000000"' } });
    const error = await failure(storage.put("corrupt.bin", bytesOf(100)));
    expect(error.code).toBe("Integrity");
    expect(error.message).toBe(
      `s3 put 'corrupt.bin': the md5 the provider stored (00000000000000000000000000000000) differs from the bytes sent (${md5(bytesOf(100))}) (put the object again)`,
    );
  });

  it("with SSE-KMS (the ETag is no MD5) the size is checked with a HEAD", async () => {
    const storage = openStorage(proxy.endpoint);
    const kms = { "x-amz-server-side-encryption": "aws:kms" };
    proxy.add({ match: (r) => isSinglePut(r) || r.method === "HEAD", responseHeaders: kms });
    const entry = await storage.put("kms.bin", bytesOf(100));
    expect(entry.hashes).toBeUndefined();
    expect(entry.size).toBe(100);
    expect(proxy.requests.map((r) => r.method)).toEqual(["GET", "PUT", "HEAD"]);
    proxy.reset();
    proxy.add({ match: isSinglePut, responseHeaders: kms });
    proxy.add({ match: (r) => r.method === "HEAD", responseHeaders: { ...kms, "content-length": "99" } });
    const error = await failure(storage.put("kms.bin", bytesOf(100)));
    expect(error.code).toBe("Integrity");
    expect(error.message).toContain("sent 100 bytes but the provider stored 99");
  });
});

describe("requests", () => {
  it("an abort stops a request in flight at once", async () => {
    const storage = openStorage(proxy.endpoint);
    await storage.createRoot();
    proxy.add({ match: (r) => r.method === "HEAD", delayMs: 5_000 });
    const started = Date.now();
    const error = await failure(storage.stat("slow.txt", { signal: AbortSignal.timeout(100) }));
    expect(error.code).toBe("Aborted");
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it("publishes each request on the stowage:request channel", async () => {
    const storage = openStorage(proxy.endpoint);
    await storage.put("seen.txt", "x");
    const events: unknown[] = [];
    const listener = (message: unknown) => void events.push(message);
    subscribe("stowage:request", listener);
    try {
      await storage.stat("seen.txt");
      await failure(storage.stat("unseen.txt"));
    } finally {
      unsubscribe("stowage:request", listener);
    }
    expect(events).toEqual([
      expect.objectContaining({
        provider: "s3",
        operation: "stat",
        key: "seen.txt",
        command: "HeadObject",
        ok: true,
      }),
      expect.objectContaining({
        provider: "s3",
        operation: "stat",
        key: "unseen.txt",
        command: "HeadObject",
        ok: false,
        code: "NotFound",
        status: 404,
      }),
    ]);
  });

  it("keeps at most `concurrency` requests in flight", async () => {
    const storage = openStorage(proxy.endpoint, { concurrency: 2 });
    await storage.createRoot();
    proxy.reset();
    proxy.add({ match: (r) => r.method === "HEAD", delayMs: 50 });
    await Promise.all(Array.from({ length: 8 }, (_, i) => storage.stat(`n${i}`).catch(() => undefined)));
    expect(proxy.requests.filter((r) => r.method === "HEAD")).toHaveLength(8);
    expect(proxy.maxInFlight).toBe(2);
  });
});
