import { randomBytes } from "node:crypto";
import { quickXorHash } from "@stowage/core";
import { afterEach, describe, expect, it } from "vitest";
import {
  FRAGMENT_MULTIPLE,
  type GraphEmulator,
  type GraphEmulatorOptions,
  graphErrorResponse,
  graphThrottled,
  startGraphEmulator,
  startOAuthProvider,
} from "../src/index.js";

// Checklist: reference/onedrive-gdrive-apis.md §E, OneDrive emulator. Each describe block is one line of
// it; each test one rule of that line.

const running: Array<{ close(): Promise<void> }> = [];

afterEach(async () => {
  await Promise.all(running.splice(0).map((server) => server.close()));
});

async function start(options: GraphEmulatorOptions = {}): Promise<GraphEmulator> {
  const graph = await startGraphEmulator(options);
  running.push(graph);
  return graph;
}

interface Answer {
  status: number;
  headers: Headers;
  json: Record<string, unknown>;
  text: string;
}

async function call(
  url: string,
  init: {
    method?: string;
    body?: string | Uint8Array;
    headers?: Record<string, string>;
    token?: string | null;
  } = {},
): Promise<Answer> {
  const headers: Record<string, string> = { ...init.headers };
  if (init.token !== null) headers.authorization = `Bearer ${init.token ?? "test-token"}`;
  const response = await fetch(url, {
    method: init.method ?? "GET",
    body: init.body,
    headers,
    redirect: "manual",
  });
  const text = await response.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // Not every answer is JSON (downloads, 204).
  }
  return { status: response.status, headers: response.headers, json, text };
}

function errorCode(answer: Answer): string | undefined {
  return (answer.json.error as { code?: string } | undefined)?.code;
}

function innerCode(answer: Answer): string | undefined {
  const error = answer.json.error as { innererror?: { code?: string } } | undefined;
  return error?.innererror?.code;
}

const api = (graph: GraphEmulator, path: string) => `${graph.graphUrl}/me/drive/${path}`;

async function createSession(graph: GraphEmulator, path: string, item: Record<string, unknown> = {}) {
  const answer = await call(api(graph, `root:/${path}:/createUploadSession`), {
    method: "POST",
    body: JSON.stringify({ item }),
    headers: { "content-type": "application/json" },
  });
  expect(answer.status, answer.text).toBe(200);
  return answer.json as { uploadUrl: string; expirationDateTime: string; nextExpectedRanges: string[] };
}

function fragment(
  uploadUrl: string,
  bytes: Uint8Array,
  start: number,
  total: number,
  token: string | null = null,
) {
  return call(uploadUrl, {
    method: "PUT",
    body: bytes,
    token,
    headers: { "content-range": `bytes ${start}-${start + bytes.length - 1}/${total}` },
  });
}

