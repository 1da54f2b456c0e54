import { createHash } from "node:crypto";
import { connect, isStorageError, type Logger, type StorageError } from "@stowage/core";
import {
  DRIVE_FOLDER_MIME,
  DRIVE_SCOPE,
  defaultOAuthClient,
  readBody,
  sendJson,
  startHttpServer,
} from "@stowage/emulators";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  createGoogleDriveStorage,
  type GoogleDriveStorage,
  type GoogleDriveStorageOptions,
} from "../src/index.js";
import { bytesOf, type Emulators, expectOneFile, startEmulators } from "./support/emulators.js";

const CHUNK = 262_144;
const app = defaultOAuthClient.clientId;
let emulators: Emulators;
const storages: GoogleDriveStorage[] = [];
const warnings: string[] = [];
const logger: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: (_obj, msg) => void warnings.push(msg ?? ""),
  error: () => undefined,
};

beforeEach(async () => {
  emulators = await startEmulators();
  warnings.length = 0;
});

afterEach(async () => {
  await Promise.all(storages.splice(0).map((storage) => storage.close()));
  await emulators.close();
});

function open(options: Partial<GoogleDriveStorageOptions> = {}): GoogleDriveStorage {
  const storage = createGoogleDriveStorage({
    auth: emulators.tokenSource(),
    root: "Backups/pc1",
    driveUrl: emulators.drive.url,
    chunkSize: CHUNK,
    createRoot: true,
    retry: { minDelayMs: 1, maxDelayMs: 20 },
    logger,
    ...options,
  });
  storages.push(storage);
  return storage;
}

async function failure(promise: Promise<unknown>): Promise<StorageError> {
  try {
    await promise;
  } catch (err) {
    if (isStorageError(err)) return err;
    throw err;
  }
  throw new Error("expected the call to fail");
}

async function collect(storage: GoogleDriveStorage, folder = "", recursive = false) {
  const out = [];
  for await (const entry of storage.list(folder, { recursive })) out.push(entry);
  return out;
}

const folderCreates = () =>
  emulators.drive.requests.filter((r) => r.method === "POST" && r.path === "/drive/v3/files");

/** Deletes an item as another client (with the full scope) would, behind the storage's back. */
async function deleteBehindTheBack(id: string): Promise<void> {
  const token = emulators.oauth.issueAccessToken({ scopes: [DRIVE_SCOPE] });
  const response = await fetch(`${emulators.drive.url}/drive/v3/files/${id}`, {
    method: "DELETE",
    headers: { authorization: `Bearer ${token}` },
  });
  expect(response.status).toBe(204);
}

describe("the path index", () => {
  it("concurrent puts into a new folder create it once (single flight per folder path)", async () => {
    const storage = open();
    await storage.createRoot();
    const before = folderCreates().length;
    await Promise.all(Array.from({ length: 8 }, (_, i) => storage.put(`new/dir/x${i}.bin`, `x${i}`)));
    expect(emulators.drive.find("Backups/pc1/new")).toHaveLength(1);
    expect(emulators.drive.find("Backups/pc1/new/dir")).toHaveLength(1);
    expect(folderCreates().length - before).toBe(2);
    expect((await collect(storage, "new/dir")).map((entry) => entry.key).sort()).toEqual(
      Array.from({ length: 8 }, (_, i) => `new/dir/x${i}.bin`).sort(),
    );
  });

  it("resolves each folder once, then reuses its id", async () => {
    const storage = open();
    await storage.put("a/b/one.bin", "1");
    const lookups = () =>
      emulators.drive.requests.filter((r) => r.query.q?.includes(`mimeType = '${DRIVE_FOLDER_MIME}'`)).length;
    const after = lookups();
    await storage.put("a/b/two.bin", "2");
    await storage.stat("a/b/one.bin");
    expect(lookups()).toBe(after);
  });

  it("a folder deleted behind the storage's back is found gone by the next put, and made again", async () => {
    const storage = open();
    await storage.put("gone/x.bin", "x");
    await deleteBehindTheBack(emulators.drive.find("Backups/pc1/gone")[0]!.id);
    await storage.put("gone/y.bin", "y");
    expect(emulators.drive.find("Backups/pc1/gone")).toHaveLength(1);
    expectOneFile(emulators.drive, "Backups/pc1/gone/y.bin", new TextEncoder().encode("y"));
  });
});

