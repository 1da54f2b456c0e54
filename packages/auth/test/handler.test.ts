import type { StorageError, TokenSource } from "@stowage/core";
import { selfSignedCertificate } from "@stowage/emulators";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { type HandlerOptions, hostedHandler, selfHostedHandler } from "../src/index.js";
import {
  type DuplicatiHandler,
  type DuplicatiHandlerOptions,
  startDuplicatiHandler,
} from "./support/duplicati-handler.js";
import { failure } from "./support/failure.js";

const certificate = selfSignedCertificate();
const fastRetry = { minDelayMs: 1, maxDelayMs: 2_000 };

const hint = {
  newAuthId: (login: string) => `create a new AuthID at ${login}`,
};

const setups = [
  {
    name: "hostedHandler over https",
    operation: "hostedHandler",
    tls: true,
    create: (options: HandlerOptions) => hostedHandler(options),
  },
  {
    name: "selfHostedHandler over http on 127.0.0.1",
    operation: "selfHostedHandler",
    tls: false,
    create: (options: HandlerOptions) => selfHostedHandler(options),
  },
] as const;

describe.each(setups)("$name against a Duplicati handler", (setup) => {
  const handlers: DuplicatiHandler[] = [];

  beforeAll(() => {
    // The hosted strategy insists on https and core's HTTP client offers no way to add a CA, so this
    // block alone accepts the throw-away certificate; it is restored in afterAll.
    if (setup.tls) vi.stubEnv("NODE_TLS_REJECT_UNAUTHORIZED", "0");
  });

  afterAll(() => {
    vi.unstubAllEnvs();
  });

  afterEach(async () => {
    vi.useRealTimers();
    await Promise.all(handlers.splice(0).map((handler) => handler.close()));
  });

  async function start(options: DuplicatiHandlerOptions = {}): Promise<DuplicatiHandler> {
    const handler = await startDuplicatiHandler({ ...options, tls: setup.tls ? certificate : undefined });
    handlers.push(handler);
    return handler;
  }

  function source(
    handler: DuplicatiHandler,
    authId: string,
    options: Partial<HandlerOptions> = {},
  ): TokenSource {
    return setup.create({
      authId,
      url: handler.refreshUrl,
      provider: "onedrive",
      retry: fastRetry,
      ...options,
    });
  }

  /** `auth <op>: OAuth handler <url>: <detail> (<hint>)` */
  function message(handler: DuplicatiHandler, detail: string, hintText: string): string {
    return `auth ${setup.operation}: OAuth handler ${handler.refreshUrl}: ${detail} (${hintText})`;
  }

  const login = (handler: DuplicatiHandler) => `${handler.base}/?type=onedrive`;

  function expectNoSecret(err: StorageError, authId: string): void {
    const secret = authId.slice(authId.indexOf(":") + 1);
    for (const text of [err.message, err.hint ?? "", String(err), JSON.stringify(err)]) {
      expect(text).not.toContain(secret);
    }
  }

  it("sends GET with X-AuthID and returns the access token, expiring after `expires` seconds", async () => {
    const handler = await start({ expiresSec: 1800 });
    const authId = handler.addKey("onedrive");
    const before = Date.now();
    const { token, expiresAt } = await source(handler, authId).getToken();
    expect(token).toMatch(/^at-/);
    expect(expiresAt!.getTime()).toBeGreaterThanOrEqual(before + 1_800_000);
    expect(expiresAt!.getTime()).toBeLessThanOrEqual(Date.now() + 1_800_000);
    expect(handler.refreshes).toEqual([{ authId, apiKey: undefined }]);
  });

  it("trims and percent-decodes the AuthID once before sending it", async () => {
    const handler = await start();
    const authId = handler.addKey("onedrive");
    await source(handler, `  ${authId.replace(":", "%3A")}\n`).getToken();
    expect(handler.refreshes[0]?.authId).toBe(authId);
  });

  it("caches the token: a second getToken makes no request", async () => {
    const handler = await start();
    const auth = source(handler, handler.addKey("onedrive"));
    const first = await auth.getToken();
    expect((await auth.getToken()).token).toBe(first.token);
    expect(handler.refreshes).toHaveLength(1);
  });

  it("100 concurrent getToken calls on a cold cache make exactly one request", async () => {
    const handler = await start();
    handler.faults.add({ path: "/refresh", delayMs: 50 });
    const auth = source(handler, handler.addKey("onedrive"));
    const tokens = await Promise.all(Array.from({ length: 100 }, () => auth.getToken()));
    expect(new Set(tokens.map((t) => t.token)).size).toBe(1);
    expect(handler.refreshes.length).toBe(1);
  });

  it("invalidate(current token) makes the next call refresh; the offered v2_authid is not adopted", async () => {
    const handler = await start();
    const authId = handler.addKey("onedrive");
    const auth = source(handler, authId);
    const first = await auth.getToken();
    auth.invalidate("some-older-token");
    expect((await auth.getToken()).token).toBe(first.token);
    auth.invalidate(first.token);
    const second = await auth.getToken();
    expect(second.token).not.toBe(first.token);
    expect(handler.refreshes.map((r) => r.authId)).toEqual([authId, authId]);
  });

  it("a refresh failure while the cached token is still valid returns the cached token", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(new Date("2030-01-01T00:00:00Z"));
    const handler = await start({ expiresSec: 3600 });
    const authId = handler.addKey("onedrive");
    const auth = source(handler, authId);
    const first = await auth.getToken();
    handler.revoke(authId);
    // Inside the last minute: a refresh is due, fails with 404, and the still-valid token is used.
    vi.setSystemTime(new Date("2030-01-01T00:59:30Z"));
    expect((await auth.getToken()).token).toBe(first.token);
    expect(handler.refreshes).toHaveLength(2);
    vi.setSystemTime(new Date("2030-01-01T01:00:01Z"));
    const err = await failure(() => auth.getToken());
    expect(err.code).toBe("Unauthenticated");
  });

  it("a malformed AuthID fails with InvalidConfig before any request", async () => {
    const handler = await start();
    const err = await failure(() => source(handler, "0123456789abcdef0123456789abcdef"));
    expect(err.code).toBe("InvalidConfig");
    expect(err.message).toBe(
      `auth ${setup.operation}: the AuthID has no ':' (an AuthID looks like KEYID:SECRET; this one has no ':' — it may have been cut when copied; create a new one at ${login(handler)})`,
    );
    expect(handler.refreshes).toHaveLength(0);
  });

  it("400 No authid in query is InvalidConfig (a proxy dropped the header)", async () => {
    const handler = await start({ dropAuthIdHeader: true });
    const authId = handler.addKey("onedrive");
    const err = await failure(() => source(handler, authId).getToken());
    expect(err.code).toBe("InvalidConfig");
    expect(err.status).toBe(400);
    expect(err.message).toBe(
      message(
        handler,
        "GET /refresh returned 400 Bad Request: No authid in query",
        `the handler received no AuthID; a proxy in between may drop the X-AuthID header, otherwise ${hint.newAuthId(login(handler))}`,
      ),
    );
    expect(handler.refreshes).toHaveLength(1);
    expectNoSecret(err, authId);
  });

  it("400 Invalid authid in query is InvalidConfig, not retried", async () => {
    const handler = await start();
    const authId = "v2:dropbox:sl.refresh-token-value";
    const err = await failure(() => source(handler, authId).getToken());
    expect(err.code).toBe("InvalidConfig");
    expect(err.retryable).toBe(false);
    expect(err.message).toBe(
      message(
        handler,
        "GET /refresh returned 400 Bad Request: Invalid authid in query",
        `the handler does not accept this AuthID; ${hint.newAuthId(login(handler))}`,
      ),
    );
    expect(handler.refreshes).toHaveLength(1);
    expectNoSecret(err, authId);
  });

  it("404 No such key is Unauthenticated with a hint to create a new AuthID, not retried", async () => {
    const handler = await start();
    const authId = handler.addKey("onedrive");
    handler.revoke(authId);
    const err = await failure(() => source(handler, authId).getToken());
    expect(err.code).toBe("Unauthenticated");
    expect(err.status).toBe(404);
    expect(err.message).toBe(
      message(
        handler,
        "GET /refresh returned 404 Not Found: No such key",
        `the handler has no record of this AuthID (revoked, unused for a long time, or made on another handler); ${hint.newAuthId(login(handler))}`,
      ),
    );
    expect(handler.refreshes).toHaveLength(1);
    expectNoSecret(err, authId);
  });

  it("400 Invalid authid password is Unauthenticated, not retried", async () => {
    const handler = await start();
    const authId = handler.addKey("onedrive");
    const wrong = `${authId.slice(0, authId.indexOf(":"))}:not-the-right-password`;
    const err = await failure(() => source(handler, wrong).getToken());
    expect(err.code).toBe("Unauthenticated");
    expect(err.message).toBe(
      message(
        handler,
        "GET /refresh returned 400 Bad Request: Invalid authid password",
        `the AuthID's secret does not match (it may have been mistyped or cut); ${hint.newAuthId(login(handler))}`,
      ),
    );
    expect(handler.refreshes).toHaveLength(1);
    expectNoSecret(err, wrong);
  });

  it("503 Too many requests is RateLimited and retried with backoff", async () => {
    const handler = await start({ rateLimit: 0 });
    const authId = handler.addKey("onedrive");
    const err = await failure(() =>
      source(handler, authId, { retry: { ...fastRetry, attempts: 3 } }).getToken(),
    );
    expect(err.code).toBe("RateLimited");
    expect(err.retryable).toBe(true);
    expect(err.message).toBe(
      message(
        handler,
        "GET /refresh returned 503 Service Unavailable: Too many requests for this key, wait 60 minutes",
        `the handler limits how often an AuthID may refresh; wait and try again, and if it persists ${hint.newAuthId(login(handler))}`,
      ),
    );
    expect(handler.refreshes).toHaveLength(3);
  });

  it("500 from the storage provider is Unavailable, names the provider's error, and is retried", async () => {
    const handler = await start();
    const authId = handler.addKey("onedrive", { providerError: '{"error":"temporarily_unavailable"}' });
    const err = await failure(() =>
      source(handler, authId, { retry: { ...fastRetry, attempts: 2 } }).getToken(),
    );
    expect(err.code).toBe("Unavailable");
    expect(err.message).toBe(
      message(
        handler,
        `GET /refresh returned 500 Internal Server Error: ${
          setup.tls
            ? 'Authentication provider for OneDrive gave error: {"error":"temporarily_unavailable"}'
            : 'Request error: {"error":"temporarily_unavailable"} (code: 400)'
        }`,
        setup.tls
          ? `the storage provider's sign-in service failed; try again later, and if it persists ${hint.newAuthId(login(handler))}`
          : `the handler failed; try again later, and if it persists ${hint.newAuthId(login(handler))}`,
      ),
    );
    expect(handler.refreshes).toHaveLength(2);
  });

  it("500 whose reason is the provider's invalid_grant is Unauthenticated and not retried", async () => {
    const handler = await start();
    const authId = handler.addKey("onedrive", {
      providerError: '{"error":"invalid_grant","error_description":"AADSTS70000"}',
    });
    const err = await failure(() => source(handler, authId).getToken());
    expect(err.code).toBe("Unauthenticated");
    expect(err.hint).toBe(
      `the storage provider no longer accepts this sign-in (access was revoked or has expired); ${hint.newAuthId(login(handler))}`,
    );
    expect(err.message).toContain("invalid_grant");
    expect(handler.refreshes).toHaveLength(1);
  });

  it("500 with no X-Reason at all is Unavailable and still names the handler URL", async () => {
    const handler = await start();
    const authId = handler.addKey("onedrive", "crash");
    const err = await failure(() =>
      source(handler, authId, { retry: { ...fastRetry, attempts: 2 } }).getToken(),
    );
    expect(err.code).toBe("Unavailable");
    expect(err.status).toBe(500);
    expect(err.message).toBe(
      message(
        handler,
        "GET /refresh returned 500 Internal Server Error: no reason given (no X-Reason header)",
        `the handler failed; try again later, and if it persists ${hint.newAuthId(login(handler))}`,
      ),
    );
    expect(handler.refreshes).toHaveLength(2);
    expectNoSecret(err, authId);
  });

  it("429 with Retry-After is waited out, then the token is fetched", async () => {
    const handler = await start();
    const fault = handler.faults.add({
      path: "/refresh",
      respond: { status: 429, headers: { "retry-after": "1" } },
    });
    const started = performance.now();
    const { token } = await source(handler, handler.addKey("onedrive")).getToken();
    expect(token).toMatch(/^at-/);
    expect(performance.now() - started).toBeGreaterThanOrEqual(950);
    expect(fault.hits).toBe(1);
  });

  it("transient 502s are retried, then the token is fetched", async () => {
    const handler = await start();
    const fault = handler.faults.add({ path: "/refresh", times: 2, respond: { status: 502 } });
    const { token } = await source(handler, handler.addKey("onedrive")).getToken();
    expect(token).toMatch(/^at-/);
    expect(fault.hits).toBe(2);
    expect(handler.refreshes).toHaveLength(1);
  });

  it("a handler that cannot be reached is Unavailable naming its URL", async () => {
    const handler = await start();
    handler.faults.add({ path: "/refresh", times: Number.POSITIVE_INFINITY, reset: true });
    const authId = handler.addKey("onedrive");
    const err = await failure(() =>
      source(handler, authId, { retry: { ...fastRetry, attempts: 2 } }).getToken(),
    );
    expect(err.code).toBe("Unavailable");
    expect(err.message).toMatch(
      new RegExp(`^auth ${setup.operation}: OAuth handler ${handler.refreshUrl}: GET /refresh: `),
    );
    expect(err.hint).toBe(
      `check the handler URL and the network; if it persists, ${hint.newAuthId(login(handler))}`,
    );
    expectNoSecret(err, authId);
  });

  it("a URL that is not the refresh endpoint (an HTML page) is Protocol with a hint about /refresh", async () => {
    const handler = await start();
    const authId = handler.addKey("onedrive");
    const err = await failure(() => source(handler, authId, { url: `${handler.base}/` }).getToken());
    expect(err.code).toBe("Protocol");
    expect(err.message).toBe(
      `auth ${setup.operation}: OAuth handler ${handler.base}/: GET /: the response is not valid JSON (67 characters) (check that the URL is the handler's refresh endpoint (it usually ends in /refresh); AuthIDs are made at ${login(handler)})`,
    );
  });

  it("without a provider, a v2 AuthID's service names the login URL", async () => {
    const handler = await start();
    const err = await failure(() =>
      source(handler, "v2:dropbox:sl.some-refresh-token", { provider: undefined }).getToken(),
    );
    expect(err.hint).toBe(
      `the handler does not accept this AuthID; create a new AuthID at ${handler.base}/?type=dropbox`,
    );
  });

  it("without a provider, the `type` the handler reported names the login URL of later errors", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const handler = await start();
    const authId = handler.addKey("googledrive");
    const auth = source(handler, authId, { provider: undefined });
    await auth.getToken();
    handler.revoke(authId);
    vi.setSystemTime(Date.now() + 3_601_000);
    const err = await failure(() => auth.getToken());
    expect(err.hint).toContain(`create a new AuthID at ${handler.base}/?type=googledrive`);
  });
});