describe("routes", () => {
  it("addresses the root by /me/drive/root and /drives/{id}/root, items by path and by id", async () => {
    const graph = await start();
    graph.addFile("Docs/a.txt", Buffer.from("hello"));
    const byMe = await call(api(graph, "root"));
    const byId = await call(`${graph.graphUrl}/drives/${graph.driveId}/root`);
    expect(byMe.json.id).toBe(byId.json.id);
    expect(byMe.json.root).toEqual({});
    const byPath = await call(api(graph, "root:/Docs/a.txt:"));
    expect(byPath.json).toMatchObject({ name: "a.txt", size: 5 });
    const byItemId = await call(`${graph.graphUrl}/drives/${graph.driveId}/items/${byPath.json.id}`);
    expect(byItemId.json.name).toBe("a.txt");
    const folder = await call(api(graph, "root:/Docs"));
    const relative = await call(api(graph, `items/${folder.json.id}:/a.txt:`));
    expect(relative.json.id).toBe(byPath.json.id);
    const noTrailingColon = await call(api(graph, "root:/Docs/a.txt"));
    expect(noTrailingColon.json.id).toBe(byPath.json.id);
    expect((await call(`${graph.graphUrl}/drives/ffffffffffffffff/root`)).status).toBe(404);
  });

  it("lists children of the root and of a path", async () => {
    const graph = await start();
    graph.addFile("Docs/a.txt", Buffer.from("a"));
    graph.addFile("top.txt", Buffer.from("t"));
    const root = await call(api(graph, "root/children"));
    expect((root.json.value as Array<{ name: string }>).map((i) => i.name).sort()).toEqual([
      "Docs",
      "top.txt",
    ]);
    const docs = await call(api(graph, "root:/Docs:/children"));
    expect((docs.json.value as Array<{ name: string }>).map((i) => i.name)).toEqual(["a.txt"]);
  });

  it("DELETE with a stale If-Match answers 412 and deletes nothing", async () => {
    const graph = await start();
    graph.addFile("k.txt", Buffer.from("x"));
    const item = await call(api(graph, "root:/k.txt:"));
    await call(api(graph, "root:/k.txt:/content"), { method: "PUT", body: "changed" });
    const stale = await call(api(graph, `items/${item.json.id}`), {
      method: "DELETE",
      headers: { "if-match": item.json.eTag as string },
    });
    expect([stale.status, errorCode(stale)]).toEqual([412, "resourceModified"]);
    expect(graph.file("k.txt")).toBeDefined();
  });

  it("PUT …:/content creates (201) and replaces (200); DELETE items/{id} answers 204", async () => {
    const graph = await start();
    const created = await call(api(graph, "root:/x.bin:/content"), { method: "PUT", body: "one" });
    expect(created.status).toBe(201);
    const replaced = await call(api(graph, "root:/x.bin:/content"), { method: "PUT", body: "two!" });
    expect(replaced.status).toBe(200);
    expect(replaced.json.id).toBe(created.json.id);
    const byId = await call(api(graph, `items/${created.json.id}/content`), { method: "PUT", body: "three" });
    expect(byId.status).toBe(200);
    expect(graph.file("x.bin")?.content.toString()).toBe("three");
    expect((await call(api(graph, `items/${created.json.id}`), { method: "DELETE" })).status).toBe(204);
    expect(graph.file("x.bin")).toBeUndefined();
    expect((await call(api(graph, `items/${created.json.id}`), { method: "DELETE" })).status).toBe(404);
  });

  it("a simple PUT creates missing parent folders; createUploadSession needs the parent (409)", async () => {
    const graph = await start();
    expect((await call(api(graph, "root:/a/b/c.txt:/content"), { method: "PUT", body: "x" })).status).toBe(
      201,
    );
    expect(graph.list("a/b")).toEqual(["c.txt"]);
    const session = await call(api(graph, "root:/no/such/f.bin:/createUploadSession"), { method: "POST" });
    expect(session.status).toBe(409);
  });

  it("serves upload sessions on a separate, unauthenticated host", async () => {
    const graph = await start();
    const { uploadUrl } = await createSession(graph, "s.bin");
    expect(new URL(uploadUrl).origin).toBe(graph.uploadOrigin);
    expect(graph.uploadOrigin).not.toBe(graph.url);
    expect((await call(uploadUrl, { token: null })).status).toBe(200);
  });

  it("serves downloads by 302 to a separate, unauthenticated host", async () => {
    const graph = await start();
    graph.addFile("d.bin", Buffer.from("content"));
    const redirect = await call(api(graph, "root:/d.bin:/content"));
    expect(redirect.status).toBe(302);
    const location = redirect.headers.get("location")!;
    expect(new URL(location).origin).toBe(graph.downloadOrigin);
    const body = await call(location, { token: null });
    expect(body.status).toBe(200);
    expect(body.text).toBe("content");
  });
});

