import { subscribe, unsubscribe } from "node:diagnostics_channel";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Readable } from "node:stream";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { StorageError } from "../src/errors.js";
import { createHttpClient, type HttpClient, type HttpClientOptions, parseRetryAfter } from "../src/http.js";
import type { Logger, TokenSource } from "../src/types.js";

interface Hit {
  method: string;
  url: string;
  authorization: string | undefined;
  body: string;
  at: number;
}

type Handler = (req: IncomingMessage, res: ServerResponse, hit: Hit, index: number) => void;

let server: Server;
let baseUrl: string;
let handler: Handler;
let hits: Hit[] = [];
const clients: HttpClient[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const hit: Hit = {
        method: req.method ?? "",
        url: req.url ?? "",
        authorization: req.headers.authorization,
        body: Buffer.concat(chunks).toString("utf8"),
        at: Date.now(),
      };
      hits.push(hit);
      handler(req, res, hit, hits.length - 1);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
  hits = [];
});

function client(options: Partial<HttpClientOptions> = {}): HttpClient {
  const created = createHttpClient({
    provider: "test",
    baseUrl,
    retry: { minDelayMs: 1, maxDelayMs: 2_000 },
    ...options,
  });
  clients.push(created);
  return created;
}

function send(res: ServerResponse, status: number, body = "", headers: Record<string, string> = {}): void {
  res.writeHead(status, headers);
  res.end(body);
}

function sendJson(
  res: ServerResponse,
  status: number,
  value: unknown,
  headers: Record<string, string> = {},
): void {
  send(res, status, JSON.stringify(value), { "content-type": "application/json", ...headers });
}

/** A token source that hands out `tokens` in turn, moving on when the current one is invalidated. */
function countingTokenSource(...tokens: string[]) {
  let current = 0;
  const state = { fetched: 0, invalidated: [] as string[] };
  const source: TokenSource = {
    kind: "counting",
    async getToken() {
      state.fetched++;
      return { token: tokens[Math.min(current, tokens.length - 1)]! };
    },
    invalidate(token) {
      state.invalidated.push(token);
      if (token === tokens[current]) current++;
    },
  };
  return { source, state };
}

function capturingLogger() {
  const lines: string[] = [];
  const record = (level: string) => (obj: object, msg?: string) =>
    lines.push(JSON.stringify({ level, obj, msg }));
  const logger: Logger = {
    debug: record("debug"),
    info: record("info"),
    warn: record("warn"),
    error: record("error"),
  };
  return { logger, lines };
}

function listen(name: string) {
  const events: unknown[] = [];
  const onMessage = (message: unknown) => events.push(message);
  subscribe(name, onMessage);
  return { events, stop: () => unsubscribe(name, onMessage) };
}

async function failure(promise: Promise<unknown>): Promise<StorageError> {
  const outcome = await promise.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(outcome).toBeInstanceOf(StorageError);
  return outcome as StorageError;
}

