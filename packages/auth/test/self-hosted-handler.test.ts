import type { StorageError } from "@stowage/core";
import { type RunningServer, selfSignedCertificate, sendJson, startHttpServer } from "@stowage/emulators";
import { afterEach, describe, expect, it, vi } from "vitest";
import { type HandlerErrorCode, handlerErrorCodes, hostedHandler, selfHostedHandler } from "../src/index.js";
import { failure } from "./support/failure.js";

// `@stowage/handler` is not built yet; this server answers the way its contract (DESIGN §5 and
// `handlerErrorCodes`) says it will: X-Reason plus a JSON body `{ error, code }`.

interface Reply {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

const servers: RunningServer[] = [];
const seen: Array<{ authId?: string; apiKey?: string }> = [];
const authId = "0123456789abcdef0123456789abcdef:Sec-ret_value-123";

afterEach(async () => {
  vi.unstubAllEnvs();
  seen.length = 0;
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

async function serve(replies: Reply[], tls?: { key: string; cert: string }): Promise<RunningServer> {
  const server = await startHttpServer(
    (req, res) => {
      seen.push({ authId: req.headers["x-authid"] as string, apiKey: req.headers["x-api-key"] as string });
      const reply = replies.shift() ?? { status: 500, body: { error: "no scripted reply" } };
      sendJson(res, reply.status, reply.body, reply.headers);
    },
    { tls },
  );
  servers.push(server);
  return server;
}

const ok = { status: 200, body: { access_token: "at-from-own-handler", expires: 3600, type: "onedrive" } };
const retry = { minDelayMs: 1, maxDelayMs: 100 };

function ourError(status: number, code: HandlerErrorCode, error: string): Reply {
  return { status, body: { error, code }, headers: { "x-reason": error } };
}

describe("selfHostedHandler", () => {
  it("sends X-API-Key when given, with the X-AuthID", async () => {
    const server = await serve([ok]);
    const auth = selfHostedHandler({ authId, url: `${server.url}/refresh`, apiKey: "api-key-123456" });
    expect((await auth.getToken()).token).toBe("at-from-own-handler");
    expect(seen).toEqual([{ authId, apiKey: "api-key-123456" }]);
  });

  it("sends no X-API-Key when none is given", async () => {
    const server = await serve([ok]);
    await selfHostedHandler({ authId, url: `${server.url}/refresh` }).getToken();
    expect(seen).toEqual([{ authId, apiKey: undefined }]);
  });

  const table: Array<[HandlerErrorCode, number, string]> = [
    ["missing_authid", 400, "the request carried no AuthID"],
    ["invalid_authid", 400, "this AuthID is not one this handler issues"],
    ["unknown_key", 404, "no AuthID with this key id"],
    ["wrong_password", 401, "the secret does not decrypt the record"],
    ["revoked", 410, "the AuthID was revoked on 2026-01-02"],
    ["provider_refused", 400, "Microsoft refused the stored refresh token: invalid_grant"],
    ["invalid_api_key", 401, "X-API-Key is missing or wrong"],
    ["forbidden", 403, "this client address is not allowed"],
    ["not_a_handler", 404, "no such endpoint"],
  ];

  it.each(table)(
    "a JSON error with code %s (status %i) is %s's code, with its text as the reason",
    async (code, status, text) => {
      const server = await serve([ourError(status, code, text)]);
      const err: StorageError = await failure(() =>
        selfHostedHandler({ authId, url: `${server.url}/refresh`, provider: "onedrive", retry }).getToken(),
      );
      expect(err.code).toBe(handlerErrorCodes[code]);
      expect(err.retryable).toBe(false);
      expect(err.message).toMatch(
        new RegExp(
          `^auth selfHostedHandler: OAuth handler ${server.url}/refresh: GET /refresh returned ${status} [A-Za-z ]+: ${text} \\(`,
        ),
      );
      expect(err.hint).toContain(`${server.url}/?type=onedrive`);
      expect(seen).toHaveLength(1);
    },
  );

  it("a JSON rate_limited error is RateLimited and retried", async () => {
    const server = await serve([
      ourError(429, "rate_limited", "slow down"),
      ourError(429, "rate_limited", "slow down"),
      ok,
    ]);
    const { token } = await selfHostedHandler({ authId, url: `${server.url}/refresh`, retry }).getToken();
    expect(token).toBe("at-from-own-handler");
    expect(seen).toHaveLength(3);
  });

  it("a JSON provider_unavailable error is Unavailable and retried until the attempts run out", async () => {
    const server = await serve(
      Array.from({ length: 3 }, () => ourError(502, "provider_unavailable", "Google answered 503")),
    );
    const err = await failure(() =>
      selfHostedHandler({
        authId,
        url: `${server.url}/refresh`,
        provider: "gdrive",
        retry: { ...retry, attempts: 3 },
      }).getToken(),
    );
    expect(err.code).toBe("Unavailable");
    expect(err.message).toBe(
      `auth selfHostedHandler: OAuth handler ${server.url}/refresh: GET /refresh returned 502 Bad Gateway: Google answered 503 (the storage provider's sign-in service failed; try again later, and if it persists create a new AuthID at ${server.url}/?type=gdrive)`,
    );
    expect(seen).toHaveLength(3);
  });

  it("an unknown JSON code falls back to the status and the reason", async () => {
    const server = await serve([{ status: 404, body: { error: "No such key", code: "some_future_code" } }]);
    const err = await failure(() =>
      selfHostedHandler({ authId, url: `${server.url}/refresh`, retry }).getToken(),
    );
    expect(err.code).toBe("Unauthenticated");
    expect(err.detail).toBe(
      `OAuth handler ${server.url}/refresh: GET /refresh returned 404 Not Found: No such key`,
    );
  });

  it("the JSON error text is preferred to X-Reason", async () => {
    const server = await serve([
      {
        status: 400,
        body: { error: "the secret does not match this key id", code: "wrong_password" },
        headers: { "x-reason": "Invalid authid password" },
      },
    ]);
    const err = await failure(() =>
      selfHostedHandler({ authId, url: `${server.url}/refresh`, retry }).getToken(),
    );
    expect(err.detail).toContain("returned 400 Bad Request: the secret does not match this key id");
  });

  it("a success without `expires` is Protocol naming the field", async () => {
    const server = await serve([{ status: 200, body: { access_token: "at-x", type: "onedrive" } }]);
    const err = await failure(() =>
      selfHostedHandler({ authId, url: `${server.url}/refresh`, retry }).getToken(),
    );
    expect(err.code).toBe("Protocol");
    expect(err.detail).toBe(
      `OAuth handler ${server.url}/refresh: GET /refresh: the response does not have the expected shape: at expires: Invalid input: expected number, received undefined`,
    );
  });
});

describe("hostedHandler and the JSON error code", () => {
  it("a Duplicati handler's X-Reason is what counts: a JSON code is read only from a self-hosted handler", async () => {
    vi.stubEnv("NODE_TLS_REJECT_UNAUTHORIZED", "0");
    const reply = (): Reply => ({
      status: 400,
      body: { error: "x", code: "invalid_authid" },
      headers: { "x-reason": "Invalid authid password" },
    });
    const https = await serve([reply()], selfSignedCertificate());
    const hosted = await failure(() =>
      hostedHandler({ authId, url: `${https.url}/refresh`, retry }).getToken(),
    );
    expect(hosted.code).toBe("Unauthenticated");
    expect(hosted.detail).toBe(
      `OAuth handler ${https.url}/refresh: GET /refresh returned 400 Bad Request: Invalid authid password`,
    );
    const http = await serve([reply()]);
    const self = await failure(() =>
      selfHostedHandler({ authId, url: `${http.url}/refresh`, retry }).getToken(),
    );
    expect(self.code).toBe("InvalidConfig");
  });
});
