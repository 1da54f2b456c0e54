import { createHash } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  DRIVE_FILE_SCOPE,
  DRIVE_FOLDER_MIME,
  DRIVE_SCOPE,
  type DriveEmulator,
  type DriveEmulatorOptions,
  defaultOAuthClient,
  driveErrors,
  type OAuthProvider,
  startDriveEmulator,
  startOAuthProvider,
} from "../src/index.js";

const KiB = 1024;
const CHUNK = 256 * KiB;
const otherApp = { clientId: "another-app", clientSecret: "another-app-secret" };

let oauth: OAuthProvider;
let clock: number;
const emulators: DriveEmulator[] = [];
let drive: DriveEmulator;
/** A token of the default client with the full `drive` scope. */
let full: string;
/** A token of the default client with the `drive.file` scope. */
let appToken: string;

beforeEach(async () => {
  clock = Date.parse("2026-01-01T00:00:00Z");
  oauth = await startOAuthProvider({
    rotateRefreshTokens: false,
    clients: [defaultOAuthClient, otherApp],
    now: () => clock,
  });
  drive = await start();
  full = oauth.issueAccessToken({ scopes: [DRIVE_SCOPE] });
  appToken = oauth.issueAccessToken({ scopes: [DRIVE_FILE_SCOPE] });
});

afterEach(async () => {
  await Promise.all(emulators.splice(0).map((emulator) => emulator.close()));
  await oauth.close();
});

async function start(options: Partial<DriveEmulatorOptions> = {}): Promise<DriveEmulator> {
  const emulator = await startDriveEmulator({ oauth, now: () => clock, ...options });
  emulators.push(emulator);
  return emulator;
}

interface Call {
  token?: string | null;
  query?: Record<string, string | number | boolean>;
  json?: unknown;
  body?: Uint8Array | string;
  headers?: Record<string, string>;
  on?: DriveEmulator;
}

/** A request as a Drive client sends it: a path below the emulator (or an absolute session URI). */
async function call(method: string, path: string, options: Call = {}): Promise<Response> {
  const url = new URL(path, (options.on ?? drive).url);
  for (const [name, value] of Object.entries(options.query ?? {})) url.searchParams.set(name, String(value));
  const headers: Record<string, string> = { ...options.headers };
  const token = options.token === undefined ? full : options.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  let body: string | Buffer | undefined;
  if (options.json !== undefined) {
    headers["content-type"] = "application/json; charset=UTF-8";
    body = JSON.stringify(options.json);
  } else if (options.body !== undefined) {
    body = typeof options.body === "string" ? options.body : Buffer.from(options.body);
  }
  return fetch(url, { method, headers, body, redirect: "manual" });
}

async function json(response: Response, status: number): Promise<Record<string, unknown>> {
  const text = await response.text();
  expect(response.status, text).toBe(status);
  return JSON.parse(text) as Record<string, unknown>;
}

/** Checks a failure is in Drive's shape: `{error: {code, message, errors: [{domain, reason, message}]}}`. */
async function driveFailure(response: Response, status: number, reason: string) {
  const body = (await json(response, status)) as {
    error: { code: number; message: string; errors: Array<Record<string, string>> };
  };
  expect(body.error.code).toBe(status);
  expect(typeof body.error.message).toBe("string");
  expect(body.error.errors[0]).toMatchObject({ reason, message: body.error.message });
  expect(typeof body.error.errors[0]!.domain).toBe("string");
  return body.error;
}

async function listAll(query: Record<string, string | number>, token = full) {
  const names: string[] = [];
  let pageToken: string | undefined;
  let pages = 0;
  do {
    const page = (await json(
      await call("GET", "/drive/v3/files", {
        token,
        query: { ...query, ...(pageToken ? { pageToken } : {}) },
      }),
      200,
    )) as { files: Array<{ name: string }>; nextPageToken?: string };
    names.push(...page.files.map((file) => file.name));
    pageToken = page.nextPageToken;
    pages++;
  } while (pageToken);
  return { names, pages };
}

function md5(bytes: Uint8Array | string): string {
  return createHash("md5").update(bytes).digest("hex");
}

