/**
 * One measured OneDrive workload in its own process, so that its time and peak RSS are its own.
 * Usage: onedrive-worker.ts <client> <op> <graphUrl> <key> <local>
 *   client: stowage | stowage-noverify (verify: false, no quickXorHash) | stowage-spool (spoolDir set to
 *   the temporary folder: a copy of the body for restarts) | plain (the undici uploader below)
 *   op: put (local file → bench/<key>), get (bench/<key> → local file)
 * Every client uses 10 MiB fragments (Stowage's default) and the bearer token "bench-token".
 * Prints one JSON line: { ms }.
 */
import { createReadStream, createWriteStream } from "node:fs";
import { open, stat } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";

export const FRAGMENT = 10 * 1024 * 1024;
export const TOKEN = "bench-token";

// undici is a dependency of core, not of the workspace root: resolved there (BENCH_CORE_PACKAGE,
// since this file runs bundled from a temporary folder).
const requireFromCore = createRequire(
  process.env.BENCH_CORE_PACKAGE ?? new URL("../packages/core/package.json", import.meta.url),
);

/** What the plain client uses of undici's API. */
interface Undici {
  request(
    url: string,
    options?: { method?: string; headers?: Record<string, string>; body?: Uint8Array | string },
  ): Promise<{
    statusCode: number;
    headers: Record<string, string | string[] | undefined>;
    body: Readable & { json(): Promise<unknown>; dump(): Promise<void>; text(): Promise<string> };
  }>;
}

/**
 * The plainest correct OneDrive upload: createUploadSession, then each 10 MiB fragment read from the
 * file into one reused buffer and PUT in order without Authorization; no retry, no hash, no spool.
 */
async function plainPut(undici: Undici, graphUrl: string, key: string, local: string): Promise<void> {
  const size = (await stat(local)).size;
  const created = await undici.request(`${graphUrl}/me/drive/root:/bench/${key}:/createUploadSession`, {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ item: { "@microsoft.graph.conflictBehavior": "replace" } }),
  });
  if (created.statusCode !== 200)
    throw new Error(`createUploadSession: ${created.statusCode} ${await created.body.text()}`);
  const { uploadUrl } = (await created.body.json()) as { uploadUrl: string };
  const file = await open(local, "r");
  const buffer = Buffer.allocUnsafe(FRAGMENT);
  try {
    for (let offset = 0; offset < size; offset += FRAGMENT) {
      const length = Math.min(FRAGMENT, size - offset);
      let filled = 0;
      while (filled < length) {
        filled += (await file.read(buffer, filled, length - filled, offset + filled)).bytesRead;
      }
      const answer = await undici.request(uploadUrl, {
        method: "PUT",
        headers: { "content-range": `bytes ${offset}-${offset + length - 1}/${size}` },
        body: buffer.subarray(0, length),
      });
      if (![200, 201, 202].includes(answer.statusCode)) {
        throw new Error(`fragment at ${offset}: ${answer.statusCode} ${await answer.body.text()}`);
      }
      await answer.body.dump();
    }
  } finally {
    await file.close();
  }
}

/** GET …/content, follow the 302 without Authorization, stream to the file. */
async function plainGet(undici: Undici, graphUrl: string, key: string, local: string): Promise<void> {
  const redirect = await undici.request(`${graphUrl}/me/drive/root:/bench/${key}:/content`, {
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  await redirect.body.dump();
  const location = redirect.headers.location;
  if (redirect.statusCode !== 302 || typeof location !== "string")
    throw new Error(`content: ${redirect.statusCode}`);
  const download = await undici.request(location);
  if (download.statusCode !== 200) throw new Error(`download: ${download.statusCode}`);
  await pipeline(download.body, createWriteStream(local));
}

async function run(client: string, op: string, graphUrl: string, key: string, local: string): Promise<void> {
  if (client === "plain") {
    const undici = (await import(requireFromCore.resolve("undici"))) as Undici;
    await (op === "put" ? plainPut : plainGet)(undici, graphUrl, key, local);
    return;
  }
  const { personalAccessToken } = await import("../packages/auth/src/index.js");
  const { createOneDriveStorage } = await import("../packages/onedrive/src/index.js");
  const storage = createOneDriveStorage({
    auth: personalAccessToken(TOKEN),
    graphUrl,
    root: "bench",
    createRoot: true,
    fragmentSize: FRAGMENT,
    ...(client === "stowage-spool" ? { spoolDir: tmpdir() } : {}),
  });
  const verify = client !== "stowage-noverify";
  try {
    if (op === "put") {
      const size = (await stat(local)).size;
      // What core's putFile sends: a file stream of known size.
      await storage.put(key, createReadStream(local, { highWaterMark: 1024 * 1024 }), { size, verify });
    } else {
      const download = await storage.get(key, { verify });
      await pipeline(
        Readable.fromWeb(download.body as import("node:stream/web").ReadableStream),
        createWriteStream(local),
      );
    }
  } finally {
    await storage.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [client, op, graphUrl, key, local] = process.argv.slice(2);
  if (!client || !op || !graphUrl || !key || !local) {
    console.error("usage: onedrive-worker.ts <client> <op> <graphUrl> <key> <local>");
    process.exit(2);
  }
  const started = performance.now();
  await run(client, op, graphUrl, key, local);
  console.log(JSON.stringify({ ms: Math.round(performance.now() - started) }));
}