describe("names", () => {
  it("keys are case-sensitive: names are filtered exactly, though Drive's name = ignores case", async () => {
    const storage = open();
    await storage.put("Report.txt", "upper");
    await storage.put("report.txt", "lower");
    expect(emulators.drive.find("Backups/pc1/Report.txt")).toHaveLength(1);
    expect(emulators.drive.find("Backups/pc1/report.txt")).toHaveLength(1);
    expect(await (await storage.get("Report.txt")).text()).toBe("upper");
    await expect(storage.stat("REPORT.txt")).rejects.toMatchObject({ code: "NotFound" });
    expect(warnings).toEqual([]);
  });

  it("quotes and backslashes are escaped in q", async () => {
    const storage = open();
    await storage.put("it's a \\ name", "q");
    const queries = emulators.drive.requests.map((r) => r.query.q).filter(Boolean);
    expect(queries).toContain(
      `'${emulators.drive.find("Backups/pc1")[0]!.id}' in parents and name = 'it\\'s a \\\\ name' and mimeType != '${DRIVE_FOLDER_MIME}' and trashed = false`,
    );
    expect(await (await storage.get("it's a \\ name")).text()).toBe("q");
  });

  it("Google Docs and names no key can stand for are left out of listings", async () => {
    const storage = open();
    await storage.createRoot();
    const folder = emulators.drive.find("Backups/pc1")[0]!.id;
    emulators.drive.addFile({
      name: "notes",
      parent: folder,
      appId: app,
      mimeType: "application/vnd.google-apps.document",
    });
    emulators.drive.addFile({ name: "a/b", parent: folder, appId: app, content: "slash" });
    emulators.drive.addFile({ name: "plain.bin", parent: folder, appId: app, content: "p" });
    expect((await collect(storage)).map((entry) => entry.key)).toEqual(["plain.bin"]);
    expect(warnings.some((warning) => warning.includes("cannot be a key"))).toBe(true);
  });
});

describe("put", () => {
  it("replaces content in place (files.update): same id, a new version, never a second file", async () => {
    const storage = open();
    await storage.put("v.bin", "first");
    const [file] = emulators.drive.find("Backups/pc1/v.bin");
    await storage.put("v.bin", "second");
    const big = bytesOf(3 * CHUNK + 1, 3);
    await storage.put("v.bin", big);
    expectOneFile(emulators.drive, "Backups/pc1/v.bin", big);
    const now = emulators.drive.find("Backups/pc1/v.bin")[0]!;
    expect(now.id).toBe(file!.id);
    expect(now.version).toBe(3);
    expect(
      emulators.drive.requests.filter((r) => r.method === "PATCH" && r.path.startsWith("/upload/")),
    ).toHaveLength(2);
  });

  it("sends small objects as one multipart request and large ones through a resumable session", async () => {
    const storage = open();
    await storage.put("small.bin", bytesOf(CHUNK));
    await storage.put("large.bin", bytesOf(CHUNK + 1));
    const types = emulators.drive.requests
      .filter((r) => r.path.startsWith("/upload/") && !r.query.upload_id)
      .map((r) => r.query.uploadType);
    expect(types).toEqual(["multipart", "resumable"]);
    expect(emulators.drive.requests.filter((r) => r.query.upload_id !== undefined)).toHaveLength(2);
  });

  it("the entry carries Drive's md5Checksum, which core checks against the bytes sent", async () => {
    const storage = open();
    const entry = await storage.put("h.bin", "hash me");
    expect(entry.hashes?.md5).toBe(createHash("md5").update("hash me").digest("hex"));
    expect(entry.hashes?.md5).toBe(emulators.drive.find("Backups/pc1/h.bin")[0]!.md5Checksum);
  });

  it("sends the bearer token to a session URI on the upload origin only", async () => {
    const seen: Array<string | undefined> = [];
    // A stand-in for a session URI on another host: no Drive server answers with one.
    const elsewhere = await startHttpServer(async (req, res) => {
      seen.push(req.headers.authorization);
      await readBody(req);
      const [, end, total] = /^bytes \d+-(\d+)\/(\d+)$/.exec(String(req.headers["content-range"])) ?? [];
      if (Number(end) + 1 < Number(total)) {
        res.writeHead(308, { range: `bytes=0-${end}`, "content-length": "0" });
        res.end();
        return;
      }
      sendJson(res, 201, {
        id: "x",
        name: "far.bin",
        mimeType: "application/octet-stream",
        size: String(CHUNK + 1),
      });
    });
    try {
      emulators.drive.faults.add({
        method: "POST",
        path: /uploadType=resumable/,
        respond: { status: 200, headers: { location: `${elsewhere.url}/session?upload_id=1` } },
      });
      const storage = open();
      await storage.put("far.bin", bytesOf(CHUNK + 1), { verify: false });
      expect(seen.length).toBeGreaterThan(0);
      expect(seen.every((header) => header === undefined)).toBe(true);
    } finally {
      await elsewhere.close();
    }
  });
});