describe("names", () => {
  it("looks names up case-insensitively and keeps the stored case", async () => {
    const graph = await start();
    await call(api(graph, "root:/Mixed/Foo.TXT:/content"), { method: "PUT", body: "1" });
    const found = await call(api(graph, "root:/mixed/foo.txt:"));
    expect(found.json.name).toBe("Foo.TXT");
    await call(api(graph, "root:/MIXED/FOO.txt:/content"), { method: "PUT", body: "22" });
    expect(graph.list("Mixed")).toEqual(["Foo.TXT"]);
    expect(graph.file("mixed/foo.txt")?.content.toString()).toBe("22");
  });

  it.each(['"', "*", ":", "<", ">", "?", "\\", "|"])("refuses the reserved character %j", async (char) => {
    const graph = await start();
    const answer = await call(api(graph, `root:/a${encodeURIComponent(char)}b:/content`), {
      method: "PUT",
      body: "x",
    });
    expect(answer.status).toBe(400);
    expect(errorCode(answer)).toBe("invalidRequest");
  });

  it.each(["CON", "lpt1", ".lock", "desktop.ini", "a_vti_b", "~$lock"])(
    "refuses the reserved name %j",
    async (name) => {
      const graph = await start();
      const answer = await call(api(graph, `root:/${encodeURIComponent(name)}:/content`), {
        method: "PUT",
        body: "x",
      });
      expect(answer.status).toBe(400);
    },
  );

  it("refuses a folder name ending with '.', and drops a file name's edge spaces and trailing dot", async () => {
    const graph = await start();
    const folder = await call(api(graph, "root/children"), {
      method: "POST",
      body: JSON.stringify({ name: "dots.", folder: {} }),
      headers: { "content-type": "application/json" },
    });
    expect(folder.status).toBe(400);
    const file = await call(api(graph, `root:/${encodeURIComponent(" spaced. ")}:/content`), {
      method: "PUT",
      body: "x",
    });
    expect(file.json.name).toBe("spaced");
  });

  it("refuses '#', '%' and a leading '~' only on OneDrive for Business", async () => {
    const personal = await start();
    for (const name of ["a#b", "50%", "~x"]) {
      expect(
        (
          await call(api(personal, `root:/${encodeURIComponent(name)}:/content`), {
            method: "PUT",
            body: "x",
          })
        ).status,
      ).toBe(201);
    }
    const business = await start({ business: true });
    for (const name of ["a#b", "50%", "~x"]) {
      expect(
        (
          await call(api(business, `root:/${encodeURIComponent(name)}:/content`), {
            method: "PUT",
            body: "x",
          })
        ).status,
      ).toBe(400);
    }
  });

  it("answers 409 nameAlreadyExists per conflictBehavior, in the body, the query, and as @name.conflictBehavior", async () => {
    const graph = await start();
    graph.addFolder("F");
    const post = (body: object, query = "") =>
      call(api(graph, `root/children${query}`), {
        method: "POST",
        body: JSON.stringify(body),
        headers: { "content-type": "application/json" },
      });
    const fromBody = await post({ name: "F", folder: {}, "@microsoft.graph.conflictBehavior": "fail" });
    expect([fromBody.status, errorCode(fromBody)]).toEqual([409, "nameAlreadyExists"]);
    const legacy = await post({ name: "f", folder: {}, "@name.conflictBehavior": "fail" });
    expect([legacy.status, errorCode(legacy)]).toEqual([409, "nameAlreadyExists"]);
    const fromQuery = await post({ name: "F", folder: {} }, "?@microsoft.graph.conflictBehavior=fail");
    expect(fromQuery.status).toBe(409);
    const replace = await post({ name: "F", folder: {}, "@microsoft.graph.conflictBehavior": "replace" });
    expect(replace.status).toBe(200);
    const rename = await post({ name: "F", folder: {}, "@microsoft.graph.conflictBehavior": "rename" });
    expect([rename.status, rename.json.name]).toEqual([201, "F 1"]);
    graph.addFile("g.txt", Buffer.from("old"));
    const put = await call(api(graph, "root:/g.txt:/content?@microsoft.graph.conflictBehavior=fail"), {
      method: "PUT",
      body: "new",
    });
    expect([put.status, errorCode(put)]).toEqual([409, "nameAlreadyExists"]);
    expect(graph.file("g.txt")?.content.toString()).toBe("old");
  });
});

describe("paging", () => {
  it("pages children 200 at a time by default, honours $top, and links the next page by an absolute URL", async () => {
    const graph = await start();
    for (let i = 0; i < 205; i++) graph.addFile(`many/f${String(i).padStart(3, "0")}`, Buffer.from([i]));
    const first = await call(api(graph, "root:/many:/children"));
    expect((first.json.value as unknown[]).length).toBe(200);
    const next = first.json["@odata.nextLink"] as string;
    expect(new URL(next).origin).toBe(graph.url);
    expect(next).toMatch(/[?&]\$skiptoken=[A-Za-z0-9_-]+/);
    const small = await call(api(graph, "root:/many:/children?$top=50"));
    expect((small.json.value as unknown[]).length).toBe(50);
    const seen: string[] = [];
    let url: string | undefined = api(graph, "root:/many:/children?$top=60");
    while (url) {
      const page = await call(url);
      seen.push(...(page.json.value as Array<{ name: string }>).map((item) => item.name));
      url = page.json["@odata.nextLink"] as string | undefined;
    }
    expect(seen.length).toBe(205);
    expect(new Set(seen).size).toBe(205);
    expect((await call(api(graph, "root:/many:/children?$skip=10"))).status).toBe(400);
    expect((await call(api(graph, "root:/many:/children?$skiptoken=forged"))).status).toBe(400);
  });
});

