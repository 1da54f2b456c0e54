import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { selfHostedHandler } from "@stowage/auth";
import { isStorageError, type StorageError } from "@stowage/core";
import { defaultOAuthClient, selfSignedCertificate } from "@stowage/emulators";
import { afterEach, describe, expect, it } from "vitest";
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

interface TokenBody {
  access_token: string;
  expires: number;
  type: string;
  v2_authid?: string;
}

async function token(response: Response): Promise<TokenBody> {
  const text = await response.text();
  expect(response.status, text).toBe(200);
  return JSON.parse(text) as TokenBody;
}

const refreshCalls = (setup: Setup) =>
  setup.provider.tokenRequestLog.filter((entry) => entry.grantType === "refresh_token").length;

const HOUR = 3_600_000;

describe("GET|POST /refresh", () => {
  it("answers a request shaped exactly like Duplicati's with {access_token, expires, type}", async () => {
    const setup = await start();
    const authId = await login(setup.url);
    const response = await duplicatiRefresh(setup.url, authId);
    expect(response.headers.get("content-type")).toBe("application/json; charset=utf-8");
    expect(response.headers.get("cache-control")).toBe("no-store");
    const body = await token(response);
    expect(Object.keys(body)).toEqual(["access_token", "expires", "type"]);
    expect(body.type).toBe("emu");
    expect(Number.isInteger(body.expires)).toBe(true);
    expect(body.expires).toBeGreaterThan(3590);
    expect(body.expires).toBeLessThanOrEqual(3600);
    expect(setup.provider.validate(body.access_token)).toMatchObject({
      valid: true,
      clientId: "stowage-test-client",
    });
  });

  it("reads the AuthID from the authid query field and from a POST form, as Duplicati's handlers do", async () => {
    const setup = await start();
    const authId = await login(setup.url);
    const query = await token(await fetch(`${setup.url}/refresh?authid=${encodeURIComponent(authId)}`));
    const form = await token(
      await fetch(`${setup.url}/refresh`, { method: "POST", body: new URLSearchParams({ authid: authId }) }),
    );
    // A percent-encoded AuthID in the header (duplicati#1736) is decoded once.
    const encoded = await token(await duplicatiRefresh(setup.url, authId.replace(":", "%3A")));
    expect(new Set([query.access_token, form.access_token, encoded.access_token]).size).toBe(1);
  });

  it("serves the cached access token until shortly before it expires, then asks the provider", async () => {
    let now = Date.now();
    const setup = await start({ handler: { now: () => now } });
    const authId = await login(setup.url);
    const first = await token(await duplicatiRefresh(setup.url, authId));
    now += 30 * 60_000;
    const cached = await token(await duplicatiRefresh(setup.url, authId));
    expect(cached.access_token).toBe(first.access_token);
    expect(cached.expires).toBe(first.expires - 1800);
    expect(refreshCalls(setup)).toBe(0);
    now += 26 * 60_000;
    const renewed = await token(await duplicatiRefresh(setup.url, authId));
    expect(renewed.access_token).not.toBe(first.access_token);
    expect(renewed.expires).toBe(3600);
    expect(refreshCalls(setup)).toBe(1);
    expect(setup.handler.metrics.refreshes.get({ provider: "emu", source: "provider" })).toBe(1);
    expect(setup.handler.metrics.refreshes.get({ provider: "emu", source: "cache" })).toBe(2);
  });

  it("stores a rotated refresh token before answering, so the AuthID keeps working", async () => {
    let now = Date.now();
    const setup = await start({ provider: { rotateRefreshTokens: true }, handler: { now: () => now } });
    const authId = await login(setup.url);
    for (let round = 0; round < 3; round++) {
      now += HOUR;
      const body = await token(await duplicatiRefresh(setup.url, authId));
      expect(setup.provider.validate(body.access_token).valid).toBe(true);
    }
    expect(
      setup.provider.tokenRequestLog.map((entry) => [
        entry.grantType,
        entry.outcome,
        entry.issuedRefreshToken,
      ]),
    ).toEqual([
      ["authorization_code", "ok", true],
      ["refresh_token", "ok", true],
      ["refresh_token", "ok", true],
      ["refresh_token", "ok", true],
    ]);
  });

  it("makes one provider call for 20 concurrent refreshes of one AuthID", async () => {
    let now = Date.now();
    const setup = await start({ handler: { now: () => now } });
    const authId = await login(setup.url);
    now += HOUR;
    const answers = await Promise.all(
      Array.from({ length: 20 }, () => duplicatiRefresh(setup.url, authId).then(token)),
    );
    expect(new Set(answers.map((answer) => answer.access_token)).size).toBe(1);
    expect(refreshCalls(setup)).toBe(1);
  });

  it("says when the provider refuses the stored refresh token", async () => {
    let now = Date.now();
    const setup = await start({ handler: { now: () => now } });
    const authId = await login(setup.url);
    now += HOUR;
    setup.provider.faults.add({
      method: "POST",
      path: "/token",
      respond: {
        status: 400,
        body: { error: "invalid_grant", error_description: "the refresh token was revoked" },
      },
    });
    const failure = await expectFailure(
      await duplicatiRefresh(setup.url, authId),
      401,
      "provider_refused",
      "Authentication provider for emu refused the refresh token (invalid_grant: the refresh token was revoked)",
    );
    expect(failure.hint).toBe(
      `the access was revoked or expired at the provider; create a new AuthID at ${setup.url}/?type=emu`,
    );
  });
});

