import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createFaults, type Faults, type RunningServer, sendJson, startHttpServer } from "../src/index.js";

let faults: Faults;
let server: RunningServer;
let handled: number;
const body1000 = "x".repeat(1000);

beforeEach(async () => {
  faults = createFaults();
  handled = 0;
  server = await startHttpServer(
    (req, res) => {
      handled++;
      if (req.url === "/big") {
        res.writeHead(200, { "content-type": "text/plain", "content-length": "1000" });
        res.end(body1000);
        return;
      }
      sendJson(res, 200, { from: "emulator", path: req.url });
    },
    { faults },
  );
});

afterEach(async () => {
  await server.close();
});

async function networkError(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected a network failure");
}

describe("faults", () => {
  it("respond answers with the canned status, headers and JSON body instead of the emulator", async () => {
    const fault = faults.add({
      path: "/token",
      respond: { status: 429, headers: { "retry-after": "7" }, body: { error: "slow_down" } },
    });
    const response = await fetch(`${server.url}/token`, { method: "POST", body: "grant_type=x" });
    expect(response.status).toBe(429);
    expect(response.headers.get("retry-after")).toBe("7");
    expect(response.headers.get("content-type")).toBe("application/json; charset=utf-8");
    expect(await response.json()).toEqual({ error: "slow_down" });
    expect(handled).toBe(0);
    expect(fault.hits).toBe(1);
  });

  it("respond sends a string body as it is", async () => {
    faults.add({ path: "/a", respond: { status: 503, body: "busy" } });
    const response = await fetch(`${server.url}/a`);
    expect(response.status).toBe(503);
    expect(await response.text()).toBe("busy");
  });

  it("a fault applies once by default, then requests reach the emulator again", async () => {
    const fault = faults.add({ path: "/a", respond: { status: 500 } });
    expect((await fetch(`${server.url}/a`)).status).toBe(500);
    expect((await fetch(`${server.url}/a`)).status).toBe(200);
    expect(fault.hits).toBe(1);
    expect(fault.remaining).toBe(0);
    expect(faults.active).toEqual([]);
  });

  it("times sets how many matching requests a fault applies to", async () => {
    const fault = faults.add({ path: "/a", times: 3, respond: { status: 503 } });
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await fetch(`${server.url}/a`)).status);
    expect(statuses).toEqual([503, 503, 503, 200]);
    expect(fault.hits).toBe(3);
  });

  it("times: Infinity keeps a fault until it is removed", async () => {
    const fault = faults.add({ path: "/a", times: Number.POSITIVE_INFINITY, respond: { status: 503 } });
    for (let i = 0; i < 5; i++) expect((await fetch(`${server.url}/a`)).status).toBe(503);
    fault.remove();
    expect((await fetch(`${server.url}/a`)).status).toBe(200);
    expect(fault.hits).toBe(5);
  });

  it("a string path matches the path exactly, without the query; other paths pass", async () => {
    faults.add({ path: "/a", times: 2, respond: { status: 418 } });
    expect((await fetch(`${server.url}/a?x=1`)).status).toBe(418);
    expect((await fetch(`${server.url}/a/b`)).status).toBe(200);
    expect((await fetch(`${server.url}/b`)).status).toBe(200);
  });

  it("a RegExp path is tested against the path with its query", async () => {
    faults.add({ path: /uploadType=resumable/g, times: 2, respond: { status: 410 } });
    expect((await fetch(`${server.url}/upload?uploadType=resumable`)).status).toBe(410);
    // A global RegExp must not remember its last position between requests.
    expect((await fetch(`${server.url}/upload?uploadType=resumable`)).status).toBe(410);
    expect((await fetch(`${server.url}/upload?uploadType=media`)).status).toBe(200);
  });

  it("method restricts a fault to one method, in any case", async () => {
    faults.add({ method: "delete", path: "/a", respond: { status: 423 } });
    expect((await fetch(`${server.url}/a`)).status).toBe(200);
    expect((await fetch(`${server.url}/a`, { method: "DELETE" })).status).toBe(423);
  });

  it("the first matching fault with requests left is the one that applies", async () => {
    const first = faults.add({ path: "/a", respond: { status: 500 } });
    const second = faults.add({ path: "/a", respond: { status: 502 } });
    expect((await fetch(`${server.url}/a`)).status).toBe(500);
    expect((await fetch(`${server.url}/a`)).status).toBe(502);
    expect([first.hits, second.hits]).toEqual([1, 1]);
  });

  it("reset destroys the connection without an answer", async () => {
    const fault = faults.add({ path: "/a", reset: true });
    const err = await networkError(fetch(`${server.url}/a`));
    expect(err.message).toBe("fetch failed");
    expect(String((err.cause as { code?: string }).code)).toMatch(/ECONNRESET|UND_ERR_SOCKET/);
    expect(handled).toBe(0);
    expect(fault.hits).toBe(1);
    expect((await fetch(`${server.url}/a`)).status).toBe(200);
  });

  it("resetAfterBytes cuts the emulator's own response mid-body", async () => {
    faults.add({ path: "/big", resetAfterBytes: 100 });
    const response = await fetch(`${server.url}/big`);
    expect(response.status).toBe(200);
    const reader = response.body!.getReader();
    let received = 0;
    const err = await networkError(
      (async () => {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) return;
          received += value.length;
        }
      })(),
    );
    expect(err).toBeInstanceOf(Error);
    expect(received).toBe(100);
    expect(handled).toBe(1);
  });

  it("resetAfterBytes with respond cuts the canned response", async () => {
    faults.add({
      path: "/a",
      respond: { status: 200, headers: { "content-length": "50" }, body: "y".repeat(50) },
      resetAfterBytes: 10,
    });
    const response = await fetch(`${server.url}/a`);
    const err = await networkError(response.text());
    expect(err).toBeInstanceOf(Error);
    expect(handled).toBe(0);
  });

  it("delayMs delays the emulator's answer", async () => {
    faults.add({ path: "/a", delayMs: 150 });
    const started = performance.now();
    const response = await fetch(`${server.url}/a`);
    expect(performance.now() - started).toBeGreaterThanOrEqual(140);
    expect(await response.json()).toEqual({ from: "emulator", path: "/a" });
    const again = performance.now();
    await fetch(`${server.url}/a`);
    expect(performance.now() - again).toBeLessThan(140);
  });

  it("delayMs with respond waits, then answers with the canned response", async () => {
    faults.add({ path: "/a", delayMs: 100, respond: { status: 504 } });
    const started = performance.now();
    expect((await fetch(`${server.url}/a`)).status).toBe(504);
    expect(performance.now() - started).toBeGreaterThanOrEqual(90);
  });

  it("clear removes every fault", async () => {
    const fault = faults.add({ path: "/a", times: 5, respond: { status: 500 } });
    faults.clear();
    expect(faults.active).toEqual([]);
    expect(fault.remaining).toBe(0);
    expect((await fetch(`${server.url}/a`)).status).toBe(200);
  });

  it("a spec without an action, or with reset and respond together, is refused", () => {
    expect(() => faults.add({ path: "/a" })).toThrow(
      "faults.add: give respond, reset, resetAfterBytes or delayMs",
    );
    expect(() => faults.add({ path: "/a", reset: true, respond: { status: 500 } })).toThrow(
      "faults.add: reset drops the connection at once; it cannot be combined with respond or resetAfterBytes",
    );
    expect(() => faults.add({ path: "/a", times: 0, respond: { status: 500 } })).toThrow(
      "faults.add: times must be at least 1, got 0",
    );
  });
});