describe("upload sessions", () => {
  const total = 2 * FRAGMENT_MULTIPLE + 1000;
  const data = randomBytes(total);

  it("answers 202 with nextExpectedRanges, then 201 with the item and its quickXorHash", async () => {
    const graph = await start();
    graph.addFolder("up");
    const session = await createSession(graph, "up/big.bin");
    expect(session.nextExpectedRanges).toEqual(["0-"]);
    const first = await fragment(session.uploadUrl, data.subarray(0, FRAGMENT_MULTIPLE), 0, total);
    expect(first.status).toBe(202);
    expect(first.json.nextExpectedRanges).toEqual([`${FRAGMENT_MULTIPLE}-`]);
    await fragment(
      session.uploadUrl,
      data.subarray(FRAGMENT_MULTIPLE, 2 * FRAGMENT_MULTIPLE),
      FRAGMENT_MULTIPLE,
      total,
    );
    const last = await fragment(
      session.uploadUrl,
      data.subarray(2 * FRAGMENT_MULTIPLE),
      2 * FRAGMENT_MULTIPLE,
      total,
    );
    expect(last.status).toBe(201);
    expect(last.json).toMatchObject({
      name: "big.bin",
      size: total,
      file: { hashes: { quickXorHash: quickXorHash(data) } },
    });
    expect(graph.file("up/big.bin")?.content.equals(data)).toBe(true);
    expect(graph.sessions).toEqual([]);
    const again = await createSession(graph, "up/big.bin", {
      "@microsoft.graph.conflictBehavior": "replace",
    });
    expect((await fragment(again.uploadUrl, data.subarray(0, 10), 0, 10)).status).toBe(200);
  });

  it("refuses a fragment out of order (400) and one that overlaps received bytes (416)", async () => {
    const graph = await start();
    const { uploadUrl } = await createSession(graph, "o.bin");
    const gap = await fragment(
      uploadUrl,
      data.subarray(FRAGMENT_MULTIPLE, 2 * FRAGMENT_MULTIPLE),
      FRAGMENT_MULTIPLE,
      total,
    );
    expect([gap.status, innerCode(gap)]).toEqual([400, "fragmentOutOfOrder"]);
    await fragment(uploadUrl, data.subarray(0, FRAGMENT_MULTIPLE), 0, total);
    const overlap = await fragment(uploadUrl, data.subarray(0, FRAGMENT_MULTIPLE), 0, total);
    expect([overlap.status, errorCode(overlap), innerCode(overlap)]).toEqual([
      416,
      "invalidRange",
      "fragmentOverlap",
    ]);
  });

  it("refuses a total that differs from the first fragment's", async () => {
    const graph = await start();
    const { uploadUrl } = await createSession(graph, "t.bin");
    await fragment(uploadUrl, data.subarray(0, FRAGMENT_MULTIPLE), 0, total);
    const other = await fragment(
      uploadUrl,
      data.subarray(FRAGMENT_MULTIPLE, 2 * FRAGMENT_MULTIPLE),
      FRAGMENT_MULTIPLE,
      total + 1,
    );
    expect([other.status, innerCode(other)]).toEqual([400, "fragmentLengthMismatch"]);
  });

  it("refuses a fragment of 60 MiB or more (413)", async () => {
    const graph = await start();
    const { uploadUrl } = await createSession(graph, "huge.bin");
    const big = 60 * 1024 * 1024 + FRAGMENT_MULTIPLE;
    const answer = await call(uploadUrl, {
      method: "PUT",
      token: null,
      body: "x",
      headers: { "content-range": `bytes 0-${big - 1}/${2 * big}` },
    });
    expect([answer.status, innerCode(answer)]).toEqual([413, "maxFragmentLengthExceeded"]);
  });

  it("refuses a fragment that is not a multiple of 320 KiB, except the last; strictness can be lowered", async () => {
    const graph = await start();
    const { uploadUrl } = await createSession(graph, "m.bin");
    expect((await fragment(uploadUrl, data.subarray(0, 1000), 0, total)).status).toBe(400);
    const lenient = await start({ strict: { fragmentMultiple: false } });
    const session = await createSession(lenient, "m.bin");
    expect((await fragment(session.uploadUrl, data.subarray(0, 1000), 0, total)).status).toBe(202);
  });

  it("reports status on GET, cancels on DELETE (204), and is gone afterwards (404)", async () => {
    const graph = await start();
    const { uploadUrl } = await createSession(graph, "c.bin");
    await fragment(uploadUrl, data.subarray(0, FRAGMENT_MULTIPLE), 0, total);
    const status = await call(uploadUrl, { token: null });
    expect(status.json.nextExpectedRanges).toEqual([`${FRAGMENT_MULTIPLE}-`]);
    expect((await call(uploadUrl, { method: "DELETE", token: null })).status).toBe(204);
    expect(graph.counters.sessionsDeleted).toBe(1);
    const gone = await call(uploadUrl, { token: null });
    expect([gone.status, innerCode(gone)]).toEqual([404, "uploadSessionNotFound"]);
    expect(graph.file("c.bin")).toBeUndefined();
  });

  it("expires sessions (404 by default, or 401 unauthenticated as reported in the field)", async () => {
    let clock = Date.parse("2026-01-01T00:00:00Z");
    const graph = await start({ now: () => clock, sessionLifetimeMs: 60_000 });
    const { uploadUrl, expirationDateTime } = await createSession(graph, "e.bin");
    expect(Date.parse(expirationDateTime)).toBe(clock + 60_000);
    clock += 60_001;
    expect((await fragment(uploadUrl, data.subarray(0, FRAGMENT_MULTIPLE), 0, total)).status).toBe(404);
    const strict401 = await start({ now: () => clock, sessionLifetimeMs: 60_000, expiredSessionStatus: 401 });
    const other = await createSession(strict401, "e.bin");
    clock += 60_001;
    const answer = await fragment(other.uploadUrl, data.subarray(0, FRAGMENT_MULTIPLE), 0, total);
    expect([answer.status, errorCode(answer)]).toEqual([401, "unauthenticated"]);
    expect(answer.json.error).toMatchObject({ message: expect.stringContaining("expired") });
  });

  it("calls onFragment after each accepted fragment, before answering it", async () => {
    const seen: string[] = [];
    const graph = await start({
      onFragment: ({ path, received, total: of }) => seen.push(`${path} ${received}/${of}`),
    });
    const { uploadUrl } = await createSession(graph, "hook.bin");
    await fragment(uploadUrl, data.subarray(0, FRAGMENT_MULTIPLE), 0, total);
    expect(seen).toEqual([`/hook.bin ${FRAGMENT_MULTIPLE}/${total}`]);
  });

  it("shows live sessions to a test, and expireSessions() ends them", async () => {
    const graph = await start();
    const { uploadUrl } = await createSession(graph, "live.bin");
    await fragment(uploadUrl, data.subarray(0, FRAGMENT_MULTIPLE), 0, total);
    expect(graph.sessions).toMatchObject([
      { path: "/live.bin", received: FRAGMENT_MULTIPLE, total, fragments: 1 },
    ]);
    graph.expireSessions();
    expect(graph.sessions).toEqual([]);
    expect((await call(uploadUrl, { token: null })).status).toBe(404);
  });

  it("answers 401 to a fragment that carries Authorization (strict), and accepts it when lenient", async () => {
    const graph = await start();
    const { uploadUrl } = await createSession(graph, "a.bin");
    expect(
      (await fragment(uploadUrl, data.subarray(0, FRAGMENT_MULTIPLE), 0, total, "test-token")).status,
    ).toBe(401);
    const lenient = await start({ strict: { noAuthorizationOnUploads: false } });
    const session = await createSession(lenient, "a.bin");
    expect(
      (await fragment(session.uploadUrl, data.subarray(0, FRAGMENT_MULTIPLE), 0, total, "test-token")).status,
    ).toBe(202);
  });

  it("checks the name conflict at commit: 409 under fail, the session survives until deleted", async () => {
    const graph = await start();
    const { uploadUrl } = await createSession(graph, "n.bin", {
      "@microsoft.graph.conflictBehavior": "fail",
    });
    graph.addFile("n.bin", Buffer.from("first"));
    const last = await fragment(uploadUrl, data.subarray(0, 100), 0, 100);
    expect([last.status, errorCode(last)]).toEqual([409, "nameAlreadyExists"]);
    expect(graph.file("n.bin")?.content.toString()).toBe("first");
    expect(graph.sessions).toHaveLength(1);
  });

  it("wants item properties inside 'item' and refuses them at the top level", async () => {
    const graph = await start();
    const answer = await call(api(graph, "root:/w.bin:/createUploadSession"), {
      method: "POST",
      body: JSON.stringify({ "@microsoft.graph.conflictBehavior": "replace" }),
      headers: { "content-type": "application/json" },
    });
    expect(answer.status).toBe(400);
  });
});

