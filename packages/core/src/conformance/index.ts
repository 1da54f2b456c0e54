import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { isStorageError, type StorageError } from "../errors.js";
import { createHasher } from "../hashes.js";
import type { Body, Capabilities, Entry, Progress, Storage } from "../types.js";
import { hardKeys, invalidKeys } from "./keys.js";

export { hardKeys, invalidKeys } from "./keys.js";

/** What a conformance `setup` returns: a storage, and how to clean up after it. */
export interface ConformanceFixture {
  storage: Storage;
  cleanup?: () => Promise<void>;
}

export interface ConformanceSetupContext {
  /** When true, return a storage whose root does not exist (and do not create it). */
  missingRoot: boolean;
}

export interface ConformanceOptions {
  /** The chunk (part, fragment) size the setup configured; sizes around it are tested. Default 64 KiB. */
  chunkSize?: number;
  /** The list page size the setup configured; a listing of more than two pages is tested. Default 1000. */
  pageSize?: number;
  /** Lower (never raise) what the storage claims, e.g. when a test server cannot do a thing. */
  capabilities?: Partial<Capabilities>;
  /** Size of the streamed many-chunks object. Default 64 MiB (at least 16 chunks). */
  streamSize?: number;
  /**
   * Extra memory (bytes) the streamed put may hold beyond a few chunks; `false` to skip the memory
   * check (for storages that keep objects in this process's memory). Default 16 MiB.
   */
  memoryBudget?: number | false;
  /** Per-test timeout in ms. Default 60 s. */
  timeout?: number;
}

type Setup = (context: ConformanceSetupContext) => Promise<ConformanceFixture | Storage>;

function asFixture(result: ConformanceFixture | Storage): ConformanceFixture {
  return "provider" in result ? { storage: result } : result;
}

async function collect(iterable: AsyncIterable<Entry>): Promise<Entry[]> {
  const out: Entry[] = [];
  for await (const entry of iterable) out.push(entry);
  return out;
}

async function expectError(promise: Promise<unknown>, code: StorageError["code"]): Promise<StorageError> {
  try {
    await promise;
  } catch (err) {
    if (!isStorageError(err)) throw new Error(`expected a StorageError ${code}, got ${String(err)}`);
    expect(err.code, err.message).toBe(code);
    return err;
  }
  throw new Error(`expected ${code}, but the call succeeded`);
}

function bytesOf(size: number, seed = 1): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed * 2654435761;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

function md5(bytes: Uint8Array): string {
  return createHash("md5").update(bytes).digest("hex");
}

async function* pieces(bytes: Uint8Array, pieceSize: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.byteLength; i += pieceSize) {
    yield bytes.slice(i, i + pieceSize);
  }
}

function webStream(bytes: Uint8Array, pieceSize: number): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (offset >= bytes.byteLength) return controller.close();
      controller.enqueue(bytes.slice(offset, offset + pieceSize));
      offset += pieceSize;
    },
  });
}

function liveMemory(): number {
  (globalThis as { gc?: () => void }).gc?.();
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.arrayBuffers;
}

/**
 * Registers the shared behaviour tests of the `Storage` contract for one provider (vitest). `setup`
 * returns a fresh, empty storage for each test (and a cleanup); `options` may lower capabilities and
 * set small page and chunk sizes so that paging and chunking run with small data.
 *
 * @example
 * describeStorageConformance("memory", async ({ missingRoot }) => {
 *   const storage = createMemoryStorage({ root: `t-${randomUUID()}`, volume: new MemoryVolume() });
 *   if (!missingRoot) await storage.createRoot();
 *   return storage;
 * }, { memoryBudget: false });
 */