function bytes(size: number, seed = 7): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = (i * 31 + seed) & 0xff;
  return out;
}

async function createFolder(name: string, parent = "root", token = full): Promise<string> {
  const body = await json(
    await call("POST", "/drive/v3/files", {
      token,
      json: { name, mimeType: DRIVE_FOLDER_MIME, parents: [parent] },
    }),
    200,
  );
  return body.id as string;
}

function multipart(metadata: object, content: Uint8Array | string, boundary = "b0und4ry") {
  const head = `--${boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n${JSON.stringify(metadata)}\r\n--${boundary}\r\nContent-Type: application/octet-stream\r\n\r\n`;
  const tail = `\r\n--${boundary}--`;
  return {
    body: Buffer.concat([Buffer.from(head), Buffer.from(content), Buffer.from(tail)]),
    headers: { "content-type": `multipart/related; boundary=${boundary}` },
  };
}

async function initiate(metadata: object, headers: Record<string, string> = {}, query = {}) {
  const response = await call("POST", "/upload/drive/v3/files", {
    query: { uploadType: "resumable", ...query },
    json: metadata,
    headers,
  });
  expect(response.status).toBe(200);
  const location = response.headers.get("location");
  expect(location).toMatch(/upload_id=/);
  return location!;
}

describe("files.list: the q subset", () => {
  it("'<id>' in parents lists a folder's children, and 'root' stands for the My Drive root", async () => {
    const folder = await createFolder("Backups");
    await createFolder("inner", folder);
    drive.addFile({ name: "a.bin", parent: folder, content: "a" });
    drive.addFile({ name: "top.bin", content: "t" });
    const top = await listAll({ q: "'root' in parents" });
    expect(top.names.sort()).toEqual(["Backups", "top.bin"]);
    const inside = await listAll({ q: `'${folder}' in parents` });
    expect(inside.names.sort()).toEqual(["a.bin", "inner"]);
  });

  it("name = matches without regard to case; != and contains (a prefix) too", async () => {
    drive.addFile({ name: "Report.txt" });
    drive.addFile({ name: "report.TXT" });
    drive.addFile({ name: "summary report.txt" });
    expect((await listAll({ q: "name = 'REPORT.txt'" })).names.sort()).toEqual(["Report.txt", "report.TXT"]);
    expect((await listAll({ q: "name != 'report.txt'" })).names).toEqual(["summary report.txt"]);
    expect((await listAll({ q: "name contains 'rep'" })).names.sort()).toEqual(["Report.txt", "report.TXT"]);
  });

  it("mimeType = and != tell folders from files", async () => {
    await createFolder("dir");
    drive.addFile({ name: "file.bin" });
    expect((await listAll({ q: `mimeType = '${DRIVE_FOLDER_MIME}'` })).names).toEqual(["dir"]);
    expect((await listAll({ q: `mimeType != '${DRIVE_FOLDER_MIME}'` })).names).toEqual(["file.bin"]);
  });

  it("trashed = false hides trashed files, and the files inside a trashed folder", async () => {
    const folder = await createFolder("old");
    drive.addFile({ name: "inside.bin", parent: folder });
    drive.addFile({ name: "binned.bin", trashed: true });
    drive.addFile({ name: "kept.bin" });
    await json(await call("PATCH", `/drive/v3/files/${folder}`, { json: { trashed: true } }), 200);
    expect((await listAll({ q: "trashed = false" })).names).toEqual(["kept.bin"]);
    expect((await listAll({ q: "trashed = true" })).names.sort()).toEqual([
      "binned.bin",
      "inside.bin",
      "old",
    ]);
  });

  it("and, or, not and parentheses combine terms", async () => {
    const folder = await createFolder("f");
    drive.addFile({ name: "a", parent: folder });
    drive.addFile({ name: "b", parent: folder });
    drive.addFile({ name: "a" });
    const q = `'${folder}' in parents and (name = 'a' or name = 'b') and not name = 'b'`;
    expect((await listAll({ q })).names).toEqual(["a"]);
    expect((await listAll({ q: `not '${folder}' in parents and name = 'a'` })).names).toEqual(["a"]);
  });

  it("string values escape ' as \\' and \\ as \\\\", async () => {
    drive.addFile({ name: "it's a \\ file" });
    drive.addFile({ name: "its a file" });
    expect((await listAll({ q: "name = 'it\\'s a \\\\ file'" })).names).toEqual(["it's a \\ file"]);
    const error = await driveFailure(
      await call("GET", "/drive/v3/files", { query: { q: "name = 'a\\b'" } }),
      400,
      "invalidParameter",
    );
    expect(error.errors[0]).toMatchObject({ locationType: "parameter", location: "q" });
  });

  it("refuses a term it does not model with 400 naming q", async () => {
    const error = await driveFailure(
      await call("GET", "/drive/v3/files", { query: { q: "modifiedTime > '2020-01-01'" } }),
      400,
      "invalidParameter",
    );
    expect(error.errors[0]!.location).toBe("q");
  });

  it("duplicate names are allowed in one folder", async () => {
    const first = await json(await call("POST", "/drive/v3/files", { json: { name: "twin.txt" } }), 200);
    const second = await json(await call("POST", "/drive/v3/files", { json: { name: "twin.txt" } }), 200);
    expect(first.id).not.toBe(second.id);
    expect((await listAll({ q: "name = 'twin.txt'" })).names).toEqual(["twin.txt", "twin.txt"]);
    expect(drive.find("twin.txt")).toHaveLength(2);
  });
});

