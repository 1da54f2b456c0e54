import { afterEach, describe, expect, it } from "vitest";
import { expectFailure, login, type Setup, startSetup } from "./support/handler.js";

const setups: Setup[] = [];
afterEach(async () => {
  await Promise.all(setups.splice(0).map((setup) => setup.close()));
});

async function start(options: Parameters<typeof startSetup>[0] = {}): Promise<Setup> {
  const setup = await startSetup(options);
  setups.push(setup);
  return setup;
}

const TOKEN = "k3j4h5g6f7d8s9a0";

describe("GET /fetch", () => {
  it("answers wait until the sign-in completes, then the AuthID once", async () => {
    const setup = await start();
    expect((await fetch(`${setup.url}/?token=${TOKEN}`)).status).toBe(200);
    const waiting = await fetch(`${setup.url}/fetch?token=${TOKEN}`);
    expect(waiting.status).toBe(200);
    expect(await waiting.json()).toEqual({ wait: "Not ready" });
    const authId = await login(setup.url, "emu", TOKEN);
    expect(await (await fetch(`${setup.url}/fetch?token=${TOKEN}`)).json()).toEqual({ authid: authId });
    await expectFailure(
      await fetch(`${setup.url}/fetch?token=${TOKEN}`),
      404,
      "no_such_entry",
      "No such entry",
    );
  });

  it("keeps the AuthID in the store only sealed under the fetch token", async () => {
    const setup = await start();
    const authId = await login(setup.url, "emu", TOKEN);
    const stored = await setup.handler.store.takeFetch(
      (await import("../src/vault.js")).sha256Hex(TOKEN),
      Date.now(),
    );
    expect(stored?.status).toBe("ready");
    expect(stored?.status === "ready" && Buffer.from(stored.sealed).includes(Buffer.from(authId))).toBe(
      false,
    );
  });

  it("answers JSONP for Duplicati's legacy web UI, always with status 200", async () => {
    const setup = await start();
    await login(setup.url, "emu", TOKEN);
    const response = await fetch(`${setup.url}/fetch?callback=angular.callbacks._0&token=${TOKEN}`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("application/javascript; charset=utf-8");
    expect(await response.text()).toMatch(
      /^\/\*\*\/angular\.callbacks\._0\(\{"authid":"[0-9a-f]{32}:[A-Za-z0-9_-]{43}"\}\);$/,
    );
    const gone = await fetch(`${setup.url}/fetch?jsonp=cb&token=${TOKEN}`);
    expect(gone.status).toBe(200);
    expect(await gone.text()).toBe('/**/cb({"error":"No such entry","code":"no_such_entry"});');
  });

  it("refuses a callback that is not a plain function name", async () => {
    const setup = await start();
    await expectFailure(
      await fetch(`${setup.url}/fetch?callback=alert(1)&token=${TOKEN}`),
      400,
      "invalid_callback",
      "Invalid callback: it must be a JavaScript identifier path",
    );
  });

  it("needs a token", async () => {
    const setup = await start();
    await expectFailure(await fetch(`${setup.url}/fetch`), 400, "missing_token", "Missing token");
  });

  it("lets an allowed origin read the answer cross-origin, and no other", async () => {
    const setup = await start({ config: { allowedOrigins: ["http://127.0.0.1:8200"] } });
    const allowed = await fetch(`${setup.url}/fetch?token=${TOKEN}`, {
      headers: { origin: "http://127.0.0.1:8200" },
    });
    expect(allowed.headers.get("access-control-allow-origin")).toBe("http://127.0.0.1:8200");
    const other = await fetch(`${setup.url}/fetch?token=${TOKEN}`, {
      headers: { origin: "https://evil.example" },
    });
    expect(other.headers.get("access-control-allow-origin")).toBeNull();
  });

  it("forgets a token registered more than 5 minutes ago", async () => {
    let now = Date.now();
    const setup = await start({ handler: { now: () => now } });
    await fetch(`${setup.url}/?token=${TOKEN}`);
    now += 5 * 60_000 + 1;
    await expectFailure(
      await fetch(`${setup.url}/fetch?token=${TOKEN}`),
      404,
      "no_such_entry",
      "No such entry",
    );
  });
});
