import { afterEach, describe, expect, it } from "vitest";
import type { HandlerConfigInput } from "../src/index.js";
import { newAuthId } from "../src/vault.js";
import {
  duplicatiRefresh,
  expectFailure,
  login,
  noLimits,
  type Setup,
  startSetup,
} from "./support/handler.js";

const setups: Setup[] = [];
afterEach(async () => {
  await Promise.all(setups.splice(0).map((setup) => setup.close()));
});

async function start(options: Parameters<typeof startSetup>[0] = {}): Promise<Setup> {
  const setup = await startSetup(options);
  setups.push(setup);
  return setup;
}

type Limits = NonNullable<HandlerConfigInput["limits"]>;

/** Every limit off except those given. */
const limited = (limits: Limits, extra: Partial<HandlerConfigInput> = {}) => ({
  config: { limits: { ...noLimits, ...limits }, ...extra },
});

describe("rate limits", () => {
  it("limit /refresh per AuthID with 429 and Retry-After, leaving other AuthIDs alone", async () => {
    const setup = await start(limited({ refresh: { perIp: false, perKey: { perMinute: 2, burst: 2 } } }));
    const authId = await login(setup.url);
    const other = await login(setup.url);
    expect((await duplicatiRefresh(setup.url, authId)).status).toBe(200);
    expect((await duplicatiRefresh(setup.url, authId)).status).toBe(200);
    const refused = await duplicatiRefresh(setup.url, authId);
    expect(refused.headers.get("retry-after")).toBe("30");
    await expectFailure(refused, 429, "rate_limited", "Too many requests for this AuthID, wait 30 seconds");
    expect((await duplicatiRefresh(setup.url, other)).status).toBe(200);
    expect(setup.handler.metrics.rateLimited.get({ route: "/refresh", scope: "key" })).toBe(1);
  });

  it("limit /refresh per client address, behind a trusted proxy by X-Forwarded-For", async () => {
    const setup = await start(
      limited({ refresh: { perIp: { perMinute: 60, burst: 1 }, perKey: false } }, { trustProxy: 1 }),
    );
    const from = (ip: string) =>
      fetch(`${setup.url}/refresh`, { headers: { "x-authid": newAuthId().authId, "x-forwarded-for": ip } });
    expect((await from("203.0.113.7")).status).toBe(404);
    const refused = await from("203.0.113.7");
    expect(refused.headers.get("retry-after")).toBe("1");
    await expectFailure(refused, 429, "rate_limited", "Too many requests from this address, wait 1 second");
    expect((await from("198.51.100.2")).status).toBe(404);
  });

  it("limit sign-ins per address", async () => {
    const setup = await start(limited({ login: { perIp: { perMinute: 1, burst: 1 } } }));
    expect((await fetch(`${setup.url}/login?id=emu`, { redirect: "manual" })).status).toBe(302);
    const refused = await fetch(`${setup.url}/login?id=emu`, { redirect: "manual" });
    expect(refused.headers.get("retry-after")).toBe("60");
    await expectFailure(refused, 429, "rate_limited", "Too many requests from this address, wait 60 seconds");
  });

  it("limit revocations per address", async () => {
    const setup = await start(limited({ revoke: { perIp: { perMinute: 1, burst: 1 }, perKey: false } }));
    const revoke = () =>
      fetch(`${setup.url}/revoke`, { method: "POST", headers: { "x-authid": newAuthId().authId } });
    expect((await revoke()).status).toBe(404);
    await expectFailure(
      await revoke(),
      429,
      "rate_limited",
      "Too many requests from this address, wait 60 seconds",
    );
  });

  it("limit fetch polling per address", async () => {
    const setup = await start(limited({ fetch: { perIp: { perMinute: 60, burst: 1 } } }));
    expect((await fetch(`${setup.url}/fetch?token=abcdefghijkl`)).status).toBe(404);
    await expectFailure(
      await fetch(`${setup.url}/fetch?token=abcdefghijkl`),
      429,
      "rate_limited",
      "Too many requests from this address, wait 1 second",
    );
  });

  it("back off after repeated wrong secrets for one KEYID, even for the right one", async () => {
    const setup = await start(limited({ failedPassword: { freeAttempts: 2, maxBackoffSec: 60 } }));
    const authId = await login(setup.url);
    const wrong = `${authId.split(":")[0]}:${newAuthId().secret}`;
    for (let i = 0; i < 3; i++) expect((await duplicatiRefresh(setup.url, wrong)).status).toBe(401);
    const refused = await duplicatiRefresh(setup.url, authId);
    expect(refused.headers.get("retry-after")).toBe("1");
    await expectFailure(refused, 429, "rate_limited", "Too many wrong passwords for this key, wait 1 second");
  });
});