describe("downloads", () => {
  const content = Buffer.from("0123456789abcdefghij");

  it("honours Range with 206 and Content-Range, a suffix range, and refuses an unsatisfiable one (416)", async () => {
    const graph = await start();
    graph.addFile("r.bin", content);
    const location = (await call(api(graph, "root:/r.bin:/content"))).headers.get("location")!;
    const part = await call(location, { token: null, headers: { range: "bytes=2-5" } });
    expect([part.status, part.text, part.headers.get("content-range")]).toEqual([
      206,
      "2345",
      "bytes 2-5/20",
    ]);
    const suffix = await call(location, { token: null, headers: { range: "bytes=-3" } });
    expect(suffix.text).toBe("hij");
    const open = await call(location, { token: null, headers: { range: "bytes=18-" } });
    expect(open.text).toBe("ij");
    expect((await call(location, { token: null, headers: { range: "bytes=20-" } })).status).toBe(416);
  });

  it("lets a download URL expire, and binds it to the content it was made for", async () => {
    let clock = Date.now();
    const graph = await start({ now: () => clock, downloadUrlLifetimeMs: 1000 });
    graph.addFile("x.bin", content);
    const location = (await call(api(graph, "root:/x.bin:/content"))).headers.get("location")!;
    clock += 1001;
    expect((await call(location, { token: null })).status).toBe(404);
    const fresh = (await call(api(graph, "root:/x.bin:/content"))).headers.get("location")!;
    graph.addFile("x.bin", Buffer.from("changed"));
    expect((await call(fresh, { token: null })).status).toBe(404);
  });

  it("answers 401 to a download that carries Authorization", async () => {
    const graph = await start();
    graph.addFile("x.bin", content);
    const location = (await call(api(graph, "root:/x.bin:/content"))).headers.get("location")!;
    expect((await call(location)).status).toBe(401);
  });

  it("can stream /content directly (200, or 206 for a range) instead of redirecting", async () => {
    const graph = await start({ redirectDownloads: false });
    graph.addFile("x.bin", content);
    const whole = await call(api(graph, "root:/x.bin:/content"));
    expect([whole.status, whole.text]).toEqual([200, content.toString()]);
    const part = await call(api(graph, "root:/x.bin:/content"), { headers: { range: "bytes=0-0" } });
    expect([part.status, part.text]).toEqual([206, "0"]);
  });
});