describe("HttpClient auth", () => {
  it("on a 401, invalidates the token that was used and sends the request once more with a fresh one", async () => {
    const { source, state } = countingTokenSource("old-token-aaaaaaaa", "new-token-bbbbbbbb");
    handler = (_req, res, hit) =>
      hit.authorization === "Bearer old-token-aaaaaaaa"
        ? send(res, 401, "expired")
        : sendJson(res, 200, { ok: true });
    const tokenEvents = listen("stowage:token");

    try {
      const response = await client({ tokenSource: source }).request({
        method: "PUT",
        url: "/files/a.txt",
        operation: "put",
        body: "hello",
      });
      expect(response.status).toBe(200);
      expect(await response.json()).toEqual({ ok: true });
    } finally {
      tokenEvents.stop();
    }

    expect(state.invalidated).toEqual(["old-token-aaaaaaaa"]);
    expect(hits.map((hit) => hit.authorization)).toEqual([
      "Bearer old-token-aaaaaaaa",
      "Bearer new-token-bbbbbbbb",
    ]);
    expect(hits.map((hit) => hit.body)).toEqual(["hello", "hello"]);
    expect(tokenEvents.events).toEqual([{ provider: "test", kind: "counting", event: "invalidate" }]);
  });

  it("a second 401 with the fresh token is Unauthenticated", async () => {
    const { source, state } = countingTokenSource("old-token-aaaaaaaa", "new-token-bbbbbbbb");
    handler = (_req, res) =>
      sendJson(res, 401, {
        error: { code: "InvalidAuthenticationToken", message: "Access token has expired." },
      });

    const error = await failure(
      client({ tokenSource: source }).request({
        method: "GET",
        url: "/files/a.txt",
        operation: "stat",
        key: "a.txt",
      }),
    );

    expect(error.code).toBe("Unauthenticated");
    expect(error.status).toBe(401);
    expect(error.retryable).toBe(false);
    expect(error.message).toBe(
      "test stat 'a.txt': GET /files/a.txt returned 401 Unauthorized: InvalidAuthenticationToken: Access token has expired. (check the credentials, or create a new token)",
    );
    expect(error.hint).toContain("create a new token");
    expect(hits).toHaveLength(2);
    expect(state.fetched).toBe(2);
    expect(state.invalidated).toEqual(["old-token-aaaaaaaa", "new-token-bbbbbbbb"]);
  });

  it("never lets the token reach error messages, JSON, log lines or events", async () => {
    const token = "very-secret-token-0123456789";
    const { source } = countingTokenSource(token);
    const { logger, lines } = capturingLogger();
    // A server that echoes the credentials back, as some do in their error text.
    handler = (req, res) =>
      send(
        res,
        403,
        `denied for ${req.headers.authorization}; raw token ${token}; header: Authorization: Bearer ${token}`,
      );
    const requests = listen("stowage:request");

    let error: StorageError;
    try {
      error = await failure(
        client({ tokenSource: source, logger }).request({
          method: "GET",
          url: "/private",
          operation: "stat",
          query: { access_token: token },
        }),
      );
    } finally {
      requests.stop();
    }

    expect(error.code).toBe("PermissionDenied");
    expect(error.message).toContain(
      "GET /private?access_token=[redacted] returned 403 Forbidden: denied for Bearer [redacted]",
    );
    expect(hits[0]?.authorization).toBe(`Bearer ${token}`);
    const outputs = [error.message, String(error), JSON.stringify(error), error.hint ?? "", ...lines];
    outputs.push(JSON.stringify(requests.events));
    expect(lines).toHaveLength(1);
    expect(requests.events).toHaveLength(1);
    for (const output of outputs) expect(output).not.toContain(token);
  });

  it("hides a pre-authenticated URL, which is a credential itself, from messages and events", async () => {
    const { source } = countingTokenSource("token-cccccccccc");
    handler = (_req, res) => send(res, 404, "session not found");
    const requests = listen("stowage:request");

    let error: StorageError;
    try {
      error = await failure(
        client({ tokenSource: source }).request({
          method: "PUT",
          url: `${baseUrl}/upload/session-SECRET-7f3a9c`,
          operation: "put",
          auth: false,
          body: new Uint8Array([1, 2, 3]),
        }),
      );
    } finally {
      requests.stop();
    }

    expect(hits[0]?.authorization).toBeUndefined();
    expect(error.code).toBe("NotFound");
    expect(error.message).toBe("test put: PUT /[redacted] returned 404 Not Found: session not found");
    expect(JSON.stringify(requests.events)).not.toContain("session-SECRET");
    expect(requests.events).toMatchObject([{ url: `${baseUrl}/[redacted]`, status: 404 }]);
  });
});

