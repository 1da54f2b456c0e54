/**
 * Stowage quickstart: a bucket of blobs on local disk.
 *
 * Run with `pnpm demo`. It opens a `file://` storage in a temporary folder, puts a few objects (one
 * streamed, with a progress line), lists them, reads each back and verifies it, deletes them, and
 * prints every step. Swap the URL for `s3://…`, `webdavs://…` or `onedrive://…` and nothing else
 * changes.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { connect, isStorageError } from "@stowage/core";

const folder = await mkdtemp(join(tmpdir(), "stowage-demo-"));
const url = `${pathToFileURL(join(folder, "backups", "pc1")).href}?create-root=true`;
const step = (text: string) => console.log(`• ${text}`);

try {
  const storage = await connect(url);
  step(`opened ${storage.location} (provider ${storage.provider})`);

  const report = await storage.test({ write: true });
  step(`test(): ${report.steps.map((s) => `${s.name} ${s.ok ? "ok" : "FAILED"} ${s.ms} ms`).join(", ")}`);

  const objects = new Map<string, Uint8Array>([
    ["notes/hello.txt", new TextEncoder().encode("Hello from Stowage!\n")],
    ["photos/2026/café ☕.jpg", randomBytes(200_000)],
    ["volumes/0001.bin", randomBytes(24 * 1024 * 1024)],
  ]);
  for (const [key, bytes] of objects) {
    // Stream the big one in 1 MiB pieces, as a backup tool would, to show progress.
    const body =
      bytes.byteLength > 1024 * 1024
        ? (async function* () {
            for (let i = 0; i < bytes.byteLength; i += 1024 * 1024) yield bytes.subarray(i, i + 1024 * 1024);
          })()
        : bytes;
    let lastShown = -1;
    const entry = await storage.put(key, body, {
      size: bytes.byteLength,
      onProgress: ({ bytes: sent, total }) => {
        const percent = total ? Math.floor((sent / total) * 100) : 0;
        if (percent >= lastShown + 25 || sent === total) {
          lastShown = percent;
          console.log(
            `  put ${key}: ${sent.toLocaleString("en")} / ${total?.toLocaleString("en")} bytes (${percent}%)`,
          );
        }
      },
    });
    step(`put ${entry.key} (${entry.size} bytes)`);
  }

  step("list (recursive):");
  for await (const entry of storage.list("", { recursive: true })) {
    console.log(`    ${entry.key}  ${entry.size} bytes  ${entry.modified?.toISOString()}`);
  }
  step("list (top level):");
  for await (const entry of storage.list()) console.log(`    ${entry.kind.padEnd(6)} ${entry.key}`);

  for (const [key, bytes] of objects) {
    const back = await (await storage.get(key)).bytes();
    const same =
      createHash("sha256").update(back).digest("hex") === createHash("sha256").update(bytes).digest("hex");
    if (!same) throw new Error(`${key} came back different`);
    step(`get ${key}: ${back.byteLength} bytes, verified`);
  }

  const range = await (await storage.get("notes/hello.txt", { range: { offset: 0, length: 5 } })).text();
  step(`get notes/hello.txt bytes 0–4: "${range}"`);

  try {
    await storage.stat("no/such/key");
  } catch (err) {
    if (!isStorageError(err, "NotFound")) throw err;
    step(`stat of a missing key fails clearly: ${err.code}: ${err.message}`);
  }

  for (const key of objects.keys()) await storage.delete(key);
  let left = 0;
  for await (const _ of storage.list("", { recursive: true })) left++;
  step(`deleted ${objects.size} objects; ${left} left`);
  await storage.close();
  step("done");
} finally {
  await rm(folder, { recursive: true, force: true });
}
