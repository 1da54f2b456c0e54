/**
 * One measured WebDAV workload in its own process, so that its time and peak RSS are its own.
 * Usage: webdav-worker.ts <client> <op> <endpoint> <folder> <local>
 *   client: stowage | stowage-direct (atomicPut off) | raw (the `webdav` 5.11 client) | opendal |
 *           undici (a bare undici request piped to or from the file: Node's floor)
 *   op: put (local file → folder/big.bin), get (folder/big.bin → local file),
 *       small (SMALL_COUNT objects of SMALL_SIZE bytes into folder/small/, SMALL_CONCURRENCY at once),
 *       start (load the client and open it: the fixed cost included in every other figure)
 * Credentials come from BENCH_USER and BENCH_PASS. Prints one JSON line: { ms }.
 */
import { createReadStream, createWriteStream } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { createRequire } from "node:module";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";

export const SMALL_COUNT = 2000;
export const SMALL_SIZE = 4096;
export const SMALL_CONCURRENCY = 16;

/** The content of small object `i`: deterministic, so that the parent can check what landed. */
export function smallObject(i: number): Buffer {
  return Buffer.alloc(SMALL_SIZE, i % 251);
}

async function pool(
  count: number,
  concurrency: number,
  work: (i: number) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) await work(next++);
    }),
  );
}

// Every client is imported only in its own branch, so that each process loads one client. The
// `webdav` client is installed for the webdav package, undici for core and OpenDAL at the workspace
// root: each is resolved there (BENCH_*_PACKAGE, since this file runs bundled from a temporary folder).
const requireFromWebdav = createRequire(
  process.env.BENCH_WEBDAV_PACKAGE ?? new URL("../packages/webdav/package.json", import.meta.url),
);
const requireFromCore = createRequire(
  process.env.BENCH_CORE_PACKAGE ?? new URL("../packages/core/package.json", import.meta.url),
);
const requireFromRoot = createRequire(
  process.env.BENCH_ROOT_PACKAGE ?? new URL("../package.json", import.meta.url),
);

/** What the bench uses of undici (core's HTTP library) directly. */
interface BareUndici {
  request(
    url: string,
    options: { method?: string; headers: Record<string, string>; body?: Readable },
  ): Promise<{ body: Readable & { dump(): Promise<void> } }>;
}

/** What the bench uses of the `webdav` client's API. */
interface RawWebdav {
  createClient(
    url: string,
    options: { username: string; password: string },
  ): {
    putFileContents(
      path: string,
      data: Buffer | Readable,
      options?: { headers?: Record<string, string> },
    ): Promise<boolean>;
    createReadStream(path: string): Readable;
  };
}

async function run(
  client: string,
  op: string,
  endpoint: string,
  folder: string,
  local: string,
): Promise<void> {
  const username = process.env.BENCH_USER!;
  const password = process.env.BENCH_PASS!;
  if (client === "stowage" || client === "stowage-direct") {
    const { basicCredentials } = await import("../packages/auth/src/index.js");
    const { createWebDavStorage } = await import("../packages/webdav/src/index.js");
    const storage = createWebDavStorage({
      url: endpoint,
      root: folder,
      auth: basicCredentials({ username, password }),
      atomicPut: client === "stowage",
      concurrency: SMALL_CONCURRENCY,
    });
    if (op === "put") {
      const { size } = await stat(local);
      await storage.put("big.bin", createReadStream(local, { highWaterMark: 1024 * 1024 }), { size });
    } else if (op === "get") {
      const download = await storage.get("big.bin");
      await pipeline(
        Readable.fromWeb(download.body as import("node:stream/web").ReadableStream),
        createWriteStream(local),
      );
    } else if (op === "small") {
      await pool(SMALL_COUNT, SMALL_CONCURRENCY, (i) => storage.put(`small/${i}.bin`, smallObject(i)));
    }
    await storage.close();
  } else if (client === "raw") {
    const { createClient } = (await import(requireFromWebdav.resolve("webdav"))) as RawWebdav;
    const dav = createClient(`${endpoint}/${folder}`, { username, password });
    if (op === "put") {
      const { size } = await stat(local);
      // webdav 5.11 drops contentLength for Node streams (issue 6): the header is passed by hand.
      await dav.putFileContents("/big.bin", createReadStream(local, { highWaterMark: 1024 * 1024 }), {
        headers: { "Content-Length": String(size) },
      });
    } else if (op === "get") {
      await pipeline(dav.createReadStream("/big.bin"), createWriteStream(local));
    } else if (op === "small") {
      await pool(SMALL_COUNT, SMALL_CONCURRENCY, (i) =>
        dav.putFileContents(`/small/${i}.bin`, smallObject(i)),
      );
    }
  } else if (client === "opendal") {
    const { Operator } = (await import(requireFromRoot.resolve("opendal"))) as typeof import("opendal");
    const op_ = new Operator("webdav", { endpoint, root: `/${folder}`, username, password });
    if (op === "put") {
      // OpenDAL's WebDAV writer is one-shot ("OneShotWriter doesn't support multiple write"): the
      // whole object goes in one buffer.
      await op_.write("big.bin", await readFile(local));
    } else if (op === "get") {
      const reader = await op_.reader("big.bin");
      await pipeline(reader.createReadStream(), createWriteStream(local));
    } else if (op === "small") {
      await pool(SMALL_COUNT, SMALL_CONCURRENCY, (i) => op_.write(`small/${i}.bin`, smallObject(i)));
    }
  } else if (client === "undici") {
    const { request } = (await import(requireFromCore.resolve("undici"))) as BareUndici;
    const url = `${endpoint}/${folder}/big.bin`;
    const authorization = `Basic ${Buffer.from(`${username}:${password}`).toString("base64")}`;
    if (op === "put") {
      const { size } = await stat(local);
      const body = createReadStream(local, { highWaterMark: 1024 * 1024 });
      const response = await request(url, {
        method: "PUT",
        headers: { authorization, "content-length": String(size) },
        body,
      });
      await response.body.dump();
    } else if (op === "get") {
      const response = await request(url, { headers: { authorization } });
      await pipeline(response.body, createWriteStream(local));
    }
  } else {
    throw new Error(`unknown client '${client}'`);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [client, op, endpoint, folder, local] = process.argv.slice(2) as [
    string,
    string,
    string,
    string,
    string,
  ];
  const started = performance.now();
  await run(client, op, endpoint, folder, local);
  console.log(JSON.stringify({ ms: performance.now() - started }));
}
