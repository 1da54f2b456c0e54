import { setTimeout as wait } from "node:timers/promises";
import { defaultOAuthClient, startOAuthProvider } from "@stowage/emulators";
import { afterEach, describe, expect, it } from "vitest";
import {
  duplicatiRefresh,
  emulatorProvider,
  expectFailure,
  login,
  type Setup,
  startSetup,
  startTokenRecorder,
} from "./support/handler.js";

const setups: Setup[] = [];
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  await Promise.all(setups.splice(0).map((setup) => setup.close()));
  await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()));
});

async function start(options: Parameters<typeof startSetup>[0] = {}): Promise<Setup> {
  const setup = await startSetup(options);
  setups.push(setup);
  return setup;
}

const DAY = 86_400_000;

function revoke(url: string, authId: string, accept = "application/json"): Promise<Response> {
  return fetch(`${url}/revoke`, { method: "POST", headers: { "x-authid": authId, accept } });
}

describe("POST /revoke", () => {
  it("deletes the record, revokes the refresh token at the provider, and the AuthID is refused after", async () => {
    const provider = await startOAuthProvider({ autoApprove: true });
    const recorder = await startTokenRecorder(provider);
    cleanups.push(
      () => recorder.close(),
      () => provider.close(),
    );
    const setup = await start({
      sharedProvider: provider,
      config: { providers: { emu: emulatorProvider(provider, { tokenUrl: recorder.tokenUrl }) } },
    });
    const authId = await login(setup.url);
    const refreshToken = recorder.refreshTokens[0]!;
    const accessToken = (
      (await (await duplicatiRefresh(setup.url, authId)).json()) as { access_token: string }
    ).access_token;
    expect(provider.refreshTokenStatus(refreshToken)).toBe("active");

    const response = await revoke(setup.url, authId);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ revoked: true, provider: "emu", providerRevoked: true });
    expect(provider.counters.revokeRequests).toBe(1);
    expect(provider.refreshTokenStatus(refreshToken)).toBe("revoked");
    // RFC 7009 §2.1: the provider drops the grant's access tokens too, so the cached one dies with it.
    expect(provider.validate(accessToken)).toMatchObject({ valid: false, reason: "revoked" });
    expect(await setup.handler.store.countRecords()).toBe(0);
    await expectFailure(
      await duplicatiRefresh(setup.url, authId),
      410,
      "revoked",
      /^This AuthID was revoked on /,
    );
    await expectFailure(await revoke(setup.url, authId), 410, "revoked", /^This AuthID was revoked on /);
  });

  it("offers a form to browsers and answers it with a page", async () => {
    const setup = await start();
    const form = await fetch(`${setup.url}/revoke`);
    expect(await form.text()).toContain('<form method="post" action="/revoke">');
    const authId = await login(setup.url);
    const response = await fetch(`${setup.url}/revoke`, {
      method: "POST",
      body: new URLSearchParams({ authid: authId }),
      headers: { accept: "text/html" },
    });
    const html = await response.text();
    expect(response.status).toBe(200);
    expect(html).toContain("<h1>AuthID revoked</h1>");
    expect(html).toContain("The provider confirmed that its refresh token is revoked.");
  });

  it("refuses a wrong secret and keeps the record", async () => {
    const setup = await start();
    const authId = await login(setup.url);
    const wrong = `${authId.split(":")[0]}:${"A".repeat(43)}`;
    await expectFailure(await revoke(setup.url, wrong), 401, "wrong_password", "Invalid authid password");
    expect(await setup.handler.store.countRecords()).toBe(1);
    expect(setup.provider.counters.revokeRequests).toBe(0);
  });

  it("says how to remove access by hand where the provider has no revocation endpoint", async () => {
    const provider = await startOAuthProvider({ autoApprove: true });
    cleanups.push(() => provider.close());
    const setup = await start({
      sharedProvider: provider,
      config: { providers: { emu: emulatorProvider(provider, { revokeUrl: undefined }) } },
    });
    const authId = await login(setup.url);
    expect(await (await revoke(setup.url, authId)).json()).toEqual({
      revoked: true,
      provider: "emu",
      providerRevoked: false,
      detail:
        "this provider has no revocation endpoint; remove the app's access in your account's settings at the provider",
    });
    expect(provider.counters.revokeRequests).toBe(0);
  });

  it("still deletes the record when the provider's revocation fails, and says so", async () => {
    const setup = await start();
    const authId = await login(setup.url);
    setup.provider.faults.add({ method: "POST", path: "/revoke", times: 3, respond: { status: 503 } });
    expect(await (await revoke(setup.url, authId)).json()).toEqual({
      revoked: true,
      provider: "emu",
      providerRevoked: false,
      detail:
        "Authentication provider for emu asked the handler to wait (HTTP 503); remove the app's access in your account's settings at the provider",
    });
    await expectFailure(
      await duplicatiRefresh(setup.url, authId),
      410,
      "revoked",
      /^This AuthID was revoked on /,
    );
  });

  it("revokes a v2 AuthID's refresh token at the provider", async () => {
    const setup = await start({ provider: { rotateRefreshTokens: false } });
    const refreshToken = setup.provider.issueRefreshToken({ clientId: defaultOAuthClient.clientId });
    expect((await duplicatiRefresh(setup.url, `v2:emu:${refreshToken}`)).status).toBe(200);
    expect(await (await revoke(setup.url, `v2:emu:${refreshToken}`)).json()).toEqual({
      revoked: true,
      provider: "emu",
      providerRevoked: true,
    });
    expect(setup.provider.refreshTokenStatus(refreshToken)).toBe("revoked");
    // The in-memory cache was dropped with it: the next refresh reaches the provider, which refuses.
    await expectFailure(
      await duplicatiRefresh(setup.url, `v2:emu:${refreshToken}`),
      401,
      "provider_refused",
      "Authentication provider for emu refused the refresh token (invalid_grant: the refresh token was revoked)",
    );
  });
});