describe("delete", () => {
  it("deletes for good by default", async () => {
    const storage = open();
    await storage.put("d.bin", "d");
    const id = emulators.drive.find("Backups/pc1/d.bin")[0]!.id;
    await storage.delete("d.bin");
    expect(emulators.drive.file(id)).toBeUndefined();
  });

  it("with trash: true moves to the Drive trash, where the user can restore it", async () => {
    const storage = open({ trash: true });
    await storage.put("t.bin", "t");
    const id = emulators.drive.find("Backups/pc1/t.bin")[0]!.id;
    await storage.delete("t.bin");
    expect(emulators.drive.file(id)?.trashed).toBe(true);
    await expect(storage.stat("t.bin")).rejects.toMatchObject({ code: "NotFound" });
    expect(await collect(storage)).toEqual([]);
  });
});

describe("get", () => {
  it("keeps only the asked range when a server ignores Range and sends the whole object", async () => {
    const storage = open();
    const data = bytesOf(1000, 4);
    await storage.put("r.bin", data);
    emulators.drive.faults.add({ method: "GET", path: /alt=media/, respond: { status: 200, body: data } });
    const part = await (await storage.get("r.bin", { range: { offset: 100, length: 50 } })).bytes();
    expect(Buffer.from(part)).toEqual(Buffer.from(data.subarray(100, 150)));
  });
});

describe("the drive.file scope", () => {
  it("a folder made in the web UI is invisible: the app makes its own, and other tools' files stay hidden", async () => {
    const userFolder = emulators.drive.addFile({ name: "Backups", folder: true });
    emulators.drive.addFile({ name: "pc1", parent: userFolder.id, folder: true });
    const storage = open({ createRoot: false });
    expect((await failure(storage.stat("x.bin"))).code).toBe("FolderMissing");
    await storage.createRoot();
    await storage.put("x.bin", "mine");
    expect(emulators.drive.find("Backups")).toHaveLength(2);
    expect(emulators.drive.find("Backups/pc1/x.bin")[0]!.appId).toBe(app);
  });
});

describe("shared drives", () => {
  it("works inside a shared drive, whose id is its root folder's", async () => {
    const driveId = emulators.drive.addSharedDrive("Team");
    const storage = open({ sharedDriveId: driveId });
    await storage.put("s/one.bin", "1");
    expect((await collect(storage, "", true)).map((entry) => entry.key)).toEqual(["s/one.bin"]);
    expect(await (await storage.get("s/one.bin")).text()).toBe("1");
    const [file] = emulators.drive.find("Backups/pc1/s/one.bin", { driveId });
    expect(file?.driveId).toBe(driveId);
    expect(emulators.drive.find("Backups/pc1/s/one.bin")).toHaveLength(0);
    expect(storage.location).toBe(`gdrive://Backups/pc1?shared-drive-id=${driveId}`);
  });

  it("test() reports a shared drive that does not exist at the credentials step", async () => {
    const report = await open({ sharedDriveId: "0Anope" }).test();
    expect(report.ok).toBe(false);
    expect(report.steps[0]).toMatchObject({
      name: "credentials",
      ok: false,
      error: { code: "InvalidConfig" },
    });
    expect(report.steps[0]!.error!.message).toContain("the shared drive '0Anope' does not exist");
  });
});