describe("items", () => {
  it("carry quickXorHash, size, eTag, cTag, lastModifiedDateTime, fileSystemInfo and parentReference", async () => {
    let clock = Date.parse("2026-03-01T10:00:00Z");
    const graph = await start({ now: () => clock });
    graph.addFile("Docs/i.bin", content());
    const item = (await call(api(graph, "root:/Docs/i.bin:"))).json;
    expect(item).toMatchObject({
      name: "i.bin",
      size: 3,
      file: { hashes: { quickXorHash: quickXorHash(content()) } },
      lastModifiedDateTime: "2026-03-01T10:00:00.000Z",
      fileSystemInfo: { lastModifiedDateTime: "2026-03-01T10:00:00.000Z" },
      parentReference: { driveId: graph.driveId, path: "/drive/root:/Docs" },
    });
    expect(item.eTag).toEqual(expect.any(String));
    expect(item.cTag).toEqual(expect.any(String));
    expect(item["@microsoft.graph.downloadUrl"]).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/dl\//);
    clock += 1000;
    await call(api(graph, "root:/Docs/i.bin:/content"), { method: "PUT", body: "new" });
    const after = (await call(api(graph, "root:/Docs/i.bin:"))).json;
    expect(after.eTag).not.toBe(item.eTag);
    expect(after.cTag).not.toBe(item.cTag);
    expect(after.lastModifiedDateTime).toBe("2026-03-01T10:00:01.000Z");
    const folder = (await call(api(graph, "root:/Docs:"))).json;
    expect(folder.folder).toEqual({ childCount: 1 });
    expect(folder.cTag).toBeUndefined();
  });

  function content(): Buffer {
    return Buffer.from([1, 2, 3]);
  }

  it("compute quickXorHash as the published vectors say", () => {
    expect(quickXorHash(Buffer.alloc(0))).toBe("AAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    expect(quickXorHash(Buffer.from("Sg==", "base64"))).toBe("SgAAAAAAAAAAAAAAAQAAAAAAAAA=");
    expect(quickXorHash(Buffer.from("tbQ=", "base64"))).toBe("taAFAAAAAAAAAAAAAgAAAAAAAAA=");
  });
});

describe("fault injection and errors", () => {
  it("throttles with 429 or 503, Retry-After and RateLimit-* headers", async () => {
    const graph = await start();
    graph.faults.add({ path: /\/children/, times: 2, respond: graphThrottled(429, 7) });
    const first = await call(api(graph, "root/children"));
    expect([
      first.status,
      first.headers.get("retry-after"),
      first.headers.get("ratelimit-remaining"),
    ]).toEqual([429, "7", "0"]);
    expect(errorCode(first)).toBe("activityLimitReached");
    expect((await call(api(graph, "root/children"))).status).toBe(429);
    expect((await call(api(graph, "root/children"))).status).toBe(200);
    graph.faults.add({ path: /\/children/, respond: graphThrottled(503, 2) });
    const busy = await call(api(graph, "root/children"));
    expect([busy.status, busy.headers.get("retry-after")]).toEqual([503, "2"]);
  });

  it("answers 401 InvalidAuthenticationToken once the OAuth provider's token has expired", async () => {
    let clock = Date.now();
    const oauth = await startOAuthProvider({ now: () => clock, accessTokenLifetimeSec: 60 });
    running.push(oauth);
    const graph = await start({ validateToken: (token) => oauth.validate(token) });
    const token = oauth.issueAccessToken();
    expect((await call(api(graph, "root"), { token })).status).toBe(200);
    clock += 61_000;
    const expired = await call(api(graph, "root"), { token });
    expect([expired.status, errorCode(expired)]).toEqual([401, "InvalidAuthenticationToken"]);
    expect(expired.headers.get("www-authenticate")).toMatch(/^Bearer /);
    expect((expired.json.error as { innerError?: object }).innerError).toHaveProperty("request-id");
    const none = await call(api(graph, "root"), { token: null });
    expect([none.status, errorCode(none)]).toEqual([401, "InvalidAuthenticationToken"]);
  });

  it("answers 507 quotaLimitReached when the quota is used up: simple PUT, session create and commit", async () => {
    const graph = await start({ quotaBytes: 1000 });
    const simple = await call(api(graph, "root:/q.bin:/content"), {
      method: "PUT",
      body: Buffer.alloc(1001),
    });
    expect([simple.status, errorCode(simple)]).toEqual([507, "quotaLimitReached"]);
    const declared = await call(api(graph, "root:/q.bin:/createUploadSession"), {
      method: "POST",
      body: JSON.stringify({ item: { fileSize: 1001 } }),
      headers: { "content-type": "application/json" },
    });
    expect(declared.status).toBe(507);
    const { uploadUrl } = await createSession(graph, "q.bin");
    const commit = await fragment(uploadUrl, Buffer.alloc(1001), 0, 1001);
    expect([commit.status, errorCode(commit)]).toEqual([507, "quotaLimitReached"]);
  });

  it("refuses a simple upload above 4 MiB with 413", async () => {
    const graph = await start();
    const answer = await call(api(graph, "root:/big.bin:/content"), {
      method: "PUT",
      body: Buffer.alloc(4 * 1024 * 1024 + 1),
    });
    expect(answer.status).toBe(413);
  });

  it("injects 5xx bursts with Graph-shaped bodies, then answers normally", async () => {
    const graph = await start();
    graph.faults.add({
      path: /\/root$/,
      times: 3,
      respond: graphErrorResponse(500, "generalException", "boom"),
    });
    for (let i = 0; i < 3; i++) {
      const answer = await call(api(graph, "root"));
      expect([answer.status, errorCode(answer)]).toEqual([500, "generalException"]);
    }
    expect((await call(api(graph, "root"))).status).toBe(200);
  });
});