describe("files.list: paging and fields", () => {
  it("pages hold 100 files by default, and pageSize goes up to 1000", async () => {
    for (let i = 0; i < 250; i++) drive.addFile({ name: `f${i}` });
    const byDefault = await listAll({});
    expect(byDefault.pages).toBe(3);
    expect(new Set(byDefault.names).size).toBe(250);
    expect((await listAll({ pageSize: 1000 })).pages).toBe(1);
    for (const bad of [0, 1001]) {
      const error = await driveFailure(
        await call("GET", "/drive/v3/files", { query: { pageSize: bad } }),
        400,
        "invalidParameter",
      );
      expect(error.errors[0]!.location).toBe("pageSize");
    }
  });

  it("nextPageToken is opaque, can be asked again, and belongs to its query", async () => {
    for (let i = 0; i < 5; i++) drive.addFile({ name: `p${i}` });
    const first = (await json(await call("GET", "/drive/v3/files", { query: { pageSize: 2 } }), 200)) as {
      nextPageToken: string;
    };
    // Opaque: not an offset or a name a client could compute.
    expect(first.nextPageToken).toMatch(/^[A-Za-z0-9_-]{20,}$/);
    const again = await json(
      await call("GET", "/drive/v3/files", { query: { pageSize: 2, pageToken: first.nextPageToken } }),
      200,
    );
    const twice = await json(
      await call("GET", "/drive/v3/files", { query: { pageSize: 2, pageToken: first.nextPageToken } }),
      200,
    );
    expect(twice.files).toEqual(again.files);
    await driveFailure(
      await call("GET", "/drive/v3/files", { query: { q: "name = 'p1'", pageToken: first.nextPageToken } }),
      400,
      "invalidParameter",
    );
  });

  it("with partialPages, pages may be half full or empty before the end", async () => {
    const partial = await start({ partialPages: true });
    for (let i = 0; i < 20; i++) partial.addFile({ name: `x${i}` });
    const sizes: number[] = [];
    let pageToken: string | undefined;
    const names: string[] = [];
    do {
      const page = (await json(
        await call("GET", "/drive/v3/files", {
          on: partial,
          query: { pageSize: 10, ...(pageToken ? { pageToken } : {}) },
        }),
        200,
      )) as { files: Array<{ name: string }>; nextPageToken?: string };
      sizes.push(page.files.length);
      names.push(...page.files.map((f) => f.name));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(sizes).toContain(0);
    expect(Math.max(...sizes)).toBeLessThan(10);
    expect(names.sort()).toEqual(Array.from({ length: 20 }, (_, i) => `x${i}`).sort());
  });

  it("without fields a file has only kind, id, name and mimeType", async () => {
    drive.addFile({ name: "a.bin", content: "abc" });
    const list = await json(await call("GET", "/drive/v3/files"), 200);
    expect(Object.keys(list).sort()).toEqual(["files", "incompleteSearch", "kind"]);
    expect(list.kind).toBe("drive#fileList");
    expect(Object.keys((list.files as object[])[0]!).sort()).toEqual(["id", "kind", "mimeType", "name"]);
  });

  it("a fields mask selects exactly the fields named, nextPageToken included only when asked", async () => {
    for (let i = 0; i < 3; i++) drive.addFile({ name: `m${i}`, content: "x" });
    const bare = await json(
      await call("GET", "/drive/v3/files", { query: { pageSize: 1, fields: "files(id,size)" } }),
      200,
    );
    expect(Object.keys(bare)).toEqual(["files"]);
    expect(Object.keys((bare.files as object[])[0]!).sort()).toEqual(["id", "size"]);
    const paged = await json(
      await call("GET", "/drive/v3/files", { query: { pageSize: 1, fields: "nextPageToken,files/name" } }),
      200,
    );
    expect(typeof paged.nextPageToken).toBe("string");
    expect(Object.keys((paged.files as object[])[0]!)).toEqual(["name"]);
    const star = await json(
      await call("GET", `/drive/v3/files/${drive.files()[0]!.id}`, { query: { fields: "*" } }),
      200,
    );
    expect(star).toHaveProperty("md5Checksum");
  });

  it("an unknown field in a mask is 400 naming fields", async () => {
    const error = await driveFailure(
      await call("GET", "/drive/v3/files", { query: { fields: "files(id,nonsense)" } }),
      400,
      "invalidParameter",
    );
    expect(error.errors[0]!.location).toBe("fields");
    expect(error.message).toContain("nonsense");
  });

  it("orderBy sorts by name (without regard to case), then by modifiedTime descending", async () => {
    drive.addFile({ name: "b", modifiedTime: new Date(1_000) });
    drive.addFile({ name: "A", modifiedTime: new Date(2_000) });
    drive.addFile({ name: "a", modifiedTime: new Date(3_000) });
    const page = (await json(
      await call("GET", "/drive/v3/files", {
        query: { orderBy: "name,modifiedTime desc", fields: "files(name,modifiedTime)" },
      }),
      200,
    )) as { files: Array<{ name: string; modifiedTime: string }> };
    expect(page.files.map((f) => f.name)).toEqual(["a", "A", "b"]);
  });
});

describe("the File resource", () => {
  it("int64 fields are JSON strings; md5Checksum is on binary files, not folders", async () => {
    const file = drive.addFile({ name: "five.bin", content: "12345" });
    const folder = await createFolder("dir");
    const body = await json(
      await call("GET", `/drive/v3/files/${file.id}`, {
        query: { fields: "id,size,md5Checksum,version,quotaBytesUsed" },
      }),
      200,
    );
    expect(body).toEqual({
      id: file.id,
      size: "5",
      md5Checksum: md5("12345"),
      version: "1",
      quotaBytesUsed: "5",
    });
    const dir = await json(
      await call("GET", `/drive/v3/files/${folder}`, { query: { fields: "id,size,md5Checksum" } }),
      200,
    );
    expect(dir).toEqual({ id: folder });
  });

  it("files/root is the My Drive root", async () => {
    const root = await json(
      await call("GET", "/drive/v3/files/root", { query: { fields: "id,name,mimeType" } }),
      200,
    );
    expect(root).toEqual({ id: drive.rootId, name: "My Drive", mimeType: DRIVE_FOLDER_MIME });
  });

  it("an id nobody can see is 404 notFound naming it", async () => {
    const error = await driveFailure(await call("GET", "/drive/v3/files/nope"), 404, "notFound");
    expect(error.message).toBe("File not found: nope.");
    expect(error.errors[0]).toMatchObject({ locationType: "parameter", location: "fileId" });
  });
});

describe("uploads: media and multipart", () => {
  it("uploadType=media stores the body as an Untitled file of the sent type", async () => {
    const body = await json(
      await call("POST", "/upload/drive/v3/files", {
        query: { uploadType: "media", fields: "id,name,mimeType,size,md5Checksum" },
        body: "raw bytes",
        headers: { "content-type": "text/plain" },
      }),
      200,
    );
    expect(body).toMatchObject({
      name: "Untitled",
      mimeType: "text/plain",
      size: "9",
      md5Checksum: md5("raw bytes"),
    });
  });

  it("uploadType=multipart creates a file with metadata, and PATCH replaces its content in place", async () => {
    const folder = await createFolder("dir");
    const created = multipart({ name: "m.bin", parents: [folder] }, "first");
    const file = await json(
      await call("POST", "/upload/drive/v3/files", {
        query: { uploadType: "multipart", fields: "id,name,parents,size" },
        body: created.body,
        headers: created.headers,
      }),
      200,
    );
    expect(file).toMatchObject({ name: "m.bin", parents: [folder], size: "5" });
    const update = multipart({}, "second version");
    const updated = await json(
      await call("PATCH", `/upload/drive/v3/files/${file.id}`, {
        query: { uploadType: "multipart", fields: "id,size,version" },
        body: update.body,
        headers: update.headers,
      }),
      200,
    );
    expect(updated).toEqual({ id: file.id, size: "14", version: "2" });
    expect(drive.content(file.id as string).toString()).toBe("second version");
    expect(drive.find("dir/m.bin")).toHaveLength(1);
  });

  it("a file has one parent: more are refused", async () => {
    const a = await createFolder("a");
    const b = await createFolder("b");
    await driveFailure(
      await call("POST", "/drive/v3/files", { json: { name: "x", parents: [a, b] } }),
      403,
      "cannotAddParent",
    );
  });
});

describe("uploads: resumable", () => {
  it("initiating answers 200 with the session URI in Location; 308 + Range after each chunk; 201 + file at the end", async () => {
    const data = bytes(2 * CHUNK + 1000);
    const session = await initiate(
      { name: "big.bin", parents: ["root"] },
      { "x-upload-content-type": "application/octet-stream", "x-upload-content-length": String(data.length) },
      { fields: "id,name,size,md5Checksum" },
    );
    const first = await call("PUT", session, {
      token: null,
      body: data.subarray(0, CHUNK),
      headers: { "content-range": `bytes 0-${CHUNK - 1}/${data.length}` },
    });
    expect(first.status).toBe(308);
    expect(first.headers.get("range")).toBe(`bytes=0-${CHUNK - 1}`);
    const second = await call("PUT", session, {
      token: null,
      body: data.subarray(CHUNK, 2 * CHUNK),
      headers: { "content-range": `bytes ${CHUNK}-${2 * CHUNK - 1}/${data.length}` },
    });
    expect(second.headers.get("range")).toBe(`bytes=0-${2 * CHUNK - 1}`);
    const last = await json(
      await call("PUT", session, {
        token: null,
        body: data.subarray(2 * CHUNK),
        headers: { "content-range": `bytes ${2 * CHUNK}-${data.length - 1}/${data.length}` },
      }),
      201,
    );
    expect(last).toMatchObject({ name: "big.bin", size: String(data.length), md5Checksum: md5(data) });
    expect(Object.keys(last).sort()).toEqual(["id", "md5Checksum", "name", "size"]);
    expect(Buffer.compare(drive.content(last.id as string), Buffer.from(data))).toBe(0);
  });

  it("the status query (bytes */N, bytes */*) reports what is persisted, with no Range before the first byte", async () => {
    const data = bytes(CHUNK + 10);
    const session = await initiate({ name: "s.bin" });
    const empty = await call("PUT", session, {
      token: null,
      headers: { "content-range": `bytes */${data.length}` },
    });
    expect(empty.status).toBe(308);
    expect(empty.headers.get("range")).toBeNull();
    await call("PUT", session, {
      token: null,
      body: data.subarray(0, CHUNK),
      headers: { "content-range": `bytes 0-${CHUNK - 1}/*` },
    });
    const status = await call("PUT", session, { token: null, headers: { "content-range": "bytes */*" } });
    expect(status.status).toBe(308);
    expect(status.headers.get("range")).toBe(`bytes=0-${CHUNK - 1}`);
    await json(
      await call("PUT", session, {
        token: null,
        body: data.subarray(CHUNK),
        headers: { "content-range": `bytes ${CHUNK}-${data.length - 1}/${data.length}` },
      }),
      201,
    );
    // Asking after the end gives the file again: a client whose last answer was lost learns it is done.
    const done = await json(
      await call("PUT", session, { token: null, headers: { "content-range": `bytes */${data.length}` } }),
      201,
    );
    expect(done.name).toBe("s.bin");
    expect(drive.find("s.bin")).toHaveLength(1);
  });

  it("with X-GUploader-No-308: yes, progress is 200 with X-HTTP-Status-Code-Override: 308", async () => {
    const session = await initiate({ name: "go.bin" });
    const response = await call("POST", session, {
      token: null,
      body: bytes(CHUNK),
      headers: { "content-range": `bytes 0-${CHUNK - 1}/*`, "x-guploader-no-308": "yes" },
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("x-http-status-code-override")).toBe("308");
    expect(response.headers.get("range")).toBe(`bytes=0-${CHUNK - 1}`);
  });

  it("chunks other than the last must be multiples of 256 KiB", async () => {
    const session = await initiate({ name: "odd.bin" });
    const error = await driveFailure(
      await call("PUT", session, {
        token: null,
        body: bytes(100_000),
        headers: { "content-range": "bytes 0-99999/*" },
      }),
      400,
      "badRequest",
    );
    expect(error.message).toContain("262144");
    expect(error.errors[0]!.location).toBe("Content-Range");
  });

  it("a chunk starting past the persisted bytes is refused; one sent again is accepted", async () => {
    const data = bytes(2 * CHUNK);
    const session = await initiate({ name: "gap.bin" });
    await driveFailure(
      await call("PUT", session, {
        token: null,
        body: data.subarray(CHUNK),
        headers: { "content-range": `bytes ${CHUNK}-${2 * CHUNK - 1}/${2 * CHUNK}` },
      }),
      400,
      "badRequest",
    );
    const first = { "content-range": `bytes 0-${CHUNK - 1}/${2 * CHUNK}` };
    expect(
      (await call("PUT", session, { token: null, body: data.subarray(0, CHUNK), headers: first })).status,
    ).toBe(308);
    expect(
      (await call("PUT", session, { token: null, body: data.subarray(0, CHUNK), headers: first })).status,
    ).toBe(308);
    const file = await json(
      await call("PUT", session, {
        token: null,
        body: data.subarray(CHUNK),
        headers: { "content-range": `bytes ${CHUNK}-${2 * CHUNK - 1}/${2 * CHUNK}` },
      }),
      201,
    );
    expect(Buffer.compare(drive.content(file.id as string), Buffer.from(data))).toBe(0);
  });

  it("with persistAtMost the server keeps fewer bytes than sent and says so in Range", async () => {
    const stingy = await start({ persistAtMost: CHUNK });
    const response = await call("POST", "/upload/drive/v3/files", {
      on: stingy,
      query: { uploadType: "resumable" },
      json: { name: "few.bin" },
    });
    const session = response.headers.get("location")!;
    const sent = await call("PUT", session, {
      token: null,
      body: bytes(2 * CHUNK),
      headers: { "content-range": `bytes 0-${2 * CHUNK - 1}/*` },
    });
    expect(sent.status).toBe(308);
    expect(sent.headers.get("range")).toBe(`bytes=0-${CHUNK - 1}`);
  });

  it("an expired session is 404, and so is one expireUploadSessions() forgot", async () => {
    const shortLived = await start({ sessionLifetimeMs: 60_000 });
    const response = await call("POST", "/upload/drive/v3/files", {
      on: shortLived,
      query: { uploadType: "resumable" },
      json: { name: "late.bin" },
    });
    const session = response.headers.get("location")!;
    clock += 61_000;
    await driveFailure(
      await call("PUT", session, { token: null, headers: { "content-range": "bytes */*" } }),
      404,
      "notFound",
    );
    const another = await initiate({ name: "forgotten.bin" });
    expect(drive.uploadSessions()).toHaveLength(1);
    drive.expireUploadSessions();
    await driveFailure(
      await call("PUT", another, { token: null, headers: { "content-range": "bytes */*" } }),
      404,
      "notFound",
    );
  });

  it("a resumable PATCH updates the file in place and answers 200", async () => {
    const file = drive.addFile({ name: "u.bin", content: "old", appId: defaultOAuthClient.clientId });
    const response = await call("PATCH", `/upload/drive/v3/files/${file.id}`, {
      query: { uploadType: "resumable" },
      json: {},
    });
    const session = response.headers.get("location")!;
    const answer = await json(await call("PUT", session, { token: null, body: "new content" }), 200);
    expect(answer.id).toBe(file.id);
    expect(drive.content(file.id).toString()).toBe("new content");
    expect(drive.file(file.id)!.version).toBe(2);
  });

  it("a session request with an expired token is 401; without a token the session URI suffices", async () => {
    const token = oauth.issueAccessToken({ scopes: [DRIVE_SCOPE] });
    const session = await initiate({ name: "t.bin" });
    clock += 2 * 3600_000;
    await driveFailure(
      await call("PUT", session, {
        token,
        body: bytes(CHUNK),
        headers: { "content-range": `bytes 0-${CHUNK - 1}/*` },
      }),
      401,
      "authError",
    );
    const ok = await call("PUT", session, {
      token: null,
      body: bytes(CHUNK),
      headers: { "content-range": `bytes 0-${CHUNK - 1}/*` },
    });
    expect(ok.status).toBe(308);
  });
});

describe("alt=media", () => {
  it("returns the bytes directly, and honours Range with 206 and Content-Range", async () => {
    const data = bytes(1000);
    const file = drive.addFile({ name: "r.bin", content: data });
    const whole = await call("GET", `/drive/v3/files/${file.id}`, { query: { alt: "media" } });
    expect(whole.status).toBe(200);
    expect(Buffer.compare(Buffer.from(await whole.arrayBuffer()), Buffer.from(data))).toBe(0);
    const part = await call("GET", `/drive/v3/files/${file.id}`, {
      query: { alt: "media" },
      headers: { range: "bytes=10-19" },
    });
    expect(part.status).toBe(206);
    expect(part.headers.get("content-range")).toBe("bytes 10-19/1000");
    expect(Buffer.compare(Buffer.from(await part.arrayBuffer()), Buffer.from(data.subarray(10, 20)))).toBe(0);
    const tail = await call("GET", `/drive/v3/files/${file.id}`, {
      query: { alt: "media" },
      headers: { range: "bytes=990-" },
    });
    expect((await tail.arrayBuffer()).byteLength).toBe(10);
    const suffix = await call("GET", `/drive/v3/files/${file.id}`, {
      query: { alt: "media" },
      headers: { range: "bytes=-5" },
    });
    expect(suffix.headers.get("content-range")).toBe("bytes 995-999/1000");
    const beyond = await call("GET", `/drive/v3/files/${file.id}`, {
      query: { alt: "media" },
      headers: { range: "bytes=1000-" },
    });
    expect(beyond.status).toBe(416);
    expect(beyond.headers.get("content-range")).toBe("bytes */1000");
  });

  it("a folder cannot be downloaded", async () => {
    const folder = await createFolder("dir");
    await driveFailure(
      await call("GET", `/drive/v3/files/${folder}`, { query: { alt: "media" } }),
      403,
      "fileNotDownloadable",
    );
  });
});

describe("delete", () => {
  it("deletes permanently with 204; a folder takes its contents with it", async () => {
    const folder = await createFolder("dir");
    const inside = drive.addFile({ name: "in.bin", parent: folder });
    const response = await call("DELETE", `/drive/v3/files/${folder}`);
    expect(response.status).toBe(204);
    expect(drive.file(inside.id)).toBeUndefined();
    await driveFailure(await call("DELETE", `/drive/v3/files/${folder}`), 404, "notFound");
  });
});

describe("errors and tokens", () => {
  it("a missing, unknown, expired or revoked token is 401 authError", async () => {
    await driveFailure(await call("GET", "/drive/v3/files", { token: null }), 401, "authError");
    await driveFailure(await call("GET", "/drive/v3/files", { token: "made-up" }), 401, "authError");
    const revoked = oauth.issueAccessToken({ scopes: [DRIVE_SCOPE] });
    oauth.revoke(revoked);
    await driveFailure(await call("GET", "/drive/v3/files", { token: revoked }), 401, "authError");
    clock += 2 * 3600_000;
    const error = await driveFailure(await call("GET", "/drive/v3/files"), 401, "authError");
    expect(error.errors[0]).toMatchObject({ locationType: "header", location: "Authorization" });
  });

  it("a token without a Drive scope is 403 insufficientPermissions", async () => {
    const token = oauth.issueAccessToken({ scopes: ["openid"] });
    await driveFailure(await call("GET", "/drive/v3/files", { token }), 403, "insufficientPermissions");
  });

  it("content beyond quotaBytes is 403 storageQuotaExceeded", async () => {
    const small = await start({ quotaBytes: 10 });
    const upload = multipart({ name: "big" }, "more than ten bytes");
    const error = await driveFailure(
      await call("POST", "/upload/drive/v3/files", {
        on: small,
        query: { uploadType: "multipart" },
        body: upload.body,
        headers: upload.headers,
      }),
      403,
      "storageQuotaExceeded",
    );
    expect(error.errors[0]!.domain).toBe("usageLimits");
  });

  it("the shared fault injection answers in Drive's shape and records the request as faulted", async () => {
    const fault = drive.faults.add({
      path: "/drive/v3/files",
      times: 2,
      respond: { status: 403, body: driveErrors.userRateLimitExceeded },
    });
    await driveFailure(await call("GET", "/drive/v3/files"), 403, "userRateLimitExceeded");
    await driveFailure(await call("GET", "/drive/v3/files"), 403, "userRateLimitExceeded");
    await json(await call("GET", "/drive/v3/files"), 200);
    expect(fault.hits).toBe(2);
    expect(drive.requests.map((r) => [r.status, r.faulted])).toEqual([
      [403, true],
      [403, true],
      [200, false],
    ]);
  });
});

describe("the drive.file scope", () => {
  it("shows an app only the files it created; the full scope sees everything", async () => {
    const userFolder = drive.addFile({ name: "Made in the web UI", folder: true });
    drive.addFile({ name: "other-tool.bin", parent: userFolder.id, appId: otherApp.clientId });
    const mine = await createFolder("Backups", "root", appToken);
    expect((await listAll({ q: "'root' in parents" }, appToken)).names).toEqual(["Backups"]);
    expect((await listAll({ q: "'root' in parents" }, full)).names.sort()).toEqual([
      "Backups",
      "Made in the web UI",
    ]);
    await driveFailure(
      await call("GET", `/drive/v3/files/${userFolder.id}`, { token: appToken }),
      404,
      "notFound",
    );
    await driveFailure(
      await call("POST", "/drive/v3/files", {
        token: appToken,
        json: { name: "x", parents: [userFolder.id] },
      }),
      404,
      "notFound",
    );
    const otherToken = oauth.issueAccessToken({ clientId: otherApp.clientId, scopes: [DRIVE_FILE_SCOPE] });
    await driveFailure(await call("GET", `/drive/v3/files/${mine}`, { token: otherToken }), 404, "notFound");
    expect(drive.file(mine)!.appId).toBe(defaultOAuthClient.clientId);
  });
});

describe("shared drives", () => {
  it("are reached with supportsAllDrives, and listed with corpora=drive", async () => {
    const driveId = drive.addSharedDrive("Team");
    drive.addFile({ name: "team.bin", parent: driveId, content: "t" });
    drive.addFile({ name: "mine.bin" });
    await driveFailure(await call("GET", `/drive/v3/files/${driveId}`), 404, "notFound");
    const root = await json(
      await call("GET", `/drive/v3/files/${driveId}`, {
        query: { supportsAllDrives: true, fields: "id,driveId" },
      }),
      200,
    );
    expect(root).toEqual({ id: driveId, driveId });
    const listed = await listAll({
      q: `'${driveId}' in parents`,
      corpora: "drive",
      driveId,
      includeItemsFromAllDrives: "true",
      supportsAllDrives: "true",
    });
    expect(listed.names).toEqual(["team.bin"]);
    expect((await listAll({})).names).toEqual(["mine.bin"]);
  });
});