describe("v2 AuthIDs", () => {
  it("are refreshed at the provider without storing anything, and cached in memory", async () => {
    const setup = await start({ provider: { rotateRefreshTokens: false } });
    const refreshToken = setup.provider.issueRefreshToken({ clientId: defaultOAuthClient.clientId });
    const first = await token(await duplicatiRefresh(setup.url, `v2:emu:${refreshToken}`));
    expect(first).toEqual({ access_token: expect.any(String), expires: 3600, type: "emu" });
    const again = await token(await duplicatiRefresh(setup.url, `v2:emu:${refreshToken}`));
    expect(again.access_token).toBe(first.access_token);
    expect(refreshCalls(setup)).toBe(1);
    expect(await setup.handler.store.countRecords()).toBe(0);
  });

  it("hand back the rotated refresh token as v2_authid, since nothing is stored", async () => {
    const setup = await start({ provider: { rotateRefreshTokens: true } });
    const refreshToken = setup.provider.issueRefreshToken({ clientId: defaultOAuthClient.clientId });
    const body = await token(await duplicatiRefresh(setup.url, `v2:emu:${refreshToken}`));
    expect(body.v2_authid).toMatch(/^v2:emu:rt_/);
    expect(setup.provider.refreshTokenStatus(refreshToken)).toBe("rotated");
    expect(setup.provider.refreshTokenStatus(body.v2_authid!.slice("v2:emu:".length))).toBe("active");
  });

  it("refuse a service the handler does not serve", async () => {
    const setup = await start();
    await expectFailure(
      await duplicatiRefresh(setup.url, "v2:dropbox:some-refresh-token"),
      400,
      "invalid_authid",
      "Service not supported: 'dropbox' is not a provider of this handler",
    );
  });
});

describe("clients from @stowage/auth", () => {
  it("selfHostedHandler obtains a token over loopback http", async () => {
    const setup = await start();
    const authId = await login(setup.url);
    const source = selfHostedHandler({ authId, url: `${setup.url}/refresh` });
    const { token: accessToken, expiresAt } = await source.getToken();
    expect(setup.provider.validate(accessToken).valid).toBe(true);
    expect(expiresAt!.getTime() - Date.now()).toBeGreaterThan(3_500_000);
  });

  it("selfHostedHandler sends the API key the handler requires, and reports a wrong one", async () => {
    const setup = await start({ config: { apiKeys: ["api-key-for-tests-1"] } });
    const authId = await login(setup.url);
    const good = selfHostedHandler({ authId, url: `${setup.url}/refresh`, apiKey: "api-key-for-tests-1" });
    expect(setup.provider.validate((await good.getToken()).token).valid).toBe(true);
    const bad = selfHostedHandler({
      authId,
      url: `${setup.url}/refresh`,
      apiKey: "api-key-wrong-0000",
      retry: false,
    });
    const error = (await bad.getToken().catch((err: unknown) => err)) as StorageError;
    expect(isStorageError(error, "InvalidConfig")).toBe(true);
    expect(error.message).toContain(
      `OAuth handler ${setup.url}/refresh: GET /refresh returned 403 Forbidden: Invalid API key`,
    );
    expect(error.message).not.toContain("api-key-wrong-0000");
  });

  it("selfHostedHandler turns a revoked AuthID into Unauthenticated with the login URL", async () => {
    const setup = await start();
    const authId = await login(setup.url);
    await setup.handler.revoke(authId);
    const source = selfHostedHandler({ authId, url: `${setup.url}/refresh`, retry: false });
    const error = (await source.getToken().catch((err: unknown) => err)) as StorageError;
    expect(isStorageError(error, "Unauthenticated")).toBe(true);
    expect(error.message).toMatch(/This AuthID was revoked on \d{4}-\d{2}-\d{2}/);
    expect(error.hint).toContain(`${setup.url}/`);
  });

  it("hostedHandler obtains a token from the handler over https with a certificate it verifies", async () => {
    // The handler reads its certificate from files; clients trust it through NODE_EXTRA_CA_CERTS.
    const { key, cert } = selfSignedCertificate();
    const dir = mkdtempSync(join(tmpdir(), "stowage-handler-tls-"));
    const tls = { certFile: join(dir, "cert.pem"), keyFile: join(dir, "key.pem") };
    writeFileSync(tls.certFile, cert);
    writeFileSync(tls.keyFile, key);
    try {
      const setup = await start({ config: { tls: { certFile: tls.certFile, keyFile: tls.keyFile } } });
      expect(setup.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      // The login runs in this process, which does not trust the certificate: accept it for that only.
      const authId = await withInsecureTls(() => login(setup.url));
      const root = join(import.meta.dirname, "..", "..", "..");
      const { stdout } = await promisify(execFile)(
        process.execPath,
        [
          "--conditions=@stowage/source",
          "--import",
          "tsx",
          join(import.meta.dirname, "support", "hosted-client.ts"),
        ],
        {
          cwd: root,
          env: {
            ...process.env,
            NODE_EXTRA_CA_CERTS: tls.certFile,
            STOWAGE_AUTHID: authId,
            STOWAGE_URL: `${setup.url}/refresh`,
          },
        },
      );
      const outcome = JSON.parse(stdout.trim()) as {
        token?: string;
        expiresInSec?: number;
        code?: string;
        message?: string;
      };
      expect(outcome.code, outcome.message).toBeUndefined();
      expect(setup.provider.validate(outcome.token!).valid).toBe(true);
      expect(outcome.expiresInSec).toBeGreaterThan(3500);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

async function withInsecureTls<T>(run: () => Promise<T>): Promise<T> {
  const before = process.env.NODE_TLS_REJECT_UNAUTHORIZED;
  process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0";
  try {
    return await run();
  } finally {
    if (before === undefined) delete process.env.NODE_TLS_REJECT_UNAUTHORIZED;
    else process.env.NODE_TLS_REJECT_UNAUTHORIZED = before;
  }
}
