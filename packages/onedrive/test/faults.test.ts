import { Buffer } from "node:buffer";
import { oauthRefreshToken } from "@stowage/auth";
import {
  defaultOAuthClient,
  type GraphEmulator,
  graphErrorResponse,
  graphThrottled,
  startOAuthProvider,
} from "@stowage/emulators";
import { describe, expect, it } from "vitest";
import {
  bytesOf,
  emulator,
  FRAGMENT_MULTIPLE,
  failure,
  fileBlob,
  fragmentRequests,
  onCleanup,
  spoolDir,
  spoolFiles,
  storageOn,
  streamed,
} from "./support/setup.js";

// Four fragments: three whole ones and a short last one.
const size = 3 * FRAGMENT_MULTIPLE + 4321;
const fragmentPut = { method: "PUT", path: /^\/up\// } as const;

/** The object is in its folder exactly once, with exactly these bytes. */
function expectStoredOnce(graph: GraphEmulator, name: string, data: Uint8Array): void {
  expect(graph.file(`Backups/pc1/${name}`)?.content.equals(Buffer.from(data))).toBe(true);
  expect(graph.list("Backups/pc1")!.filter((stored) => stored.toLowerCase() === name.toLowerCase())).toEqual([
    name,
  ]);
}

/** Faults that let `count` fragment PUTs through, so that the next fault meets fragment `count + 1`. */
function skipFragments(graph: GraphEmulator, count: number): void {
  graph.faults.add({ ...fragmentPut, delayMs: 0, times: count });
}

describe("faults during an upload end with the exact bytes stored once", () => {
  it("a 429 with Retry-After on a fragment: waits, sends it again, same session", async () => {
    const graph = await emulator();
    const storage = storageOn(graph, { createRoot: true });
    const data = bytesOf(size, 11);
    skipFragments(graph, 1);
    const fault = graph.faults.add({ ...fragmentPut, respond: graphThrottled(429, 1) });
    const started = performance.now();
    await storage.put("throttled.bin", data);
    expect(performance.now() - started).toBeGreaterThanOrEqual(950);
    expect(fault.hits).toBe(1);
    expect(graph.counters).toMatchObject({ sessionsCreated: 1, fragmentBytes: size });
    expectStoredOnce(graph, "throttled.bin", data);
  });

  it("a burst of 503s on fragments: each is retried, same session", async () => {
    const graph = await emulator();
    const storage = storageOn(graph, { createRoot: true });
    const data = bytesOf(size, 12);
    skipFragments(graph, 2);
    const fault = graph.faults.add({ ...fragmentPut, times: 3, respond: graphThrottled(503, 0) });
    await storage.put("busy.bin", data);
    expect(fault.hits).toBe(3);
    expect(graph.counters).toMatchObject({ sessionsCreated: 1, fragmentBytes: size });
    expectStoredOnce(graph, "busy.bin", data);
  });

  it("a connection reset while a fragment is being sent: the fragment is sent again", async () => {
    const graph = await emulator();
    const storage = storageOn(graph, { createRoot: true });
    const data = bytesOf(size, 13);
    skipFragments(graph, 1);
    const fault = graph.faults.add({ ...fragmentPut, reset: true });
    await storage.put("reset.bin", data);
    expect(fault.hits).toBe(1);
    expect(graph.counters).toMatchObject({ sessionsCreated: 1, fragmentBytes: size });
    expectStoredOnce(graph, "reset.bin", data);
  });

  it("a connection reset in the middle of a fragment's answer (resetAfterBytes): 416, the session's status, go on", async () => {
    const graph = await emulator();
    const storage = storageOn(graph, { createRoot: true });
    const data = bytesOf(size, 14);
    skipFragments(graph, 1);
    const fault = graph.faults.add({ ...fragmentPut, resetAfterBytes: 10 });
    await storage.put("cut.bin", data);
    expect(fault.hits).toBe(1);
    const statuses = graph.requests
      .filter((request) => request.host === "upload")
      .map((r) => `${r.method} ${r.status}`);
    expect(statuses).toContain("GET 200");
    // The fragment landed before its answer was cut; the byte count shows it was not stored twice.
    expect(graph.counters).toMatchObject({ sessionsCreated: 1, fragmentBytes: size });
    expectStoredOnce(graph, "cut.bin", data);
  });

  it("the last fragment's answer is lost after the commit: the stored file is checked, not uploaded again", async () => {
    const graph = await emulator();
    const storage = storageOn(graph, { createRoot: true });
    const data = bytesOf(size, 15);
    skipFragments(graph, 3);
    graph.faults.add({ ...fragmentPut, resetAfterBytes: 0 });
    const entry = await storage.put("last.bin", data, { ifNotExists: true });
    expect(entry.size).toBe(size);
    expect(graph.counters).toMatchObject({ sessionsCreated: 1, sessionsCommitted: 1, fragmentBytes: size });
    expectStoredOnce(graph, "last.bin", data);
  });

  it("a 416 on a fragment: the session's status says where to go on", async () => {
    const graph = await emulator();
    const storage = storageOn(graph, { createRoot: true });
    const data = bytesOf(size, 20);
    skipFragments(graph, 2);
    const fault = graph.faults.add({
      ...fragmentPut,
      respond: graphErrorResponse(416, "invalidRange", "The fragment overlaps.", {
        innerCode: "fragmentOverlap",
      }),
    });
    await storage.put("overlap.bin", data);
    expect(fault.hits).toBe(1);
    expect(
      graph.requests.filter((request) => request.host === "upload" && request.method === "GET"),
    ).toHaveLength(1);
    expect(graph.counters).toMatchObject({ sessionsCreated: 1, fragmentBytes: size });
    expectStoredOnce(graph, "overlap.bin", data);
  });

  it("a session that asks for bytes sent before the current fragment: read again from a Blob, refused for a stream", async () => {
    const rewound = async (name: string, body: () => Promise<Blob> | AsyncIterable<Uint8Array>) => {
      const graph = await emulator();
      const storage = storageOn(graph, { createRoot: true });
      skipFragments(graph, 2);
      graph.faults.add({
        ...fragmentPut,
        respond: graphErrorResponse(416, "invalidRange", "Overlap", { innerCode: "fragmentOverlap" }),
      });
      // The session's status (faked once) sends the upload back to the second fragment.
      graph.faults.add({
        method: "GET",
        path: /^\/up\//,
        respond: { status: 200, body: { nextExpectedRanges: [`${FRAGMENT_MULTIPLE}-`] } },
      });
      return {
        graph,
        result: await storage.put(name, await body(), { size }).then(
          () => undefined,
          (err: unknown) => err,
        ),
      };
    };
    const data = bytesOf(size, 23);
    const blob = await rewound("blob.bin", () => fileBlob(data));
    expect(blob.result).toBeUndefined();
    expectStoredOnce(blob.graph, "blob.bin", data);
    const stream = await rewound("stream.bin", () => streamed(data));
    expect(stream.result).toMatchObject({
      code: "Unavailable",
      message: expect.stringContaining(
        `asked for byte ${FRAGMENT_MULTIPLE} again, which the body (a stream) no longer holds`,
      ),
    });
  });

  it("a 404 on a fragment while the session still answers (eventual consistency): same session", async () => {
    const graph = await emulator();
    const storage = storageOn(graph, { createRoot: true });
    const data = bytesOf(size, 16);
    skipFragments(graph, 2);
    graph.faults.add({
      ...fragmentPut,
      respond: graphErrorResponse(404, "itemNotFound", "Not found", { innerCode: "uploadSessionNotFound" }),
    });
    await storage.put("flaky.bin", data);
    expect(graph.counters).toMatchObject({ sessionsCreated: 1, fragmentBytes: size });
    expectStoredOnce(graph, "flaky.bin", data);
  });
});

describe("an access token expiring in the middle of an upload", () => {
  async function setup() {
    let clock = Date.now();
    const oauth = await startOAuthProvider({ now: () => clock, accessTokenLifetimeSec: 3600 });
    onCleanup(() => oauth.close());
    const graph = await emulator({ now: () => clock, validateToken: (token) => oauth.validate(token) });
    const auth = oauthRefreshToken({
      tokenUrl: oauth.tokenUrl,
      clientId: defaultOAuthClient.clientId,
      clientSecret: defaultOAuthClient.clientSecret,
      refreshToken: oauth.issueRefreshToken({ scopes: ["Files.ReadWrite", "offline_access"] }),
      onRotate: () => undefined,
    });
    const storage = storageOn(graph, { auth, createRoot: true });
    await storage.stat("warm-up").catch(() => undefined);
    const expire = () => {
      clock += 2 * 3600_000;
    };
    return { oauth, graph, storage, expire };
  }

  it("the fragments go on in the same session, without the token; the next Graph call refreshes it once", async () => {
    const { oauth, graph, storage, expire } = await setup();
    const before = oauth.counters.tokenRequests;
    const data = bytesOf(size, 17);
    await storage.put("t.bin", streamed(data, new Map([[2 * FRAGMENT_MULTIPLE, expire]])), { size });
    expect(graph.counters).toMatchObject({ sessionsCreated: 1, fragmentBytes: size });
    expect(fragmentRequests(graph).every((request) => !request.authorization)).toBe(true);
    expect(oauth.counters.tokenRequests).toBe(before);
    expect((await storage.stat("t.bin")).size).toBe(size);
    expect(oauth.counters.tokenRequests).toBe(before + 1);
    expectStoredOnce(graph, "t.bin", data);
  });

  it("when the upload needs Graph again (the last answer was lost), it refreshes and keeps the same session", async () => {
    const { oauth, graph, storage, expire } = await setup();
    const before = oauth.counters.tokenRequests;
    const data = bytesOf(size, 18);
    skipFragments(graph, 3);
    graph.faults.add({ ...fragmentPut, resetAfterBytes: 0 });
    await storage.put("u.bin", streamed(data, new Map([[FRAGMENT_MULTIPLE, expire]])), { size });
    expect(oauth.counters.tokenRequests).toBe(before + 1);
    const unauthorized = graph.requests.filter(
      (request) => request.host === "graph" && request.status === 401,
    );
    expect(unauthorized).toHaveLength(1);
    expect(graph.counters).toMatchObject({ sessionsCreated: 1, fragmentBytes: size });
    expectStoredOnce(graph, "u.bin", data);
  });
});

describe("an upload session expiring", () => {
  /** An emulator whose sessions all expire once a session holds `after` bytes. */
  async function expiringAfter(after: number, expiredSessionStatus: 404 | 401 = 404) {
    let expired = false;
    const graph: GraphEmulator = await emulator({
      expiredSessionStatus,
      onFragment: ({ received }) => {
        if (!expired && received === after) {
          expired = true;
          graph.expireSessions();
        }
      },
    });
    return graph;
  }

  it.each([404, 401] as const)(
    "restarts in a new session when the old one answers %d (bytes body)",
    async (status) => {
      const graph = await expiringAfter(2 * FRAGMENT_MULTIPLE, status);
      const storage = storageOn(graph, { createRoot: true });
      const data = bytesOf(size, 19);
      await storage.put("x.bin", data);
      expect(graph.counters.sessionsCreated).toBe(2);
      expect(graph.sessions).toEqual([]);
      const accepted = fragmentRequests(graph).filter(
        (request) => request.status === 202 || request.status === 201,
      );
      expect(accepted.map((request) => request.range?.replace(/\/.*/, ""))).toEqual([
        `bytes 0-${FRAGMENT_MULTIPLE - 1}`,
        `bytes ${FRAGMENT_MULTIPLE}-${2 * FRAGMENT_MULTIPLE - 1}`,
        `bytes 0-${FRAGMENT_MULTIPLE - 1}`,
        `bytes ${FRAGMENT_MULTIPLE}-${2 * FRAGMENT_MULTIPLE - 1}`,
        `bytes ${2 * FRAGMENT_MULTIPLE}-${3 * FRAGMENT_MULTIPLE - 1}`,
        `bytes ${3 * FRAGMENT_MULTIPLE}-${size - 1}`,
      ]);
      expectStoredOnce(graph, "x.bin", data);
    },
  );

  it("restarts a Blob body by reading it again, without a copy", async () => {
    const graph = await expiringAfter(2 * FRAGMENT_MULTIPLE);
    // A folder that does not exist: any attempt to make a copy there would fail the put.
    const storage = storageOn(graph, { createRoot: true, spoolDir: "/nonexistent/stowage-spool" });
    const data = bytesOf(size, 22);
    await storage.put("blob.bin", await fileBlob(data));
    expect(graph.counters.sessionsCreated).toBe(2);
    expectStoredOnce(graph, "blob.bin", data);
  });

  it("restarts a streamed body from its temporary copy when spoolDir is set, and removes the copy", async () => {
    const graph = await expiringAfter(2 * FRAGMENT_MULTIPLE);
    const dir = spoolDir();
    const storage = storageOn(graph, { createRoot: true, spoolDir: dir });
    const data = bytesOf(size, 20);
    await storage.put("s.bin", streamed(data), { size });
    expect(graph.counters.sessionsCreated).toBe(2);
    expectStoredOnce(graph, "s.bin", data);
    expect(spoolFiles(dir)).toEqual([]);
  });

  it("without a copy, a lost session fails a streamed put with a clear error, and stores nothing", async () => {
    const graph = await expiringAfter(2 * FRAGMENT_MULTIPLE);
    const storage = storageOn(graph, { createRoot: true });
    const err = await failure(storage.put("t.bin", streamed(bytesOf(size, 21)), { size }));
    expect(err.code).toBe("Unavailable");
    expect(err.message).toBe(
      `onedrive put 't.bin': the upload session was lost after ${3 * FRAGMENT_MULTIPLE} bytes (its upload URL answered 404), and a new one cannot start: the body is a stream that cannot be read again (put the object again; to let Stowage restart by itself, pass the body as bytes or a Blob (fs.openAsBlob), or set spoolDir)`,
    );
    expect(graph.counters.sessionsCreated).toBe(1);
    expect(graph.file("Backups/pc1/t.bin")).toBeUndefined();
  });

  it("gives up with a clear error after two restarts, and stores nothing", async () => {
    const graph = await emulator();
    const storage = storageOn(graph, { createRoot: true });
    graph.faults.add({
      path: /^\/up\//,
      times: Number.POSITIVE_INFINITY,
      respond: graphErrorResponse(404, "itemNotFound", "The upload session was not found.", {
        innerCode: "uploadSessionNotFound",
      }),
    });
    const err = await failure(storage.put("never.bin", bytesOf(size)));
    expect(err.code).toBe("Unavailable");
    expect(err.message).toBe(
      "onedrive put 'never.bin': the upload session was lost 3 times (its upload URL answered 404); the upload was restarted 2 times and then given up (put the object again; if it keeps happening, check the connection and the OneDrive service status)",
    );
    expect(graph.counters.sessionsCreated).toBe(3);
    expect(graph.file("Backups/pc1/never.bin")).toBeUndefined();
  });
});
