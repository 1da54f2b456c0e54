/**
 * Interoperation with the rclone client (Debian rclone) on Apache mod_dav_fs, both ways: what Stowage
 * writes, `rclone lsjson` lists and `rclone cat` reads byte for byte; what `rclone rcat` and
 * `rclone copyto` write, Stowage lists and reads byte for byte.
 */
import { execFile } from "node:child_process";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { basicCredentials } from "@stowage/auth";
import type { Entry } from "@stowage/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createWebDavStorage, type WebDavStorage } from "../src/index.js";
import { password, startApache, type TestServer, username } from "./support/servers.js";

let apache: TestServer;
let env: NodeJS.ProcessEnv;
let scratch: string;

/** Runs rclone with the `dav:` remote (defined by environment variables) and returns its stdout as bytes. */
function rclone(args: string[], input?: Uint8Array): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      "rclone",
      args,
      { env, encoding: "buffer", maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`rclone ${args[0]} failed: ${stderr.toString()}`));
        else resolve(stdout);
      },
    );
    if (input) child.stdin?.end(input);
  });
}

beforeAll(async () => {
  apache = await startApache();
  scratch = await mkdtemp(join(tmpdir(), "stowage-interop-"));
  const obscured = (await new Promise<string>((resolve, reject) =>
    execFile("rclone", ["obscure", password], (err, stdout) => (err ? reject(err) : resolve(stdout.trim()))),
  )) as string;
  env = {
    ...process.env,
    RCLONE_CONFIG: join(scratch, "no-such.conf"),
    RCLONE_CONFIG_DAV_TYPE: "webdav",
    RCLONE_CONFIG_DAV_URL: apache.url,
    RCLONE_CONFIG_DAV_VENDOR: "other",
    RCLONE_CONFIG_DAV_USER: username,
    RCLONE_CONFIG_DAV_PASS: obscured,
  };
}, 60_000);

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
  await apache?.stop();
}, 30_000);

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

function storageAt(root: string): WebDavStorage {
  return createWebDavStorage({
    url: apache.url,
    root,
    auth: basicCredentials({ username, password }),
    createRoot: true,
  });
}

async function collect(iterable: AsyncIterable<Entry>): Promise<Entry[]> {
  const out: Entry[] = [];
  for await (const entry of iterable) out.push(entry);
  return out;
}

// Names that need escaping in URLs, spaces, non-ASCII, nesting; and sizes from empty to several MiB.
const objects: Array<[string, Uint8Array]> = [
  ["plain.txt", new TextEncoder().encode("plain")],
  ["empty.bin", new Uint8Array(0)],
  ["folder with space/ünïcödé #1 100%.bin", randomBytes(70_000)],
  ["a/b/c/what?&x=y+z.dat", randomBytes(1234)],
  ["big/stream.bin", randomBytes(5 * 1024 * 1024 + 17)],
];

describe("interoperation with the rclone client on Apache", () => {
  it("objects Stowage writes are listed by rclone lsjson and read by rclone cat, identical", async () => {
    const root = `interop/${randomUUID()}`;
    const storage = storageAt(root);
    try {
      for (const [key, data] of objects) {
        // The big one as a stream of unknown length, the others as bytes.
        const body =
          data.byteLength > 1024 * 1024
            ? (async function* () {
                for (let i = 0; i < data.byteLength; i += 65_536) yield data.subarray(i, i + 65_536);
              })()
            : data;
        await storage.put(key, body);
      }
      const listed = JSON.parse(
        (await rclone(["lsjson", "-R", "--files-only", `dav:${root}`])).toString(),
      ) as Array<{ Path: string; Size: number }>;
      expect(listed.map((e) => [e.Path, e.Size]).sort()).toEqual(
        objects.map(([key, data]) => [key, data.byteLength]).sort(),
      );
      for (const [key, data] of objects) {
        const back = await rclone(["cat", `dav:${root}/${key}`]);
        expect(sha256(back), key).toBe(sha256(data));
      }
    } finally {
      await storage.close();
    }
  });

  it("objects rclone writes (rcat, copyto) are listed and read by Stowage, identical", async () => {
    const root = `interop/${randomUUID()}`;
    const storage = storageAt(root);
    try {
      const [viaRcat, viaCopy] = [objects.slice(0, 3), objects.slice(3)];
      for (const [key, data] of viaRcat) await rclone(["rcat", `dav:${root}/${key}`], data);
      for (const [key, data] of viaCopy) {
        const local = join(scratch, randomUUID());
        await writeFile(local, data);
        await rclone(["copyto", local, `dav:${root}/${key}`]);
      }
      const listed = await collect(storage.list("", { recursive: true }));
      expect(listed.map((e) => [e.key, e.size]).sort()).toEqual(
        objects.map(([key, data]) => [key, data.byteLength]).sort(),
      );
      for (const [key, data] of objects) {
        expect(sha256(await (await storage.get(key)).bytes()), key).toBe(sha256(data));
        expect((await storage.stat(key)).size).toBe(data.byteLength);
      }
    } finally {
      await storage.close();
    }
  });
});
