import { isStorageError, type Logger, type StorageError } from "@stowage/core";
import { DRIVE_FOLDER_MIME, type DriveFileView, defaultOAuthClient } from "@stowage/emulators";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createGoogleDriveStorage, type DuplicatesPolicy, type GoogleDriveStorage } from "../src/index.js";
import { type Emulators, startEmulators } from "./support/emulators.js";

const app = defaultOAuthClient.clientId;
let emulators: Emulators;
let rootId: string;
let older: DriveFileView;
let newer: DriveFileView;
const storages: GoogleDriveStorage[] = [];
const warnings: Array<{ obj: object; msg?: string }> = [];

const logger: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: (obj, msg) => void warnings.push({ obj, msg }),
  error: () => undefined,
};

/**
 * Two files named `twin.bin` in the root folder, made directly in Drive (as two tools racing would
 * leave them), the second one modified later.
 */
beforeEach(async () => {
  emulators = await startEmulators();
  warnings.length = 0;
  rootId = emulators.drive.addFile({ name: "Backups", folder: true, appId: app }).id;
  older = emulators.drive.addFile({
    name: "twin.bin",
    parent: rootId,
    appId: app,
    content: "the older copy",
    modifiedTime: new Date("2025-01-01T00:00:00Z"),
  });
  newer = emulators.drive.addFile({
    name: "twin.bin",
    parent: rootId,
    appId: app,
    content: "the newest copy!",
    modifiedTime: new Date("2025-06-01T00:00:00Z"),
  });
});

afterEach(async () => {
  await Promise.all(storages.splice(0).map((storage) => storage.close()));
  await emulators.close();
});

function open(duplicates?: DuplicatesPolicy): GoogleDriveStorage {
  const storage = createGoogleDriveStorage({
    auth: emulators.tokenSource(),
    root: "Backups",
    driveUrl: emulators.drive.url,
    duplicates,
    logger,
    pageSize: 1,
  });
  storages.push(storage);
  return storage;
}

async function collect(storage: GoogleDriveStorage, folder = "") {
  const out = [];
  for await (const entry of storage.list(folder)) out.push(entry);
  return out;
}

async function conflict(promise: Promise<unknown>): Promise<StorageError> {
  try {
    await promise;
  } catch (err) {
    if (isStorageError(err, "Conflict")) return err;
    throw err;
  }
  throw new Error("expected Conflict");
}

const twins = () => emulators.drive.find("Backups/twin.bin");

describe("duplicates: 'newest' (default)", () => {
  it("stat, get and list use the most recently modified copy, with one warning naming the key", async () => {
    const storage = open();
    expect((await storage.stat("twin.bin")).size).toBe("the newest copy!".length);
    expect(await (await storage.get("twin.bin")).text()).toBe("the newest copy!");
    const listed = await collect(storage);
    expect(listed.map((entry) => [entry.key, entry.size])).toEqual([["twin.bin", 16]]);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.msg).toContain("2 files in one Drive folder are named 'twin.bin'");
    expect(warnings[0]!.obj).toMatchObject({ key: "twin.bin" });
  });

  it("put replaces the newest copy's content in place and never adds a third", async () => {
    const storage = open();
    await storage.put("twin.bin", "replaced");
    await storage.put("twin.bin", "replaced again");
    expect(twins()).toHaveLength(2);
    expect(emulators.drive.content(newer.id).toString()).toBe("replaced again");
    expect(emulators.drive.content(older.id).toString()).toBe("the older copy");
    expect(await (await storage.get("twin.bin")).text()).toBe("replaced again");
  });

  it("delete removes every copy, so no older one takes the key's place", async () => {
    const storage = open();
    await storage.delete("twin.bin");
    expect(twins()).toHaveLength(0);
    await expect(storage.stat("twin.bin")).rejects.toMatchObject({ code: "NotFound" });
  });

  it("duplicate folders: the newest one is the folder, in lookups and listings alike", async () => {
    const oldDir = emulators.drive.addFile({
      name: "dir",
      parent: rootId,
      folder: true,
      appId: app,
      modifiedTime: new Date("2025-01-01T00:00:00Z"),
    });
    const newDir = emulators.drive.addFile({
      name: "dir",
      parent: rootId,
      folder: true,
      appId: app,
      modifiedTime: new Date("2025-03-01T00:00:00Z"),
    });
    emulators.drive.addFile({ name: "a.bin", parent: oldDir.id, appId: app, content: "in the old dir" });
    emulators.drive.addFile({ name: "a.bin", parent: newDir.id, appId: app, content: "in the new dir" });
    const storage = open();
    expect(await (await storage.get("dir/a.bin")).text()).toBe("in the new dir");
    const top = (await collect(storage)).map((entry) => `${entry.kind}:${entry.key}`).sort();
    expect(top).toEqual(["file:twin.bin", "folder:dir"]);
    await storage.put("dir/b.bin", "b");
    expect(emulators.drive.find("Backups/dir/b.bin")[0]!.parents).toEqual([newDir.id]);
    expect(emulators.drive.files().filter((file) => file.mimeType === DRIVE_FOLDER_MIME)).toHaveLength(3);
  });
});

describe("duplicates: 'error'", () => {
  it("stat, get, put and list fail with Conflict naming the key, and nothing is written", async () => {
    const storage = open("error");
    for (const call of [
      () => storage.stat("twin.bin"),
      () => storage.get("twin.bin"),
      () => storage.put("twin.bin", "new"),
      () => collect(storage),
    ]) {
      const error = await conflict(call());
      expect(error.key).toBe("twin.bin");
      expect(error.message).toMatch(/: (2|at least 2) files in one Drive folder are named 'twin\.bin'/);
      expect(error.hint).toContain("duplicates: 'newest'");
    }
    expect(
      twins()
        .map((file) => emulators.drive.content(file.id).toString())
        .sort(),
    ).toEqual(["the newest copy!", "the older copy"]);
    expect(warnings).toHaveLength(0);
  });

  it("a key without duplicates works as usual", async () => {
    const storage = open("error");
    await storage.put("single.bin", "one");
    expect(await (await storage.get("single.bin")).text()).toBe("one");
  });
});