describe("handler URL rules", () => {
  it("hostedHandler refuses a non-https URL, even on loopback, with InvalidConfig", async () => {
    const err = await failure(() =>
      hostedHandler({ authId: "abc:defghijk", url: "http://127.0.0.1:8080/refresh" }),
    );
    expect(err.code).toBe("InvalidConfig");
    expect(err.message).toBe(
      "auth hostedHandler: the handler URL must be https, not 'http://127.0.0.1:8080/refresh': secrets travel with every request (use the handler's https:// address; for your own handler on this machine use selfHostedHandler, which allows http on loopback)",
    );
  });

  it("hostedHandler refuses a URL that is not a URL", async () => {
    const err = await failure(() =>
      hostedHandler({ authId: "abc:defghijk", url: "handler.example.com/refresh" }),
    );
    expect(err.code).toBe("InvalidConfig");
    expect(err.message).toBe(
      "auth hostedHandler: the handler URL 'handler.example.com/refresh' is not a valid URL (give an absolute URL, e.g. https://handler.example.com/refresh)",
    );
  });

  it("a handler URL with a password in it is refused without showing it", async () => {
    const err = await failure(() =>
      selfHostedHandler({
        authId: "abc:defghijk",
        url: "https://me:hunter2-secret@handler.example.com/refresh",
      }),
    );
    expect(err.code).toBe("InvalidConfig");
    expect(err.message).toBe(
      "auth selfHostedHandler: the handler URL carries a user name or password (remove them from the URL; give secrets as options)",
    );
  });

  it.each([
    "http://127.0.0.1:8080/refresh",
    "http://127.9.8.7/refresh",
    "http://localhost:1/refresh",
    "http://[::1]:8080/refresh",
    "https://handler.example.com/refresh",
  ])("selfHostedHandler accepts %s", (url) => {
    expect(selfHostedHandler({ authId: "abc:defghijk", url }).kind).toBe("self-hosted-handler");
  });

  it.each(["http://192.168.1.10/refresh", "http://handler.example.com/refresh", "http://128.0.0.1/refresh"])(
    "selfHostedHandler refuses http off loopback: %s",
    async (url) => {
      const err = await failure(() => selfHostedHandler({ authId: "abc:defghijk", url }));
      expect(err.code).toBe("InvalidConfig");
      expect(err.message).toBe(
        `auth selfHostedHandler: the handler URL may use http only on loopback (127.0.0.0/8, ::1, localhost), not '${url}': secrets travel with every request (use the handler's https:// address)`,
      );
    },
  );

  it("an empty apiKey is refused", async () => {
    const err = await failure(() =>
      selfHostedHandler({ authId: "abc:defghijk", url: "http://127.0.0.1:1/refresh", apiKey: " " }),
    );
    expect(err.code).toBe("InvalidConfig");
    expect(err.message).toBe(
      "auth selfHostedHandler: the API key is empty (pass the key the handler's operator gave you, or leave apiKey out)",
    );
  });
});
