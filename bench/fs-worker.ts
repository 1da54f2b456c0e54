/**
 * One measured transfer in its own process, so that peak RSS is the transfer's alone.
 * Usage: fs-worker.ts <stowage|raw> <put|get> <folder> <bytes>
 * Prints one JSON line: { ms, maxRssMiB, sha256 }.
 */
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createFsStorage } from "@stowage/core";

const [client, op, folder, sizeText] = process.argv.slice(2) as [string, string, string, string];
const size = Number(sizeText);
const piece = 1024 * 1024;

async function* generate(hash: ReturnType<typeof createHash>): AsyncGenerator<Uint8Array> {
  for (let sent = 0; sent < size; sent += piece) {
    const bytes = new Uint8Array(Math.min(piece, size - sent));
    bytes.fill((sent / piece) % 251);
    hash.update(bytes);
    yield bytes;
  }
}

const hash = createHash("sha256");
const started = performance.now();
if (client === "stowage") {
  const storage = createFsStorage({ root: folder, createRoot: true });
  if (op === "put") await storage.put("big.bin", generate(hash), { size });
  else for await (const part of (await storage.get("big.bin")).body) hash.update(part);
} else if (op === "put") {
  await pipeline(generate(hash), createWriteStream(join(folder, "big.bin")));
} else {
  await pipeline(
    createReadStream(join(folder, "big.bin"), { highWaterMark: piece }),
    new Writable({
      write(chunk, _encoding, callback) {
        hash.update(chunk);
        callback();
      },
    }),
  );
}
const ms = performance.now() - started;
console.log(
  JSON.stringify({ ms, maxRssMiB: process.resourceUsage().maxRSS / 1024, sha256: hash.digest("hex") }),
);