describe("HttpClient errors and retries", () => {
  it("honours Retry-After on a 429, then succeeds", async () => {
    handler = (_req, res, _hit, index) =>
      index === 0 ? send(res, 429, "slow down", { "retry-after": "1" }) : sendJson(res, 200, { ok: true });
    const delays: number[] = [];

    const response = await client({
      retry: { minDelayMs: 1, random: () => 0, onRetry: ({ delayMs }) => delays.push(delayMs) },
    }).request({ method: "GET", url: "/throttled", operation: "stat" });

    expect(response.status).toBe(200);
    await response.dump();
    expect(delays).toEqual([1_000]);
    expect(hits).toHaveLength(2);
    expect(hits[1]!.at - hits[0]!.at).toBeGreaterThanOrEqual(950);
  });

  it("fails at once with RateLimited when an HTTP-date Retry-After is past maxDelayMs", async () => {
    const inAnHour = new Date(Date.now() + 3_600_000).toUTCString();
    handler = (_req, res) => send(res, 503, "maintenance", { "retry-after": inAnHour });

    const error = await failure(
      client({ retry: { maxDelayMs: 30_000 } }).request({
        method: "GET",
        url: "/maintenance",
        operation: "list",
      }),
    );

    expect(error.code).toBe("RateLimited");
    expect(error.status).toBe(503);
    expect(error.retryAfterMs).toBeGreaterThan(3_590_000);
    expect(error.retryAfterMs).toBeLessThanOrEqual(3_600_000);
    expect(error.message).toMatch(
      /^test list: the server asked to wait 3[56]\d\d s, longer than the maximum 30 s/,
    );
    expect(hits).toHaveLength(1);
  });

  it("retries a burst of 503s, then succeeds", async () => {
    handler = (_req, res, _hit, index) => (index < 3 ? send(res, 503, "busy") : send(res, 200, "content"));
    const codes: string[] = [];

    const response = await client({
      retry: { minDelayMs: 1, maxDelayMs: 10, onRetry: ({ error }) => codes.push(error.code) },
    }).request({ method: "GET", url: "/busy", operation: "get" });

    expect(await response.text()).toBe("content");
    expect(hits).toHaveLength(4);
    expect(codes).toEqual(["Unavailable", "Unavailable", "Unavailable"]);
  });

  it("gives up on 503 after the configured attempts with Unavailable", async () => {
    handler = (_req, res) => send(res, 503, "busy");

    const error = await failure(
      client({ retry: { attempts: 2, minDelayMs: 1 } }).request({
        method: "GET",
        url: "/down",
        operation: "get",
      }),
    );

    expect(error.code).toBe("Unavailable");
    expect(error.retryable).toBe(true);
    expect(error.message).toBe("test get: GET /down returned 503 Service Unavailable: busy");
    expect(hits).toHaveLength(2);
  });

  it("maps 404 to NotFound without retrying, naming the key, method, path and server text", async () => {
    handler = (_req, res) =>
      sendJson(res, 404, { error: { code: "itemNotFound", message: "The resource could not be found." } });

    const error = await failure(
      client().request({ method: "GET", url: "/items/a.txt", operation: "stat", key: "a.txt" }),
    );

    expect(error.code).toBe("NotFound");
    expect(error.status).toBe(404);
    expect(error.message).toBe(
      "test stat 'a.txt': GET /items/a.txt returned 404 Not Found: itemNotFound: The resource could not be found.",
    );
    expect(hits).toHaveLength(1);
  });

  it("lets a classify hook override the status table", async () => {
    handler = (_req, res) => send(res, 404, "parent missing");

    const error = await failure(
      client({
        classify: ({ status, bodyText }) =>
          status === 404 && bodyText.includes("parent")
            ? { code: "FolderMissing", message: "the root folder does not exist", hint: "call createRoot()" }
            : undefined,
      }).request({ method: "GET", url: "/root", operation: "list" }),
    );

    expect(error.code).toBe("FolderMissing");
    expect(error.message).toBe(
      "test list: GET /root returned 404 Not Found: the root folder does not exist (call createRoot())",
    );
  });

  it("cuts a long server text to a short excerpt", async () => {
    handler = (_req, res) => send(res, 400, `${"x".repeat(5_000)}END`);

    const error = await failure(
      client().request({ method: "POST", url: "/bad", operation: "put", body: "{}" }),
    );

    expect(error.code).toBe("Protocol");
    expect(error.detail).toMatch(/^POST \/bad returned 400 Bad Request: x+…$/);
    expect(error.detail.length).toBeLessThan(400);
  });

  it("a connection reset is Unavailable when not retried", async () => {
    handler = (req) => req.socket.destroy();

    const error = await failure(
      client({ retry: false }).request({ method: "GET", url: "/reset", operation: "get", key: "a.txt" }),
    );

    expect(error.code).toBe("Unavailable");
    expect(error.retryable).toBe(true);
    expect(error.message).toMatch(
      /^test get 'a\.txt': GET \/reset: the connection was (closed by the server|reset)/,
    );
    expect(hits).toHaveLength(1);
  });

  it("recovers from a connection reset by retrying", async () => {
    handler = (req, res, _hit, index) => (index === 0 ? req.socket.destroy() : send(res, 200, "content"));

    const response = await client().request({ method: "GET", url: "/reset", operation: "get" });

    expect(await response.text()).toBe("content");
    expect(hits).toHaveLength(2);
  });

  it("does not retry a stream body", async () => {
    handler = (_req, res) => send(res, 503, "busy");

    const error = await failure(
      client().request({
        method: "PUT",
        url: "/upload",
        operation: "put",
        body: Readable.from([Buffer.from("abc")]),
      }),
    );

    expect(error.code).toBe("Unavailable");
    expect(hits).toHaveLength(1);
    expect(hits[0]?.body).toBe("abc");
  });

  it("is a Timeout when the server sends no headers within headersTimeoutMs", async () => {
    handler = () => {};

    const started = Date.now();
    const error = await failure(
      client({ headersTimeoutMs: 200, retry: false }).request({
        method: "GET",
        url: "/hang",
        operation: "stat",
      }),
    );

    expect(error.code).toBe("Timeout");
    expect(error.retryable).toBe(true);
    expect(error.message).toBe(
      "test stat: GET /hang: the server sent no response headers in time (UND_ERR_HEADERS_TIMEOUT)",
    );
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("rejects with Aborted when the signal fires mid-request", async () => {
    handler = () => {};
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);

    const started = Date.now();
    const error = await failure(
      client().request({
        method: "GET",
        url: "/slow",
        operation: "get",
        key: "a.txt",
        signal: controller.signal,
      }),
    );

    expect(error.code).toBe("Aborted");
    expect(error.message).toBe("test get 'a.txt': the operation was aborted");
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(hits).toHaveLength(1);
  });

  it("a reset in the middle of the body errors the body stream with Unavailable", async () => {
    handler = (req, res) => {
      res.writeHead(200, { "content-length": "1000" });
      res.write("partial", () => setTimeout(() => req.socket.destroy(), 20));
    };

    const response = await client().request({ method: "GET", url: "/cut", operation: "get", key: "a.txt" });
    const reader = response.body.getReader();
    const first = await reader.read();
    const error = await failure(reader.read());

    expect(new TextDecoder().decode(first.value)).toBe("partial");
    expect(error.code).toBe("Unavailable");
    expect(error.message).toMatch(/^test get 'a\.txt': GET \/cut: the connection was/);
  });

  it("follows redirects only when asked", async () => {
    handler = (req, res) =>
      req.url === "/old" ? send(res, 302, "", { location: "/new" }) : send(res, 200, "moved");
    const http = client();

    const error = await failure(http.request({ method: "GET", url: "/old", operation: "get" }));
    expect(error.code).toBe("Protocol");
    expect(error.message).toBe("test get: GET /old returned 302 Found");

    const response = await http.request({
      method: "GET",
      url: "/old",
      operation: "get",
      followRedirects: true,
    });
    expect(await response.text()).toBe("moved");
    expect(hits.map((hit) => hit.url)).toEqual(["/old", "/old", "/new"]);
  });

  it("keeps at most `concurrency` requests in flight", async () => {
    let inFlight = 0;
    let most = 0;
    handler = (_req, res) => {
      inFlight++;
      most = Math.max(most, inFlight);
      setTimeout(() => {
        inFlight--;
        send(res, 204);
      }, 30);
    };
    const http = client({ concurrency: 2 });

    const responses = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        http.request({ method: "DELETE", url: `/items/${i}`, operation: "delete" }),
      ),
    );

    expect(responses.map((response) => response.status)).toEqual([204, 204, 204, 204, 204, 204]);
    expect(most).toBe(2);
  });

  it("publishes each request on stowage:request and logs it at debug", async () => {
    handler = (_req, res) => send(res, 200, "ok");
    const { logger, lines } = capturingLogger();
    const requests = listen("stowage:request");

    try {
      const response = await client({ logger }).request({
        method: "get",
        url: "items",
        operation: "stat",
        query: { select: "name", skip: undefined, top: 5 },
      });
      await response.dump();
    } finally {
      requests.stop();
    }

    expect(hits[0]?.url).toBe("/items?select=name&top=5");
    const expected = {
      provider: "test",
      operation: "stat",
      method: "GET",
      url: `${baseUrl}/items?select=name&top=5`,
      status: 200,
      attempt: 1,
    };
    expect(requests.events).toEqual([{ ...expected, ms: expect.any(Number) }]);
    expect(lines.map((line) => JSON.parse(line))).toEqual([
      { level: "debug", obj: { ...expected, ms: expect.any(Number) }, msg: "http request" },
    ]);
  });
});

