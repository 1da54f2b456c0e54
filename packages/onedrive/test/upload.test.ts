import { Buffer } from "node:buffer";
import { personalAccessToken } from "@stowage/auth";
import { graphErrorResponse } from "@stowage/emulators";
import { describe, expect, it } from "vitest";
import { createOneDriveStorage, quickXorHash } from "../src/index.js";
import {
  bytesOf,
  emulator,
  FRAGMENT_MULTIPLE,
  failure,
  fragmentRequests,
  spoolDir,
  spoolFiles,
  storageOn,
  streamed,
} from "./support/setup.js";

const size = 3 * FRAGMENT_MULTIPLE + 4321;

describe("puts", () => {
  it("sends a large object through one upload session: in order, 320 KiB multiples, no Authorization, one total", async () => {
    const graph = await emulator();
    const storage = storageOn(graph, { createRoot: true });
    const data = bytesOf(size);
    const entry = await storage.put("vol/big.bin", data);
    expect(entry).toMatchObject({ key: "vol/big.bin", size, hashes: { quickXor: quickXorHash(data) } });
    const fragments = fragmentRequests(graph);
    expect(fragments.map((request) => request.range)).toEqual([
      `bytes 0-${FRAGMENT_MULTIPLE - 1}/${size}`,
      `bytes ${FRAGMENT_MULTIPLE}-${2 * FRAGMENT_MULTIPLE - 1}/${size}`,
      `bytes ${2 * FRAGMENT_MULTIPLE}-${3 * FRAGMENT_MULTIPLE - 1}/${size}`,
      `bytes ${3 * FRAGMENT_MULTIPLE}-${size - 1}/${size}`,
    ]);
    expect(fragments.every((request) => !request.authorization)).toBe(true);
    expect(graph.counters).toMatchObject({ sessionsCreated: 1, fragmentBytes: size, simpleUploads: 0 });
    expect(graph.file("Backups/pc1/vol/big.bin")?.content.equals(data)).toBe(true);
  });

  it("sends an object up to the cutoff in one PUT", async () => {
    const graph = await emulator();
    const storage = storageOn(graph, { createRoot: true, simpleUploadCutoff: 4 * 1024 * 1024 });
    await storage.put("small.bin", bytesOf(4 * 1024 * 1024));
    expect(graph.counters).toMatchObject({ simpleUploads: 1, sessionsCreated: 0 });
  });

  it("spools a stream of unknown length above the cutoff, uploads it, and removes the copy", async () => {
    const graph = await emulator();
    const dir = spoolDir();
    const storage = storageOn(graph, { createRoot: true, spoolDir: dir });
    const data = bytesOf(size, 2);
    await storage.put("stream.bin", streamed(data));
    expect(graph.file("Backups/pc1/stream.bin")?.content.equals(data)).toBe(true);
    expect(fragmentRequests(graph)[0]?.range).toBe(`bytes 0-${FRAGMENT_MULTIPLE - 1}/${size}`);
    expect(spoolFiles(dir)).toEqual([]);
  });

  it("an aborted put cancels its session (DELETE), stores nothing and leaves no temporary copy", async () => {
    const graph = await emulator();
    const dir = spoolDir();
    const storage = storageOn(graph, { createRoot: true, spoolDir: dir });
    const controller = new AbortController();
    const data = bytesOf(size);
    const marks = new Map([[2 * FRAGMENT_MULTIPLE, () => controller.abort()]]);
    const err = await failure(
      storage.put("gone.bin", streamed(data, marks), { size, signal: controller.signal }),
    );
    expect(err.code).toBe("Aborted");
    expect(graph.counters.sessionsCreated).toBe(1);
    expect(graph.counters.sessionsDeleted).toBe(1);
    expect(graph.sessions).toEqual([]);
    expect(graph.file("Backups/pc1/gone.bin")).toBeUndefined();
    expect(spoolFiles(dir)).toEqual([]);
  });

  it("a body shorter than its declared size fails with Integrity and cancels its session", async () => {
    const graph = await emulator();
    const storage = storageOn(graph, { createRoot: true });
    const err = await failure(storage.put("short.bin", streamed(bytesOf(size)), { size: size + 10 }));
    expect(err.code).toBe("Integrity");
    expect(graph.sessions).toEqual([]);
    expect(graph.file("Backups/pc1/short.bin")).toBeUndefined();
  });

  it("ifNotExists on an existing large object fails with AlreadyExists before uploading", async () => {
    const graph = await emulator();
    const storage = storageOn(graph, { createRoot: true });
    graph.addFile("Backups/pc1/taken.bin", Buffer.from("first"));
    const err = await failure(storage.put("taken.bin", bytesOf(size), { ifNotExists: true }));
    expect(err.code).toBe("AlreadyExists");
    expect(graph.counters.sessionsCreated).toBe(0);
  });

  it("ifNotExists is decided at commit: of two conditional large puts, one wins and the other's session is cancelled", async () => {
    const graph = await emulator();
    const storage = storageOn(graph, { createRoot: true });
    const [a, b] = [bytesOf(size, 3), bytesOf(size, 4)];
    const results = await Promise.allSettled([
      storage.put("race.bin", a, { ifNotExists: true }),
      storage.put("race.bin", b, { ifNotExists: true }),
    ]);
    const won = results.filter((result) => result.status === "fulfilled");
    const lost = results.filter((result) => result.status === "rejected");
    expect(won).toHaveLength(1);
    expect((lost[0] as PromiseRejectedResult).reason).toMatchObject({ code: "AlreadyExists" });
    const stored = graph.file("Backups/pc1/race.bin")!.content;
    expect(stored.equals(a) || stored.equals(b)).toBe(true);
    expect(graph.sessions).toEqual([]);
  });

  it("creates missing folders level by level when createUploadSession needs them", async () => {
    const graph = await emulator();
    const storage = storageOn(graph);
    await storage.createRoot();
    const mark = graph.requests.length;
    const data = bytesOf(size, 5);
    await storage.put("a/b/c/deep.bin", data);
    expect(graph.file("Backups/pc1/a/b/c/deep.bin")?.content.equals(data)).toBe(true);
    const creates = graph.requests
      .slice(mark)
      .filter((request) => request.method === "POST" && request.path.endsWith("/children"));
    expect(creates.map((request) => decodeURIComponent(request.path))).toEqual([
      "/v1.0/me/drive/root:/Backups/pc1:/children",
      "/v1.0/me/drive/root:/Backups/pc1/a:/children",
      "/v1.0/me/drive/root:/Backups/pc1/a/b:/children",
    ]);
  });

  it("refuses a key below an object with Conflict", async () => {
    const graph = await emulator();
    const storage = storageOn(graph, { createRoot: true });
    await storage.put("file", "x");
    const err = await failure(storage.put("file/below.bin", bytesOf(size)));
    expect(err.code).toBe("Conflict");
    expect(err.message).toContain("'file'");
    const small = await failure(storage.put("file/small.txt", "y"));
    expect(small.code).toBe("Conflict");
  });

  it("verifies the stored quickXorHash and fails with Integrity on a mismatch", async () => {
    const graph = await emulator({ hash: () => "AAAAAAAAAAAAAAAAAAAAAAAAAAA=" });
    const storage = storageOn(graph, { createRoot: true });
    const err = await failure(storage.put("bad.bin", bytesOf(size)));
    expect(err.code).toBe("Integrity");
    expect(err.message).toContain("quickXor");
  });

  it("maps keys through the names codec, and the Business rules when business is set", async () => {
    const graph = await emulator({ business: true });
    const storage = storageOn(graph, { createRoot: true, business: true });
    await storage.put("~a#b%c/x:y", "z");
    expect(graph.list("Backups/pc1")).toEqual(["～a＃b％c"]);
    expect(graph.list("Backups/pc1/～a＃b％c")).toEqual(["x：y"]);
    const listed = [];
    for await (const entry of storage.list("", { recursive: true })) listed.push(entry.key);
    expect(listed).toEqual(["~a#b%c/x:y"]);
  });
});