describe("options and connection URLs", () => {
  it("refuses a chunk size that is not a multiple of 256 KiB, naming the option", async () => {
    const error = await failure(Promise.resolve().then(() => open({ chunkSize: 300_000 })));
    expect(error.code).toBe("InvalidConfig");
    expect(error.message).toBe(
      "gdrive open: option 'chunkSize' must be a positive multiple of 262,144 bytes (256 KiB), not 300000 (Drive takes resumable chunks in multiples of 256 KiB; use e.g. 8388608 (8 MiB, the default) or 262144)",
    );
    const fromUrl = await failure(
      connect(`gdrive://Backups?token=abc&drive-url=${emulators.drive.url}&chunk-size=1000`),
    );
    expect(fromUrl.code).toBe("InvalidConfig");
    expect(fromUrl.message).toContain("parameter 'chunk-size' must be a positive multiple of 262,144 bytes");
  });

  it("refuses a plain-http API URL that is not on loopback", async () => {
    const error = await failure(Promise.resolve().then(() => open({ driveUrl: "http://drive.example.com" })));
    expect(error.code).toBe("InvalidConfig");
    expect(error.message).toContain("option 'driveUrl' must be https");
  });

  it("connect() opens gdrive:// URLs with every documented parameter; the location holds no secret", async () => {
    const token = emulators.oauth.issueAccessToken({ scopes: [DRIVE_SCOPE] });
    const url = `gdrive://Backups/pc1?token=${token}&drive-url=${encodeURIComponent(emulators.drive.url)}&chunk-size=262144&duplicates=error&trash=true&create-root=true&page-size=10`;
    const storage = (await connect(url)) as GoogleDriveStorage;
    storages.push(storage);
    expect(storage.provider).toBe("gdrive");
    expect(storage.location).toBe("gdrive://Backups/pc1");
    await storage.put("c.bin", "connected");
    expect(await (await storage.get("c.bin")).text()).toBe("connected");
    expect(emulators.drive.find("Backups/pc1/c.bin")).toHaveLength(1);
  });

  it("connect() with direct OAuth parameters refreshes through the token URL", async () => {
    const refreshToken = emulators.oauth.issueRefreshToken({ scopes: [DRIVE_SCOPE] });
    const query = new URLSearchParams({
      "client-id": defaultOAuthClient.clientId,
      "client-secret": defaultOAuthClient.clientSecret,
      "refresh-token": refreshToken,
      "token-url": emulators.oauth.tokenUrl,
      "drive-url": emulators.drive.url,
      "create-root": "true",
    });
    const storage = (await connect(`gdrive:///Backups/direct?${query}`)) as GoogleDriveStorage;
    storages.push(storage);
    const report = await storage.test({ write: true });
    expect(report.ok, JSON.stringify(report)).toBe(true);
    expect(emulators.oauth.counters.tokenRequests).toBe(1);
  });

  it("an unknown parameter names the closest valid one; missing credentials are named too", async () => {
    const typo = await failure(connect(`gdrive://Backups?token=t&chunksize=262144`));
    expect(typo.code).toBe("InvalidConfig");
    expect(typo.hint).toBe("did you mean 'chunk-size'?");
    const bare = await failure(connect(`gdrive://Backups?drive-url=${emulators.drive.url}`));
    expect(bare.code).toBe("InvalidConfig");
    expect(bare.message).toContain("gdrive needs credentials");
  });
});