export function describeStorageConformance(
  name: string,
  setup: Setup,
  options: ConformanceOptions = {},
): void {
  const chunk = options.chunkSize ?? 64 * 1024;
  const pageSize = options.pageSize ?? 1000;
  const timeout = options.timeout ?? 60_000;

  describe(`${name}: Storage conformance`, () => {
    let fixture: ConformanceFixture | undefined;
    let storage: Storage;
    let caps: Capabilities;
    const extra: ConformanceFixture[] = [];

    beforeEach(async () => {
      const created = asFixture(await setup({ missingRoot: false }));
      fixture = created;
      storage = created.storage;
      caps = { ...storage.capabilities, ...options.capabilities };
    }, timeout);

    afterEach(async () => {
      // A setup that threw left no fixture to clean up.
      const fixtures = [...(fixture ? [fixture] : []), ...extra.splice(0)];
      fixture = undefined;
      for (const f of fixtures) {
        await f.storage.close();
        await f.cleanup?.();
      }
    }, timeout);

    async function missingRootStorage(): Promise<Storage> {
      const f = asFixture(await setup({ missingRoot: true }));
      extra.push(f);
      return f.storage;
    }

    async function roundTrip(key: string, body: Body, expected: Uint8Array, putOptions = {}) {
      const entry = await storage.put(key, body, putOptions);
      expect(entry.key).toBe(key);
      expect(entry.kind).toBe("file");
      if (entry.size !== undefined) expect(entry.size).toBe(expected.byteLength);
      const back = await (await storage.get(key)).bytes();
      expect(back.byteLength).toBe(expected.byteLength);
      expect(md5(back)).toBe(md5(expected));
      return entry;
    }

    describe("bodies", () => {
      const data = bytesOf(3 * chunk + 17);
      it("puts and gets a Uint8Array", { timeout }, async () => {
        await roundTrip("body/bytes.bin", data, data);
      });
      it("puts a string as UTF-8", { timeout }, async () => {
        const text = "héllo wörld ✓ 📦";
        await storage.put("body/text.txt", text);
        expect(await (await storage.get("body/text.txt")).text()).toBe(text);
      });
      it("puts a Blob", { timeout }, async () => {
        await roundTrip("body/blob.bin", new Blob([data]), data);
      });
      it("puts a web ReadableStream of unknown length", { timeout }, async () => {
        await roundTrip("body/web.bin", webStream(data, 10_000), data);
      });
      it("puts a Node readable stream of unknown length", { timeout }, async () => {
        await roundTrip("body/node.bin", Readable.from(pieces(data, 7_000)), data);
      });
      it("puts an async iterable of Uint8Array", { timeout }, async () => {
        await roundTrip("body/iter.bin", pieces(data, 33_333), data);
      });
      it("puts a stream with its size declared", { timeout }, async () => {
        await roundTrip("body/sized.bin", pieces(data, 50_000), data, { size: data.byteLength });
      });
      it("refuses a stream shorter than its declared size with Integrity and stores nothing", {
        timeout,
      }, async () => {
        const err = await expectError(
          storage.put("body/short.bin", pieces(data, 50_000), { size: data.byteLength + 5 }),
          "Integrity",
        );
        expect(err.message).toContain("declared");
        if (caps.atomicPut) await expectError(storage.stat("body/short.bin"), "NotFound");
      });
      it("refuses a size option that contradicts a sized body with InvalidConfig", { timeout }, async () => {
        const err = await expectError(storage.put("body/contradict.bin", data, { size: 3 }), "InvalidConfig");
        expect(err.message).toContain("size");
      });
    });

    describe("sizes around the chunk size", () => {
      const sizes: Array<[string, number]> = [
        ["empty", 0],
        ["1 byte", 1],
        ["chunk - 1", chunk - 1],
        ["chunk", chunk],
        ["chunk + 1", chunk + 1],
        ["two chunks + 1", 2 * chunk + 1],
      ];
      for (const [label, size] of sizes) {
        it(`round-trips an object of ${label} (${size} bytes), sized and streamed`, { timeout }, async () => {
          const data = bytesOf(size, size + 3);
          await roundTrip(`sizes/${size}.bin`, data, data);
          await roundTrip(`sizes/${size}.stream`, pieces(data, 4093), data);
          expect((await storage.stat(`sizes/${size}.stream`)).size).toBe(size);
        });
      }

      it("streams an object many chunks long with bounded memory", {
        timeout: Math.max(timeout, 120_000),
      }, async () => {
        const total = options.streamSize ?? Math.max(16 * chunk, 64 * 1024 * 1024);
        const piece = 64 * 1024;
        const hash = createHash("md5");
        const baseline = liveMemory();
        let peak = 0;
        let produced = 0;
        async function* generate(): AsyncGenerator<Uint8Array> {
          while (produced < total) {
            const next = bytesOf(Math.min(piece, total - produced), produced + 11);
            hash.update(next);
            produced += next.byteLength;
            if (produced % (4 * 1024 * 1024) < piece) peak = Math.max(peak, liveMemory() - baseline);
            yield next;
          }
        }
        await storage.put("stream/big.bin", generate());
        const sent = hash.digest("hex");
        if (options.memoryBudget !== false) {
          const budget = (options.memoryBudget ?? 16 * 1024 * 1024) + 4 * chunk;
          expect(peak, `peak extra memory ${peak} bytes while streaming ${total}`).toBeLessThan(budget);
        }
        const readHash = createHash("md5");
        let read = 0;
        for await (const part of (await storage.get("stream/big.bin")).body) {
          readHash.update(part);
          read += part.byteLength;
        }
        expect(read).toBe(total);
        expect(readHash.digest("hex")).toBe(sent);
      });
    });

    describe("list", () => {
      it("lists an empty root as nothing", { timeout }, async () => {
        expect(await collect(storage.list())).toEqual([]);
        expect(await collect(storage.list("", { recursive: true }))).toEqual([]);
      });
      it("lists a missing folder below the root as nothing", { timeout }, async () => {
        await storage.put("present.txt", "x");
        expect(await collect(storage.list("no/such/folder"))).toEqual([]);
        expect(await collect(storage.list("no/such/folder", { recursive: true }))).toEqual([]);
      });
      it("lists direct children, files and folders, with full keys", { timeout }, async () => {
        await storage.put("a.txt", "a");
        await storage.put("dir/b.txt", "bb");
        await storage.put("dir/sub/c.txt", "ccc");
        const top = await collect(storage.list());
        expect(top.map((e) => `${e.kind}:${e.key}`).sort()).toEqual(["file:a.txt", "folder:dir"]);
        const inDir = await collect(storage.list("dir"));
        expect(inDir.map((e) => `${e.kind}:${e.key}`).sort()).toEqual(["file:dir/b.txt", "folder:dir/sub"]);
        expect(inDir.find((e) => e.key === "dir/b.txt")?.size).toBe(2);
      });
      it("lists every file below a folder recursively, and no folders", { timeout }, async () => {
        await storage.put("a.txt", "a");
        await storage.put("dir/b.txt", "bb");
        await storage.put("dir/sub/c.txt", "ccc");
        await storage.put("dir/sub/deeper/d.txt", "dddd");
        const all = await collect(storage.list("", { recursive: true }));
        expect(all.every((e) => e.kind === "file")).toBe(true);
        expect(all.map((e) => e.key).sort()).toEqual([
          "a.txt",
          "dir/b.txt",
          "dir/sub/c.txt",
          "dir/sub/deeper/d.txt",
        ]);
        const below = await collect(storage.list("dir/sub", { recursive: true }));
        expect(below.map((e) => e.key).sort()).toEqual(["dir/sub/c.txt", "dir/sub/deeper/d.txt"]);
      });
      it("accepts a folder written with a trailing slash", { timeout }, async () => {
        await storage.put("dir/b.txt", "bb");
        expect((await collect(storage.list("dir/"))).map((e) => e.key)).toEqual(["dir/b.txt"]);
      });
      it(`lists more entries than a page (${2 * pageSize + 3}) exactly once each`, {
        timeout: Math.max(timeout, 180_000),
      }, async () => {
        const count = 2 * pageSize + 3;
        const keys = Array.from({ length: count }, (_, i) => `many/k${String(i).padStart(5, "0")}`);
        for (let i = 0; i < keys.length; i += 16) {
          await Promise.all(keys.slice(i, i + 16).map((key) => storage.put(key, "")));
        }
        const listed = (await collect(storage.list("many"))).map((e) => e.key);
        expect(listed.length).toBe(count);
        expect(new Set(listed).size).toBe(count);
        expect([...listed].sort()).toEqual(keys);
        const recursive = (await collect(storage.list("", { recursive: true }))).map((e) => e.key);
        expect(recursive.length).toBe(count);
      });
      it("can stop iterating early and list again", { timeout }, async () => {
        for (let i = 0; i < 5; i++) await storage.put(`stop/${i}`, "x");
        for await (const entry of storage.list("stop")) {
          expect(entry.key.startsWith("stop/")).toBe(true);
          break;
        }
        expect((await collect(storage.list("stop"))).length).toBe(5);
      });
      it("refuses an invalid folder with InvalidKey", { timeout }, async () => {
        await expectError(collect(storage.list("a//b")), "InvalidKey");
      });
    });

    describe("stat, get, delete", () => {
      it("stat of a missing key is NotFound naming the key", { timeout }, async () => {
        const err = await expectError(storage.stat("missing/key.bin"), "NotFound");
        expect(err.key).toBe("missing/key.bin");
        expect(err.message).toContain("missing/key.bin");
        expect(err.provider).toBe(storage.provider);
        expect(err.operation).toBe("stat");
        expect(err.retryable).toBe(false);
      });
      it("get of a missing key is NotFound before any byte is read", { timeout }, async () => {
        const err = await expectError(storage.get("missing.bin"), "NotFound");
        expect(err.operation).toBe("get");
      });
      it("stat returns the kind, size and modification time", { timeout }, async () => {
        const before = Date.now() - 5 * 60_000;
        await storage.put("s/file.bin", bytesOf(1234));
        const entry = await storage.stat("s/file.bin");
        expect(entry).toMatchObject({ key: "s/file.bin", kind: "file", size: 1234 });
        if (entry.modified) expect(entry.modified.getTime()).toBeGreaterThan(before);
      });
      it("a download's entry matches the object", { timeout }, async () => {
        await storage.put("d.bin", bytesOf(100));
        const download = await storage.get("d.bin");
        expect(download.entry.key).toBe("d.bin");
        expect(download.entry.size).toBe(100);
        expect((await download.bytes()).byteLength).toBe(100);
      });
      it("delete removes the object", { timeout }, async () => {
        await storage.put("del/x.txt", "x");
        await storage.delete("del/x.txt");
        await expectError(storage.stat("del/x.txt"), "NotFound");
        expect((await collect(storage.list("", { recursive: true }))).map((e) => e.key)).not.toContain(
          "del/x.txt",
        );
      });
      it("delete of a missing key succeeds", { timeout }, async () => {
        await expect(storage.delete("never/was.txt")).resolves.toBeUndefined();
      });
      it("delete is idempotent", { timeout }, async () => {
        await storage.put("twice.txt", "x");
        await storage.delete("twice.txt");
        await expect(storage.delete("twice.txt")).resolves.toBeUndefined();
      });
      it("delete leaves siblings alone", { timeout }, async () => {
        await storage.put("sib/a", "a");
        await storage.put("sib/b", "b");
        await storage.delete("sib/a");
        expect((await collect(storage.list("sib"))).map((e) => e.key)).toEqual(["sib/b"]);
      });
    });

    describe("put semantics", () => {
      it("put replaces an existing object without a duplicate", { timeout }, async () => {
        await storage.put("over.txt", "first version");
        await storage.put("over.txt", "second");
        expect(await (await storage.get("over.txt")).text()).toBe("second");
        const listed = (await collect(storage.list())).filter((e) => e.key === "over.txt");
        expect(listed).toHaveLength(1);
        expect(listed[0]!.size).toBe(6);
      });
      it("put creates the folders below the root implicitly", { timeout }, async () => {
        await storage.put("p/q/r/file.txt", "deep");
        expect((await collect(storage.list("p"))).map((e) => `${e.kind}:${e.key}`)).toEqual(["folder:p/q"]);
        expect(await (await storage.get("p/q/r/file.txt")).text()).toBe("deep");
      });
      it("ifNotExists stores a new key", { timeout }, async () => {
        await storage.put("cond/new.txt", "v1", { ifNotExists: true });
        expect(await (await storage.get("cond/new.txt")).text()).toBe("v1");
      });
      it("ifNotExists fails with AlreadyExists on an existing key and keeps the old content", {
        timeout,
      }, async () => {
        await storage.put("cond/old.txt", "original");
        const err = await expectError(
          storage.put("cond/old.txt", "replacement", { ifNotExists: true }),
          "AlreadyExists",
        );
        expect(err.key).toBe("cond/old.txt");
        expect(await (await storage.get("cond/old.txt")).text()).toBe("original");
      });
      it("concurrent ifNotExists puts: exactly one wins where conditionalPut (10 rounds)", {
        timeout,
      }, async () => {
        if (!caps.conditionalPut) return;
        // One round can pass by luck on a server that only checks, then writes; ten rarely do.
        for (let round = 0; round < 10; round++) {
          const key = `cond/race-${round}.txt`;
          const results = await Promise.allSettled(
            Array.from({ length: 8 }, (_, i) => storage.put(key, `writer ${i}`, { ifNotExists: true })),
          );
          const won = results.filter((r) => r.status === "fulfilled");
          expect(won, `round ${round}`).toHaveLength(1);
          for (const r of results) {
            if (r.status === "rejected") expect((r.reason as StorageError).code).toBe("AlreadyExists");
          }
          const winner = results.findIndex((r) => r.status === "fulfilled");
          expect(await (await storage.get(key)).text()).toBe(`writer ${winner}`);
        }
      });
      it("32 concurrent puts of distinct keys all land", { timeout }, async () => {
        const keys = Array.from({ length: 32 }, (_, i) => `conc/${i}.bin`);
        await Promise.all(keys.map((key, i) => storage.put(key, bytesOf(1000 + i, i))));
        const listed = await collect(storage.list("conc"));
        expect(listed.map((e) => e.key).sort()).toEqual([...keys].sort());
        for (const entry of listed) expect(entry.size).toBe(1000 + Number(entry.key.match(/(\d+)\.bin/)![1]));
      });
      it("put returns an entry whose size and hashes match the content", { timeout }, async () => {
        const data = bytesOf(chunk + 99, 5);
        const entry = await storage.put("h/data.bin", data);
        expect(entry.size).toBe(data.byteLength);
        for (const [alg, value] of Object.entries(entry.hashes ?? {})) {
          const hasher = createHasher(alg as keyof NonNullable<Entry["hashes"]>);
          if (!hasher || value === undefined) continue;
          hasher.update(data);
          expect(value.toLowerCase(), alg).toBe(hasher.digest().toLowerCase());
        }
        const listed = (await collect(storage.list("h"))).find((e) => e.key === "h/data.bin");
        expect(listed?.size).toBe(data.byteLength);
      });
      it("put progress is monotonic and ends at the size", { timeout }, async () => {
        const data = bytesOf(3 * chunk + 5);
        const seen: Progress[] = [];
        await storage.put("prog/up.bin", pieces(data, 10_000), { onProgress: (p) => seen.push({ ...p }) });
        expect(seen.length).toBeGreaterThan(0);
        for (let i = 1; i < seen.length; i++)
          expect(seen[i]!.bytes).toBeGreaterThanOrEqual(seen[i - 1]!.bytes);
        expect(seen.at(-1)!.bytes).toBe(data.byteLength);
      });
      it("get progress is monotonic and ends at the size", { timeout }, async () => {
        const data = bytesOf(3 * chunk + 5);
        await storage.put("prog/down.bin", data);
        const seen: Progress[] = [];
        await (await storage.get("prog/down.bin", { onProgress: (p) => seen.push({ ...p }) })).bytes();
        for (let i = 1; i < seen.length; i++)
          expect(seen[i]!.bytes).toBeGreaterThanOrEqual(seen[i - 1]!.bytes);
        expect(seen.at(-1)).toEqual({ bytes: data.byteLength, total: data.byteLength });
      });
      it("keys are case-sensitive where the provider is, and one object where it is not", {
        timeout,
      }, async () => {
        await storage.put("Case.txt", "upper");
        if (caps.caseSensitive) {
          await expectError(storage.stat("case.txt"), "NotFound");
          await storage.put("case.txt", "lower");
          expect(await (await storage.get("Case.txt")).text()).toBe("upper");
          expect(await (await storage.get("case.txt")).text()).toBe("lower");
        } else {
          expect(await (await storage.get("case.txt")).text()).toBe("upper");
        }
      });
    });

    describe("range reads", () => {
      const data = bytesOf(2 * chunk + 333, 9);
      it("reads offset and length", { timeout }, async () => {
        if (!caps.rangeRead) return;
        await storage.put("r.bin", data);
        const part = await (await storage.get("r.bin", { range: { offset: 1000, length: chunk } })).bytes();
        expect(md5(part)).toBe(md5(data.subarray(1000, 1000 + chunk)));
      });
      it("reads from an offset to the end", { timeout }, async () => {
        if (!caps.rangeRead) return;
        await storage.put("r.bin", data);
        const part = await (await storage.get("r.bin", { range: { offset: chunk + 7 } })).bytes();
        expect(md5(part)).toBe(md5(data.subarray(chunk + 7)));
      });
      it("clamps a range that runs past the end", { timeout }, async () => {
        if (!caps.rangeRead) return;
        await storage.put("r.bin", data);
        const part = await (
          await storage.get("r.bin", { range: { offset: data.byteLength - 10, length: 100 } })
        ).bytes();
        expect(md5(part)).toBe(md5(data.subarray(data.byteLength - 10)));
      });
      it("refuses a negative or fractional range with InvalidConfig", { timeout }, async () => {
        await storage.put("r.bin", data);
        const err = await expectError(storage.get("r.bin", { range: { offset: -1 } }), "InvalidConfig");
        expect(err.message).toContain("range");
        await expectError(storage.get("r.bin", { range: { offset: 0, length: 1.5 } }), "InvalidConfig");
      });
    });

    describe("keys", () => {
      for (const { key, why } of hardKeys) {
        it(`round-trips the hard key ${JSON.stringify(key.length > 40 ? `${key.slice(0, 37)}…` : key)} (${why})`, {
          timeout,
        }, async () => {
          const data = new TextEncoder().encode(`content of ${key}`);
          const entry = await storage.put(key, data);
          expect(entry.key).toBe(key);
          expect((await storage.stat(key)).key).toBe(key);
          expect(await (await storage.get(key)).text()).toBe(`content of ${key}`);
          const listed = (await collect(storage.list("", { recursive: true }))).map((e) => e.key);
          expect(listed).toEqual([key]);
          const parent = key.includes("/") ? key.slice(0, key.lastIndexOf("/")) : "";
          expect((await collect(storage.list(parent))).map((e) => e.key)).toContain(key);
          await storage.delete(key);
          await expectError(storage.stat(key), "NotFound");
        });
      }
      it("keeps all hard keys apart in one folder (NFC and NFD are different keys)", {
        timeout: Math.max(timeout, 120_000),
      }, async () => {
        const keys = hardKeys.map((h) => h.key);
        const expected = caps.caseSensitive
          ? keys
          : keys.filter((k, i) => keys.findIndex((o) => o.toLowerCase() === k.toLowerCase()) === i);
        for (const key of expected) await storage.put(key, key);
        const listed = (await collect(storage.list("", { recursive: true }))).map((e) => e.key);
        expect([...listed].sort()).toEqual([...expected].sort());
        for (const key of expected) expect(await (await storage.get(key)).text()).toBe(key);
      });
      for (const { key, why } of invalidKeys) {
        it(`refuses the invalid key ${JSON.stringify(key.length > 30 ? `${key.slice(0, 27)}…` : key)} (${why}) with InvalidKey and a hint`, {
          timeout,
        }, async () => {
          for (const call of [
            () => storage.put(key, "x"),
            () => storage.stat(key),
            () => storage.get(key),
            () => storage.delete(key),
          ]) {
            const err = await expectError(call(), "InvalidKey");
            expect(err.hint, err.message).toBeTruthy();
            expect(err.message).toMatch(/key|segment/);
          }
        });
      }
    });

    describe("abort", () => {
      it("a call whose signal already fired rejects with Aborted", { timeout }, async () => {
        const controller = new AbortController();
        controller.abort();
        await expectError(storage.put("ab/pre.txt", "x", { signal: controller.signal }), "Aborted");
        await expectError(storage.stat("ab/pre.txt", { signal: controller.signal }), "Aborted");
      });
      it("aborting mid-put rejects with Aborted and leaves no partial object where atomicPut", {
        timeout,
      }, async () => {
        const controller = new AbortController();
        async function* slow(): AsyncGenerator<Uint8Array> {
          for (let i = 0; i < 50; i++) {
            if (i === 3) controller.abort();
            yield bytesOf(chunk, i);
            await new Promise((r) => setTimeout(r, 5));
          }
        }
        await expectError(storage.put("ab/mid.bin", slow(), { signal: controller.signal }), "Aborted");
        if (caps.atomicPut) {
          await expectError(storage.stat("ab/mid.bin"), "NotFound");
          const listed = (await collect(storage.list("", { recursive: true }))).map((e) => e.key);
          expect(listed).not.toContain("ab/mid.bin");
        }
      });
      it("aborting mid-put over an existing object keeps the old object where atomicPut", {
        timeout,
      }, async () => {
        if (!caps.atomicPut) return;
        await storage.put("ab/keep.txt", "old content");
        const controller = new AbortController();
        async function* failing(): AsyncGenerator<Uint8Array> {
          yield bytesOf(chunk + 1);
          controller.abort();
          yield bytesOf(chunk + 1);
        }
        await expectError(storage.put("ab/keep.txt", failing(), { signal: controller.signal }), "Aborted");
        expect(await (await storage.get("ab/keep.txt")).text()).toBe("old content");
      });
      it("aborting mid-get errors the stream with Aborted", { timeout }, async () => {
        await storage.put("ab/get.bin", bytesOf(4 * chunk));
        const controller = new AbortController();
        const download = await storage.get("ab/get.bin", { signal: controller.signal });
        const reader = download.body.getReader();
        await reader.read();
        controller.abort();
        let error: unknown;
        try {
          while (!(await reader.read()).done) {
            // drain until the abort surfaces
          }
        } catch (err) {
          error = err;
        }
        expect(isStorageError(error, "Aborted"), String(error)).toBe(true);
      });
    });

    describe("root", () => {
      it("every call on a missing root fails with FolderMissing and a createRoot hint", {
        timeout,
      }, async () => {
        const missing = await missingRootStorage();
        const calls: Array<[string, () => Promise<unknown>]> = [
          ["list", () => collect(missing.list())],
          ["stat", () => missing.stat("a.txt")],
          ["get", () => missing.get("a.txt")],
          ["put", () => missing.put("a.txt", "x")],
          ["delete", () => missing.delete("a.txt")],
        ];
        for (const [operation, call] of calls) {
          const err = await expectError(call(), "FolderMissing");
          expect(err.operation).toBe(operation);
          expect(err.hint).toContain("createRoot");
        }
      });
      it("a put on a missing root does not create it", { timeout }, async () => {
        const missing = await missingRootStorage();
        await expectError(missing.put("x/y.txt", "x"), "FolderMissing");
        await expectError(collect(missing.list()), "FolderMissing");
      });
      it("createRoot creates the root, is idempotent, and makes calls work", { timeout }, async () => {
        const missing = await missingRootStorage();
        await missing.createRoot();
        await missing.createRoot();
        expect(await collect(missing.list())).toEqual([]);
        await missing.put("now.txt", "works");
        expect(await (await missing.get("now.txt")).text()).toBe("works");
      });
      it("test() reports FolderMissing at the root step", { timeout }, async () => {
        const missing = await missingRootStorage();
        const report = await missing.test();
        expect(report.ok).toBe(false);
        const root = report.steps.find((s) => s.name === "root");
        expect(root?.ok).toBe(false);
        expect(root?.error?.code).toBe("FolderMissing");
        expect(report.steps.map((s) => s.name)).toEqual(["credentials", "root"]);
      });
    });

    describe("test()", () => {
      it("checks credentials, root and list, with timings", { timeout }, async () => {
        const report = await storage.test();
        expect(report.ok).toBe(true);
        expect(report.steps.map((s) => s.name)).toEqual(["credentials", "root", "list"]);
        for (const step of report.steps) expect(step.ms).toBeGreaterThanOrEqual(0);
        expect(report.provider).toBe(storage.provider);
      });
      it("with write: true writes, reads back and deletes a probe, leaving nothing behind", {
        timeout,
      }, async () => {
        const report = await storage.test({ write: true });
        expect(report.ok, JSON.stringify(report)).toBe(true);
        expect(report.steps.map((s) => s.name)).toEqual([
          "credentials",
          "root",
          "list",
          "write",
          "read",
          "delete",
        ]);
        expect(await collect(storage.list("", { recursive: true }))).toEqual([]);
      });
    });

    describe("location", () => {
      it("location is a URL of the provider with no secret in it", { timeout }, async () => {
        expect(() => new URL(storage.location)).not.toThrow();
        expect(storage.location).not.toMatch(/password=|token=|secret|authid=[^[]/i);
      });
    });
  });
}