describe("HttpClient JSON responses", () => {
  const listing = z.object({ items: z.array(z.object({ name: z.string(), size: z.number() })) });

  it("returns the validated value", async () => {
    handler = (_req, res) => sendJson(res, 200, { items: [{ name: "a.txt", size: 12 }] });

    const value = await client().requestJson({ method: "GET", url: "/list", operation: "list" }, listing);

    expect(value).toEqual({ items: [{ name: "a.txt", size: 12 }] });
  });

  it("maps a body that does not match the schema to Protocol naming the field, not the body", async () => {
    handler = (_req, res) =>
      sendJson(res, 200, { items: [{ name: "a.txt", size: "12" }], note: "private-marker-42" });

    const error = await failure(
      client().requestJson({ method: "GET", url: "/list", operation: "list" }, listing),
    );

    expect(error.code).toBe("Protocol");
    expect(error.status).toBe(200);
    expect(error.message).toBe(
      "test list: GET /list: the response does not have the expected shape: at items[0].size: Invalid input: expected number, received string",
    );
    expect(JSON.stringify(error)).not.toContain("private-marker-42");
  });

  it("maps a body that is not JSON to Protocol without quoting it", async () => {
    handler = (_req, res) =>
      send(res, 200, "<html>private-marker-42</html>", { "content-type": "text/html" });

    const error = await failure(
      client().requestJson({ method: "GET", url: "/list", operation: "list" }, listing),
    );

    expect(error.code).toBe("Protocol");
    expect(error.message).toContain("GET /list: the response is not valid JSON");
    expect(String(error)).not.toContain("private-marker-42");
  });
});

describe("parseRetryAfter", () => {
  const now = Date.parse("Sun, 06 Nov 1994 08:49:00 GMT");

  it("reads delta-seconds", () => {
    expect(parseRetryAfter("120", now)).toBe(120_000);
    expect(parseRetryAfter(" 0 ", now)).toBe(0);
  });

  it("reads the three HTTP-date forms as GMT", () => {
    expect(parseRetryAfter("Sun, 06 Nov 1994 08:49:37 GMT", now)).toBe(37_000);
    expect(parseRetryAfter("Sunday, 06-Nov-94 08:49:37 GMT", now)).toBe(37_000);
    expect(parseRetryAfter("Sun Nov  6 08:49:37 1994", now)).toBe(37_000);
  });

  it("gives 0 for a date in the past", () => {
    expect(parseRetryAfter("Sun, 06 Nov 1994 08:00:00 GMT", now)).toBe(0);
  });

  it("gives undefined for a missing or malformed value", () => {
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
    for (const value of ["", "soon", "1.5", "-3", "Sun, 06 Nov 1994"]) {
      expect(parseRetryAfter(value, now)).toBeUndefined();
    }
  });
});