describe("gets", () => {
  it("follows the 302 to the download host without Authorization, with Range (206)", async () => {
    const graph = await emulator();
    const storage = storageOn(graph, { createRoot: true });
    const data = bytesOf(100_000);
    await storage.put("r.bin", data);
    const part = await (await storage.get("r.bin", { range: { offset: 1000, length: 5000 } })).bytes();
    expect(Buffer.from(part).equals(Buffer.from(data.subarray(1000, 6000)))).toBe(true);
    const download = graph.requests.filter((request) => request.host === "download").at(-1)!;
    expect(download).toMatchObject({ authorization: false, range: "bytes=1000-5999", status: 206 });
  });

  it("accepts a direct 200 from /content instead of a redirect, with and without a range", async () => {
    const graph = await emulator({ redirectDownloads: false });
    const storage = storageOn(graph, { createRoot: true });
    const data = bytesOf(50_000, 7);
    await storage.put("d.bin", data);
    expect(Buffer.from(await (await storage.get("d.bin")).bytes()).equals(Buffer.from(data))).toBe(true);
    const part = await (await storage.get("d.bin", { range: { offset: 10, length: 20 } })).bytes();
    expect(Buffer.from(part).equals(Buffer.from(data.subarray(10, 30)))).toBe(true);
  });

  it("cuts the range itself when the download host ignores Range and sends 200", async () => {
    const graph = await emulator();
    const storage = storageOn(graph, { createRoot: true });
    const data = bytesOf(30_000, 8);
    await storage.put("i.bin", data);
    graph.faults.add({ method: "GET", path: /^\/dl\//, respond: { status: 200, body: data } });
    const part = await (await storage.get("i.bin", { range: { offset: 29_990 } })).bytes();
    expect(Buffer.from(part).equals(Buffer.from(data.subarray(29_990)))).toBe(true);
  });

  it("verifies the quickXorHash of a whole read and errors the stream with Integrity on a mismatch", async () => {
    const graph = await emulator();
    const storage = storageOn(graph, { createRoot: true });
    const data = bytesOf(30_000, 9);
    await storage.put("v.bin", data);
    const corrupt = Buffer.from(data);
    corrupt[100]! ^= 1;
    graph.faults.add({ method: "GET", path: /^\/dl\//, respond: { status: 200, body: corrupt } });
    const err = await failure((await storage.get("v.bin")).bytes());
    expect(err.code).toBe("Integrity");
    expect(err.message).toContain("quickXor");
  });
});

describe("lists, deletes and the root", () => {
  it("lists with $top and follows @odata.nextLink whole", async () => {
    const graph = await emulator();
    const storage = storageOn(graph, { createRoot: true, pageSize: 3 });
    for (let i = 0; i < 7; i++) graph.addFile(`Backups/pc1/f${i}`, Buffer.from([i]));
    const keys = [];
    for await (const entry of storage.list()) keys.push(entry.key);
    expect(keys.sort()).toEqual(["f0", "f1", "f2", "f3", "f4", "f5", "f6"]);
    const pages = graph.requests.filter((request) => request.path.includes("/children"));
    expect(pages.map((request) => request.path.replace(/skiptoken=[\w-]+/, "skiptoken=…"))).toEqual([
      "/v1.0/me/drive/root:/Backups/pc1:/children?$top=3",
      "/v1.0/me/drive/root:/Backups/pc1:/children?$top=3&$skiptoken=…",
      "/v1.0/me/drive/root:/Backups/pc1:/children?$top=3&$skiptoken=…",
    ]);
  });

  it("uses 1000 items per page by default", async () => {
    const graph = await emulator();
    const storage = createOneDriveStorage({
      auth: personalAccessToken("t"),
      graphUrl: graph.graphUrl,
      root: "R",
      createRoot: true,
    });
    for await (const _ of storage.list()) break;
    expect(graph.requests.some((request) => request.path.endsWith("/children?$top=1000"))).toBe(true);
    await storage.close();
  });

  it("refuses to delete a folder key, and keeps the folder", async () => {
    const graph = await emulator();
    const storage = storageOn(graph, { createRoot: true });
    await storage.put("dir/x.txt", "x");
    const err = await failure(storage.delete("dir"));
    expect(err.code).toBe("Conflict");
    expect(graph.file("Backups/pc1/dir/x.txt")).toBeDefined();
  });

  it("deletes with If-Match on the eTag it read", async () => {
    const graph = await emulator();
    const storage = storageOn(graph, { createRoot: true });
    await storage.put("e.txt", "x");
    await storage.delete("e.txt");
    expect(graph.file("Backups/pc1/e.txt")).toBeUndefined();
    expect(graph.requests.find((request) => request.method === "DELETE")?.status).toBe(204);
  });

  it("createRoot creates the root level by level, each with conflictBehavior fail, and is idempotent", async () => {
    const graph = await emulator();
    graph.addFolder("Backups");
    const storage = storageOn(graph, { root: "Backups/pc1/daily" });
    await storage.createRoot();
    await storage.createRoot();
    expect(graph.list("Backups/pc1/daily")).toEqual([]);
    const posts = graph.requests
      .filter((request) => request.method === "POST")
      .map((request) => request.status);
    expect(posts).toEqual([409, 201, 201]);
  });

  it("test() on a missing root reports FolderMissing with the createRoot hint", async () => {
    const graph = await emulator();
    const storage = storageOn(graph, { root: "Backups/typo" });
    const report = await storage.test();
    expect(report.steps.map((step) => [step.name, step.ok])).toEqual([
      ["credentials", true],
      ["root", false],
    ]);
    expect(report.steps[1]!.error).toMatchObject({
      code: "FolderMissing",
      hint: expect.stringContaining("createRoot"),
    });
    expect(graph.list("Backups")).toBeUndefined();
  });

  it("refuses a root that is a file", async () => {
    const graph = await emulator();
    graph.addFile("Backups/pc1", Buffer.from("x"));
    const storage = storageOn(graph);
    const err = await failure(storage.stat("a"));
    expect(err.code).toBe("InvalidConfig");
  });

  it("reports a folder as NotFound to stat and get", async () => {
    const graph = await emulator();
    const storage = storageOn(graph, { createRoot: true });
    await storage.put("dir/x.txt", "x");
    expect((await failure(storage.stat("dir"))).code).toBe("NotFound");
    expect((await failure(storage.get("DIR"))).code).toBe("NotFound");
  });
});

describe("options", () => {
  const auth = personalAccessToken("t");

  it.each([1000, 60 * 1024 * 1024, 61 * 1024 * 1024, 0, 327_680.5])(
    "refuses fragmentSize %d with InvalidConfig naming it",
    (fragmentSize) => {
      expect(() => createOneDriveStorage({ auth, fragmentSize })).toThrow(/option 'fragmentSize'/);
    },
  );

  it("accepts a fragment size that is a multiple of 320 KiB under 60 MiB", () => {
    expect(() => createOneDriveStorage({ auth, fragmentSize: 191 * 327_680 })).not.toThrow();
  });

  it("refuses a page size outside 1–1000, a cutoff above 4 MiB, and an unknown option", () => {
    expect(() => createOneDriveStorage({ auth, pageSize: 0 })).toThrow(/'pageSize'/);
    expect(() => createOneDriveStorage({ auth, simpleUploadCutoff: 4 * 1024 * 1024 + 1 })).toThrow(
      /'simpleUploadCutoff'/,
    );
    expect(() => createOneDriveStorage({ auth, colour: "blue" } as never)).toThrow(/unknown option 'colour'/);
    expect(() => createOneDriveStorage({ auth: "token" } as never)).toThrow(/'auth'/);
  });

  it("sends the token over https only, or plain http on loopback", () => {
    expect(() => createOneDriveStorage({ auth, graphUrl: "http://graph.example.com/v1.0" })).toThrow(/https/);
    expect(() => createOneDriveStorage({ auth, graphUrl: "http://127.0.0.1:9/v1.0" })).not.toThrow();
  });

  it("adds /v1.0 to a bare Graph origin and shows the root, drive and endpoint in location", () => {
    const storage = createOneDriveStorage({
      auth,
      graphUrl: "https://graph.microsoft.us",
      root: "/My Backups//pc 1/",
      driveId: "b!abc",
    });
    expect(storage.location).toBe(
      "onedrive://My%20Backups/pc%201?drive-id=b%21abc&graph-url=https%3A%2F%2Fgraph.microsoft.us%2Fv1.0",
    );
  });

  it("refuses a root that cannot exist on OneDrive", () => {
    expect(() => createOneDriveStorage({ auth, root: "Backups/a:b" })).toThrow(/cannot exist on OneDrive/);
    expect(() => createOneDriveStorage({ auth, root: "Backups/trailing." })).toThrow(/cannot exist/);
  });

  it("addresses another drive by /drives/{id}", async () => {
    const graph = await emulator({ driveId: "0123abcd" });
    const storage = storageOn(graph, { driveId: "0123abcd", createRoot: true });
    await storage.put("x.txt", "x");
    expect(
      graph.requests.every(
        (request) => request.host !== "graph" || request.path.startsWith("/v1.0/drives/0123abcd/"),
      ),
    ).toBe(true);
  });

  it("reports a Graph error body's code and text, never a secret", async () => {
    const graph = await emulator();
    const storage = storageOn(graph, { createRoot: true, retry: false });
    graph.faults.add({
      method: "GET",
      path: /\/x\.txt:$/,
      respond: graphErrorResponse(403, "accessDenied", "Access denied for Bearer test-token"),
    });
    const err = await failure(storage.stat("x.txt"));
    expect(err.code).toBe("PermissionDenied");
    expect(JSON.stringify(err)).not.toContain("test-token");
    expect(err.message).not.toContain("test-token");
  });
});
