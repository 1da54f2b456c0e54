/**
 * One measured Google Drive workload in its own process, so that its time and peak RSS are its own.
 * Usage: gdrive-worker.ts <client> <op> <driveUrl> <key> <local>
 *   client: stowage (@stowage/gdrive) | stowage-noverify (the same, with verify: false: no MD5) |
 *           raw (a plain resumable uploader and downloader on undici)
 *   op: put (local file → bench/<key>), get (bench/<key> → local file),
 *       start (load the client and open it: the fixed cost included in every other figure)
 * The access token comes from BENCH_TOKEN. Prints one JSON line: { ms }.
 */
import { createReadStream, createWriteStream } from "node:fs";
import { open, stat } from "node:fs/promises";
import { createRequire } from "node:module";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";

/** Both clients send 8 MiB chunks (Stowage's default; a multiple of 256 KiB, as Drive requires). */
export const CHUNK = 8 * 1024 * 1024;
export const FOLDER = "bench";

/** What the raw client uses of undici's `request`. */
type UndiciRequest = (
  url: string,
  options: { method: string; headers?: Record<string, string>; body?: Uint8Array | string },
) => Promise<{
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  body: Readable & { json(): Promise<unknown>; text(): Promise<string>; dump(): Promise<void> };
}>;

// undici is a dependency of @stowage/core, not of the workspace root: resolved there, and loaded
// as published (BENCH_CORE_PACKAGE, since this file runs bundled from a temporary folder).
const requireFromCore = createRequire(
  process.env.BENCH_CORE_PACKAGE ?? new URL("../packages/core/package.json", import.meta.url),
);

function quote(value: string): string {
  return `'${value.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

/**
 * The raw client: what a careful hand-written uploader does with Drive's documented protocol and
 * nothing more — one lookup, a resumable session, 8 MiB chunks read into one reused buffer, 308 +
 * Range followed; and for a get, one lookup and a streamed `alt=media`. No retries, no hashing.
 */
async function raw(op: string, driveUrl: string, key: string, local: string, token: string): Promise<void> {
  const { request } = (await import(requireFromCore.resolve("undici"))) as { request: UndiciRequest };
  const auth = { authorization: `Bearer ${token}` };
  const find = async (parent: string, name: string, folder: boolean): Promise<string> => {
    const q = `${quote(parent)} in parents and name = ${quote(name)} and mimeType ${folder ? "=" : "!="} 'application/vnd.google-apps.folder' and trashed = false`;
    const url = `${driveUrl}/drive/v3/files?${new URLSearchParams({ q, fields: "files(id,name)" })}`;
    const response = await request(url, { method: "GET", headers: auth });
    const { files } = (await response.body.json()) as { files: Array<{ id: string; name: string }> };
    const id = files.find((file) => file.name === name)?.id;
    if (!id) throw new Error(`raw: no ${name} in ${parent}`);
    return id;
  };
  if (op === "start") return;
  const folder = await find("root", FOLDER, true);
  if (op === "put") {
    const { size } = await stat(local);
    const started = await request(`${driveUrl}/upload/drive/v3/files?uploadType=resumable`, {
      method: "POST",
      headers: {
        ...auth,
        "content-type": "application/json; charset=UTF-8",
        "x-upload-content-type": "application/octet-stream",
        "x-upload-content-length": String(size),
      },
      body: JSON.stringify({ name: key, parents: [folder] }),
    });
    await started.body.dump();
    const session = String(started.headers.location);
    const file = await open(local);
    const buffer = Buffer.allocUnsafe(CHUNK);
    try {
      for (let offset = 0; offset < size; ) {
        const { bytesRead } = await file.read(buffer, 0, Math.min(CHUNK, size - offset), offset);
        const response = await request(session, {
          method: "PUT",
          headers: { ...auth, "content-range": `bytes ${offset}-${offset + bytesRead - 1}/${size}` },
          body: buffer.subarray(0, bytesRead),
        });
        await response.body.dump();
        if (response.statusCode === 308) {
          const range = /^bytes=0-(\d+)$/.exec(String(response.headers.range ?? ""));
          offset = range ? Number(range[1]) + 1 : 0;
        } else if (response.statusCode === 200 || response.statusCode === 201) {
          offset = size;
        } else {
          throw new Error(`raw: chunk at ${offset} answered ${response.statusCode}`);
        }
      }
    } finally {
      await file.close();
    }
  } else if (op === "get") {
    const id = await find(folder, key, false);
    const response = await request(`${driveUrl}/drive/v3/files/${id}?alt=media`, {
      method: "GET",
      headers: auth,
    });
    await pipeline(response.body, createWriteStream(local));
  }
}

async function stowage(
  op: string,
  driveUrl: string,
  key: string,
  local: string,
  token: string,
  verify: boolean,
): Promise<void> {
  const { personalAccessToken } = await import("../packages/auth/src/index.js");
  const { createGoogleDriveStorage } = await import("../packages/gdrive/src/index.js");
  const storage = createGoogleDriveStorage({
    auth: personalAccessToken(token),
    root: FOLDER,
    driveUrl,
    chunkSize: CHUNK,
  });
  if (op === "put") {
    const { size } = await stat(local);
    await storage.put(key, createReadStream(local, { highWaterMark: 1024 * 1024 }), { size, verify });
  } else if (op === "get") {
    const download = await storage.get(key, { verify });
    await pipeline(
      Readable.fromWeb(download.body as import("node:stream/web").ReadableStream),
      createWriteStream(local),
    );
  }
  await storage.close();
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [client, op, driveUrl, key, local] = process.argv.slice(2) as [
    string,
    string,
    string,
    string,
    string,
  ];
  const token = process.env.BENCH_TOKEN!;
  const started = performance.now();
  if (client === "stowage" || client === "stowage-noverify") {
    await stowage(op, driveUrl, key, local, token, client === "stowage");
  } else if (client === "raw") await raw(op, driveUrl, key, local, token);
  else throw new Error(`unknown client '${client}'`);
  console.log(JSON.stringify({ ms: performance.now() - started }));
}