describe("purge", () => {
  it("deletes AuthIDs unused for purgeAfterDays, which are then refused, and keeps used ones", async () => {
    let now = Date.now();
    const setup = await start({ config: { purgeAfterDays: 30 }, handler: { now: () => now } });
    const idle = await login(setup.url);
    const busy = await login(setup.url);
    now += 20 * DAY;
    expect((await duplicatiRefresh(setup.url, busy)).status).toBe(200);
    now += 11 * DAY;
    expect(await setup.handler.purge()).toEqual({ records: 1, expired: 0 });
    const day = new Date(now).toISOString().slice(0, 10);
    const body = await expectFailure(
      await duplicatiRefresh(setup.url, idle),
      404,
      "unknown_key",
      `No such key: this AuthID was purged on ${day} after 30 days unused`,
    );
    expect(body.hint).toBe(`create a new AuthID at ${setup.url}/`);
    expect((await duplicatiRefresh(setup.url, busy)).status).toBe(200);
  });

  it("runs on a timer while the handler listens", async () => {
    let now = Date.now();
    const setup = await start({
      config: { purgeAfterDays: 1 },
      handler: { now: () => now, purgeEveryMs: 20 },
    });
    await login(setup.url);
    now += 2 * DAY;
    for (let i = 0; i < 100 && (await setup.handler.store.countRecords()) > 0; i++) await wait(20);
    expect(await setup.handler.store.countRecords()).toBe(0);
  });

  it("deletes expired sign-ins and fetch tokens", async () => {
    let now = Date.now();
    const setup = await start({ handler: { now: () => now } });
    await fetch(`${setup.url}/login?id=emu&token=fetch-token-0001`, { redirect: "manual" });
    now += 11 * 60_000;
    expect(await setup.handler.purge()).toEqual({ records: 0, expired: 2 });
  });
});
