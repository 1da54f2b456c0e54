import type { Logger } from "@stowage/core";
import { afterEach, describe, expect, it } from "vitest";
import { type AuthRecord, MemoryStore } from "../src/index.js";
import { newAuthId } from "../src/vault.js";
import { duplicatiRefresh, expectFailure, login, type Setup, startSetup } from "./support/handler.js";

const setups: Setup[] = [];
afterEach(async () => {
  await Promise.all(setups.splice(0).map((setup) => setup.close()));
});

async function start(options: Parameters<typeof startSetup>[0] = {}): Promise<Setup> {
  const setup = await startSetup(options);
  setups.push(setup);
  return setup;
}

const HOUR = 3_600_000;

/** A store that fails in a way no store should: a bug, which must surface as a bare 500. */
class BrokenStore extends MemoryStore {
  override async get(_keyId: string): Promise<AuthRecord | undefined> {
    throw new TypeError("internal detail: cannot read properties of undefined (reading 'grant_box')");
  }
}

function capturingLogger(lines: string[]): Logger {
  const push = (obj: object, msg?: string) => lines.push(`${msg} ${JSON.stringify(obj)}`);
  return { debug: push, info: push, warn: push, error: push };
}

describe("every error response carries X-Reason and a JSON {error, code}", () => {
  it("400 when no AuthID was sent", async () => {
    const setup = await start();
    const body = await expectFailure(
      await fetch(`${setup.url}/refresh`),
      400,
      "missing_authid",
      "No authid in query",
    );
    expect(body.hint).toBe("send the AuthID in the X-AuthID header (or as the authid query or form field)");
  });

  it("400 when the AuthID is malformed", async () => {
    const setup = await start();
    const body = await expectFailure(
      await duplicatiRefresh(setup.url, "0123456789abcdef"),
      400,
      "invalid_authid",
      "Invalid authid in query: it has no ':' (it may have been cut when copied)",
    );
    expect(body.hint).toBe(`copy the whole AuthID again, or create a new one at ${setup.url}/`);
  });

  it("401 when the AuthID's secret is wrong", async () => {
    const setup = await start();
    const authId = await login(setup.url);
    const wrong = `${authId.split(":")[0]}:${newAuthId().secret}`;
    await expectFailure(
      await duplicatiRefresh(setup.url, wrong),
      401,
      "wrong_password",
      "Invalid authid password",
    );
  });

  it("403 when the API key is wrong", async () => {
    const setup = await start({ config: { apiKeys: [{ env: "HANDLER_TEST_API_KEY" }] } }).catch(
      (err: unknown) => err,
    );
    // The key comes from the environment: a missing variable is a configuration error, not a 403.
    expect(String(setup)).toContain(
      "apiKeys.0: the environment variable HANDLER_TEST_API_KEY is not set or is empty",
    );
    const running = await start({ config: { apiKeys: ["api-key-for-tests-1"] } });
    const authId = await login(running.url);
    await expectFailure(
      await fetch(`${running.url}/refresh`, { headers: { "x-authid": authId, "x-api-key": "not-the-key" } }),
      403,
      "invalid_api_key",
      "Invalid API key",
    );
  });

  it("404 for a KEYID the handler never had", async () => {
    const setup = await start();
    const body = await expectFailure(
      await duplicatiRefresh(setup.url, newAuthId().authId),
      404,
      "unknown_key",
      "No such key: this AuthID never existed here, or was purged long ago",
    );
    expect(body.hint).toBe(`create a new AuthID at ${setup.url}/`);
  });

  it("404 for a path the handler does not serve", async () => {
    const setup = await start();
    const body = await expectFailure(
      await fetch(`${setup.url}/refres`),
      404,
      "not_a_handler",
      "Nothing at /refres",
    );
    expect(body.hint).toBe("the token endpoint is /refresh; sign-ins start at /");
  });

  it("405 for a method an endpoint does not take, with Allow", async () => {
    const setup = await start();
    const response = await fetch(`${setup.url}/refresh`, { method: "DELETE" });
    expect(response.headers.get("allow")).toBe("GET, POST, HEAD");
    await expectFailure(response, 405, "not_a_handler", "Method not allowed; use GET or POST");
  });

  it("410 for a revoked AuthID", async () => {
    const setup = await start();
    const authId = await login(setup.url);
    await setup.handler.revoke(authId);
    await expectFailure(
      await duplicatiRefresh(setup.url, authId),
      410,
      "revoked",
      /^This AuthID was revoked on \d{4}-\d{2}-\d{2}$/,
    );
  });

  it("413 for a form body over 16 KiB", async () => {
    const setup = await start();
    const body = new URLSearchParams({ authid: "x".repeat(20_000) });
    await expectFailure(
      await fetch(`${setup.url}/refresh`, { method: "POST", body }),
      413,
      "bad_request",
      "Request body larger than 16384 bytes",
    );
  });

  it("415 for a body that is not a form", async () => {
    const setup = await start();
    await expectFailure(
      await fetch(`${setup.url}/refresh`, {
        method: "POST",
        body: JSON.stringify({ authid: "x:y" }),
        headers: { "content-type": "application/json" },
      }),
      415,
      "bad_request",
      "Unsupported content type; send application/x-www-form-urlencoded",
    );
  });

  it("429 with Retry-After when a limit is reached", async () => {
    const setup = await start({
      config: { limits: { refresh: { perIp: { perMinute: 6, burst: 1 }, perKey: false } } },
    });
    await fetch(`${setup.url}/refresh`, { headers: { "x-authid": newAuthId().authId } });
    const response = await fetch(`${setup.url}/refresh`, { headers: { "x-authid": newAuthId().authId } });
    expect(response.headers.get("retry-after")).toBe("10");
    await expectFailure(
      response,
      429,
      "rate_limited",
      "Too many requests from this address, wait 10 seconds",
    );
  });

  it("500 with a reference and nothing internal when the handler fails unexpectedly", async () => {
    const lines: string[] = [];
    const setup = await start({ handler: { store: new BrokenStore(), logger: capturingLogger(lines) } });
    const response = await duplicatiRefresh(setup.url, newAuthId().authId);
    const body = await expectFailure(response, 500, "server_error", /^Server error \(ref [0-9a-f]{8}\)$/);
    expect(JSON.stringify(body)).not.toContain("internal detail");
    // The operator finds the cause in the log under the same reference.
    const ref = /ref ([0-9a-f]{8})/.exec(body.error)![1]!;
    expect(lines.some((line) => line.includes(`ref ${ref}`) && line.includes("internal detail"))).toBe(true);
  });

  it("502 when the provider's token endpoint fails", async () => {
    let now = Date.now();
    const setup = await start({ handler: { now: () => now } });
    const authId = await login(setup.url);
    now += HOUR;
    setup.provider.faults.add({
      method: "POST",
      path: "/token",
      times: 3,
      respond: { status: 500, body: "oops" },
    });
    const body = await expectFailure(
      await duplicatiRefresh(setup.url, authId),
      502,
      "provider_unavailable",
      "Authentication provider for emu answered 500 during refresh",
    );
    expect(body.hint).toBe("try again shortly");
  });

  it("503 with Retry-After when the provider asks the handler to wait", async () => {
    let now = Date.now();
    const setup = await start({ handler: { now: () => now } });
    const authId = await login(setup.url);
    now += HOUR;
    setup.provider.faults.add({
      method: "POST",
      path: "/token",
      respond: { status: 429, headers: { "retry-after": "120" } },
    });
    const response = await duplicatiRefresh(setup.url, authId);
    expect(response.headers.get("retry-after")).toBe("120");
    await expectFailure(
      response,
      503,
      "provider_unavailable",
      "Authentication provider for emu asked the handler to wait (HTTP 429)",
    );
  });

  it("503 with Retry-After when the store is unreachable, on /refresh and /healthz", async () => {
    const setup = await start();
    await setup.handler.store.close();
    const refresh = await duplicatiRefresh(setup.url, newAuthId().authId);
    expect(refresh.headers.get("retry-after")).toBe("5");
    await expectFailure(refresh, 503, "server_error", "The handler's store is unavailable");
    await expectFailure(
      await fetch(`${setup.url}/healthz`),
      503,
      "server_error",
      "The handler's store is unavailable",
    );
  });

  it("never puts an AuthID, token or secret in a reason, a body or a log line", async () => {
    const lines: string[] = [];
    let now = Date.now();
    const setup = await start({ handler: { now: () => now, logger: capturingLogger(lines) } });
    const authId = await login(setup.url);
    const secret = authId.split(":")[1]!;
    now += HOUR;
    setup.provider.faults.add({
      method: "POST",
      path: "/token",
      respond: {
        status: 400,
        body: {
          error: "invalid_grant",
          error_description: `token ${authId} rejected, secret=stowage-test-client-secret`,
        },
      },
    });
    const response = await duplicatiRefresh(setup.url, authId);
    const text = `${response.headers.get("x-reason")} ${await response.text()} ${lines.join("\n")}`;
    expect(response.status).toBe(401);
    expect(text).not.toContain(secret);
    expect(text).not.toContain("stowage-test-client-secret");
    expect(
      lines.some(
        (line) => line.includes('"path":"/refresh"') && line.includes(`"key":"${authId.slice(0, 8)}"`),
      ),
    ).toBe(true);
  });
});
