import { afterEach, describe, expect, it } from "vitest";
import { duplicatiRefresh, login, type Setup, startSetup } from "./support/handler.js";

const setups: Setup[] = [];
afterEach(async () => {
  await Promise.all(setups.splice(0).map((setup) => setup.close()));
});

async function start(options: Parameters<typeof startSetup>[0] = {}): Promise<Setup> {
  const setup = await startSetup(options);
  setups.push(setup);
  return setup;
}

describe("GET /privacy", () => {
  it("says exactly what is stored, where and for how long", async () => {
    const setup = await start({ config: { purgeAfterDays: 90, contact: "privacy@example.com" } });
    const html = await (await fetch(`${setup.url}/privacy`)).text();
    expect(html).toContain("All of it is kept in this service's in-memory database.");
    expect(html).toContain("or after 90 days without use");
    expect(html).toContain("AuthIDs, tokens, codes and states are never logged");
    expect(html).toContain("privacy@example.com");
  });
});

describe("GET /healthz", () => {
  it("answers ok when the store answers", async () => {
    const setup = await start();
    const response = await fetch(`${setup.url}/healthz`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: "ok", store: "memory" });
  });
});

describe("GET /metrics", () => {
  it("exposes request, refresh and provider counters in Prometheus text format", async () => {
    const setup = await start();
    const authId = await login(setup.url);
    await duplicatiRefresh(setup.url, authId);
    await duplicatiRefresh(setup.url, "nope");
    const response = await fetch(`${setup.url}/metrics`);
    expect(response.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    const text = await response.text();
    for (const line of [
      'stowage_handler_http_requests_total{route="/refresh",status="200"} 1',
      'stowage_handler_http_requests_total{route="/refresh",status="400"} 1',
      'stowage_handler_refreshes_total{provider="emu",source="cache"} 1',
      'stowage_handler_logins_total{provider="emu",outcome="ok"} 1',
      'stowage_handler_refresh_duration_seconds_count{source="cache"} 1',
      "stowage_handler_store_up 1",
      "stowage_handler_records 1",
    ]) {
      expect(text).toContain(line);
    }
    expect(text).not.toContain(authId.split(":")[1]!);
  });
});

describe("every response", () => {
  it("is uncached, unsniffable, without referrer, and exposes X-Reason to cross-origin readers", async () => {
    const setup = await start();
    for (const path of ["/", "/refresh", "/healthz", "/privacy", "/missing"]) {
      const response = await fetch(`${setup.url}${path}`);
      expect(response.headers.get("cache-control"), path).toBe("no-store");
      expect(response.headers.get("x-content-type-options"), path).toBe("nosniff");
      expect(response.headers.get("referrer-policy"), path).toBe("no-referrer");
      expect(response.headers.get("access-control-expose-headers"), path).toBe("X-Reason");
    }
  });

  it("answers HEAD like GET, without a body", async () => {
    const setup = await start();
    const response = await fetch(`${setup.url}/healthz`, { method: "HEAD" });
    expect(response.status).toBe(200);
    expect(await response.text()).toBe("");
  });
});
