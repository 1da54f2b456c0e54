import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  chunked,
  copyAll,
  createFsStorage,
  createMemoryStorage,
  getFile,
  MemoryVolume,
  putFile,
  type StorageError,
} from "@stowage/core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "stowage-transfer-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function collect(source: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const piece of source) out.push(piece);
  return out;
}

async function* from(...sizes: number[]): AsyncGenerator<Uint8Array> {
  let n = 0;
  for (const size of sizes) yield Uint8Array.from({ length: size }, () => n++ % 251);
}

describe("chunked", () => {
  it("re-cuts pieces into exact chunks with a short last one", async () => {
    const chunks = await collect(chunked(from(3, 10, 1, 7), 5));
    expect(chunks.map((c) => c.byteLength)).toEqual([5, 5, 5, 5, 1]);
    const flat = chunks.flatMap((c) => [...c]);
    expect(flat).toEqual(Array.from({ length: 21 }, (_, i) => i % 251));
  });
  it("yields nothing for an empty source", async () => {
    expect(await collect(chunked(from(0, 0), 4))).toEqual([]);
  });
  it("refuses a chunk size that is not a positive integer", async () => {
    await expect(collect(chunked(from(1), 0))).rejects.toMatchObject({ code: "InvalidConfig" });
  });
});

describe("putFile and getFile", () => {
  it("round-trips a file and verifies it", async () => {
    const storage = createFsStorage({ root: join(dir, "store"), createRoot: true });
    const data = randomBytes(300_000);
    await writeFile(join(dir, "in.bin"), data);
    const progress: number[] = [];
    const entry = await putFile(storage, "f/in.bin", join(dir, "in.bin"), {
      onProgress: (p) => progress.push(p.bytes),
    });
    expect(entry.size).toBe(data.byteLength);
    expect(progress.at(-1)).toBe(data.byteLength);
    await getFile(storage, "f/in.bin", join(dir, "out.bin"));
    expect(
      createHash("md5")
        .update(await readFile(join(dir, "out.bin")))
        .digest("hex"),
    ).toBe(createHash("md5").update(data).digest("hex"));
  });

  it("a failed getFile leaves the existing local file untouched and no temporary file", async () => {
    const storage = createMemoryStorage({ volume: new MemoryVolume() });
    await writeFile(join(dir, "keep.bin"), "precious");
    const err = await getFile(storage, "missing.bin", join(dir, "keep.bin")).catch((e: StorageError) => e);
    expect((err as StorageError).code).toBe("NotFound");
    expect((err as StorageError).message).toBe("memory getFile 'missing.bin': no object has this key");
    expect(await readFile(join(dir, "keep.bin"), "utf8")).toBe("precious");
    expect(await readdir(dir)).toEqual(["keep.bin"]);
  });

  it("putFile of a missing local file is NotFound naming the key", async () => {
    const storage = createMemoryStorage({ volume: new MemoryVolume() });
    const err = (await putFile(storage, "x.bin", join(dir, "nope.bin")).catch((e) => e)) as StorageError;
    expect(err.code).toBe("NotFound");
    expect(err.message).toBe(
      `memory putFile 'x.bin': the local file '${join(dir, "nope.bin")}' does not exist`,
    );
  });
});

describe("copyAll", () => {
  it("copies every object, skips ones already equal, and reports progress", async () => {
    const source = createMemoryStorage({ volume: new MemoryVolume() });
    const target = createFsStorage({ root: join(dir, "copy"), createRoot: true });
    for (let i = 0; i < 20; i++) await source.put(`d${i % 3}/k${i}.bin`, randomBytes(1000 + i));
    const first = await copyAll(source, target, { concurrency: 3 });
    expect(first).toMatchObject({ copied: 20, skipped: 0, failures: [] });
    // fs reports no hashes, so equal objects are only skipped between storages that share a hash
    const mirror = createMemoryStorage({ volume: new MemoryVolume() });
    await copyAll(source, mirror);
    const seen: number[] = [];
    const second = await copyAll(source, mirror, { onProgress: (p) => seen.push(p.copied + p.skipped) });
    expect(second).toMatchObject({ copied: 0, skipped: 20 });
    expect(seen.at(-1)).toBe(20);
    for (let i = 0; i < 20; i++) {
      const key = `d${i % 3}/k${i}.bin`;
      expect(await (await target.get(key)).bytes()).toEqual(await (await source.get(key)).bytes());
    }
  });

  it("collects failed keys and copies the rest", async () => {
    const source = createMemoryStorage({ volume: new MemoryVolume() });
    const target = createMemoryStorage({ volume: new MemoryVolume() });
    await source.put("ok.txt", "fine");
    await source.put("clash/inner.txt", "x");
    await target.put("clash", "an object where the source has a folder");
    const result = await copyAll(source, target);
    expect(result.copied).toBe(1);
    expect(result.failures.map((f) => [f.key, f.error.code])).toEqual([["clash/inner.txt", "Conflict"]]);
  });

  it("stops at once when aborted", async () => {
    const source = createMemoryStorage({ volume: new MemoryVolume() });
    const target = createMemoryStorage({ volume: new MemoryVolume() });
    for (let i = 0; i < 10; i++) await source.put(`k${i}`, "x");
    const controller = new AbortController();
    controller.abort();
    await expect(copyAll(source, target, { signal: controller.signal })).rejects.toMatchObject({
      code: "Aborted",
    });
  });
});
