import { subscribe, unsubscribe } from "node:diagnostics_channel";
import { inspect } from "node:util";
import { isStorageError, type Logger, StorageError } from "@stowage/core";
import { afterEach, describe, expect, it } from "vitest";
import { cachedTokenSource, type FetchedToken } from "../src/index.js";

// A mock of the refresh itself is the point here: these tests pin the discipline (timing, single
// flight, fallback), which no server can make deterministic. The strategies' own tests run it
// against the handler fixture and the OAuth emulator.

const T0 = Date.parse("2030-01-01T00:00:00Z");

interface Harness {
  clock: { now: number };
  calls: number;
  next: Array<() => Promise<FetchedToken>>;
  warnings: string[];
}

function harness(): Harness {
  return { clock: { now: T0 }, calls: 0, next: [], warnings: [] };
}

function sourceOf(h: Harness) {
  const logger: Logger = {
    debug() {},
    info() {},
    warn: (_obj, msg) => h.warnings.push(msg ?? ""),
    error() {},
  };
  return cachedTokenSource({
    kind: "test-source",
    operation: "testSource",
    description: "[TestSource]",
    now: () => h.clock.now,
    logger,
    fetch: () => {
      h.calls++;
      const step = h.next.shift();
      if (!step) throw new Error("no scripted response left");
      return step();
    },
  });
}

const token = (name: string, lifetimeMs?: number, h?: Harness) => async (): Promise<FetchedToken> =>
  lifetimeMs === undefined
    ? { token: name }
    : { token: name, expiresAt: new Date(h!.clock.now + lifetimeMs) };

const fails = (code: "Unavailable" | "Unauthenticated") => async (): Promise<FetchedToken> => {
  throw new StorageError({
    provider: "auth",
    operation: "testSource",
    code,
    message: `refresh failed (${code})`,
  });
};

function deferred<T>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

const events: unknown[] = [];
const onToken = (message: unknown) => events.push(message);

afterEach(() => {
  events.length = 0;
  unsubscribe("stowage:token", onToken);
});

describe("cachedTokenSource", () => {
  it("caches a token until 60 s before it expires", async () => {
    const h = harness();
    const source = sourceOf(h);
    h.next.push(token("a", 3_600_000, h), token("b", 3_600_000, h));
    expect((await source.getToken()).token).toBe("a");
    h.clock.now = T0 + 3_600_000 - 60_001;
    expect((await source.getToken()).token).toBe("a");
    expect(h.calls).toBe(1);
    h.clock.now = T0 + 3_600_000 - 60_000;
    expect((await source.getToken()).token).toBe("b");
    expect(h.calls).toBe(2);
  });

  it("returns expiresAt with the token", async () => {
    const h = harness();
    h.next.push(token("a", 120_000, h));
    expect(await sourceOf(h).getToken()).toEqual({ token: "a", expiresAt: new Date(T0 + 120_000) });
  });

  it("a token that lives under two minutes is refreshed after half its life, not on every call", async () => {
    const h = harness();
    const source = sourceOf(h);
    h.next.push(token("a", 40_000, h), token("b", 40_000, h));
    await source.getToken();
    h.clock.now = T0 + 19_999;
    expect((await source.getToken()).token).toBe("a");
    h.clock.now = T0 + 20_000;
    expect((await source.getToken()).token).toBe("b");
  });

  it("a token without expiresAt is kept until it is invalidated", async () => {
    const h = harness();
    const source = sourceOf(h);
    h.next.push(token("a"), token("b"));
    await source.getToken();
    h.clock.now = T0 + 365 * 86_400_000;
    expect(await source.getToken()).toEqual({ token: "a" });
    source.invalidate("a");
    expect(await source.getToken()).toEqual({ token: "b" });
  });

  it("100 concurrent callers on a cold cache cause exactly one fetch", async () => {
    const h = harness();
    const source = sourceOf(h);
    const gate = deferred<void>();
    h.next.push(async () => {
      await gate.promise;
      return { token: "a", expiresAt: new Date(T0 + 3_600_000) };
    });
    const all = Promise.all(Array.from({ length: 100 }, () => source.getToken()));
    gate.resolve();
    const results = await all;
    expect(h.calls).toBe(1);
    expect(results.every((r) => r.token === "a")).toBe(true);
  });

  it("callers arriving while a refresh is due also share one fetch", async () => {
    const h = harness();
    const source = sourceOf(h);
    h.next.push(token("a", 3_600_000, h), token("b", 3_600_000, h));
    await source.getToken();
    h.clock.now = T0 + 3_590_000;
    const results = await Promise.all(Array.from({ length: 20 }, () => source.getToken()));
    expect(h.calls).toBe(2);
    expect(new Set(results.map((r) => r.token))).toEqual(new Set(["b"]));
  });

  it("a refresh failure while the cached token is still valid returns the cached token and warns", async () => {
    const h = harness();
    const source = sourceOf(h);
    subscribe("stowage:token", onToken);
    h.next.push(token("a", 3_600_000, h), fails("Unavailable"));
    await source.getToken();
    h.clock.now = T0 + 3_590_000;
    expect(await source.getToken()).toEqual({ token: "a", expiresAt: new Date(T0 + 3_600_000) });
    expect(h.calls).toBe(2);
    expect(h.warnings).toEqual([
      "token refresh failed; using the cached token until it expires: auth testSource: refresh failed (Unavailable)",
    ]);
    expect(events).toEqual([
      { kind: "test-source", event: "refresh", expiresAt: "2030-01-01T01:00:00.000Z" },
      { kind: "test-source", event: "refresh-failed", code: "Unavailable", usingCachedToken: true },
    ]);
  });

  it("after a failed refresh it serves the cached token for 10 s before trying again", async () => {
    const h = harness();
    const source = sourceOf(h);
    h.next.push(token("a", 3_600_000, h), fails("Unavailable"), token("b", 3_600_000, h));
    await source.getToken();
    h.clock.now = T0 + 3_560_000;
    await source.getToken();
    h.clock.now += 9_999;
    expect((await source.getToken()).token).toBe("a");
    expect(h.calls).toBe(2);
    h.clock.now += 1;
    expect((await source.getToken()).token).toBe("b");
    expect(h.calls).toBe(3);
  });

  it("a refresh failure once the cached token has expired is thrown", async () => {
    const h = harness();
    const source = sourceOf(h);
    h.next.push(token("a", 3_600_000, h), fails("Unauthenticated"));
    await source.getToken();
    h.clock.now = T0 + 3_600_000;
    const err = await source.getToken().catch((e: unknown) => e);
    expect(isStorageError(err, "Unauthenticated")).toBe(true);
    expect((err as StorageError).message).toBe("auth testSource: refresh failed (Unauthenticated)");
  });

  it("a failed cold refresh is thrown to every waiting caller, and the next call tries again", async () => {
    const h = harness();
    const source = sourceOf(h);
    h.next.push(fails("Unavailable"), token("a"));
    const results = await Promise.allSettled([source.getToken(), source.getToken()]);
    expect(results.map((r) => r.status)).toEqual(["rejected", "rejected"]);
    expect(h.calls).toBe(1);
    expect((await source.getToken()).token).toBe("a");
  });

  it("a fetch that throws synchronously does not wedge the source", async () => {
    const h = harness();
    const source = cachedTokenSource({
      kind: "sync",
      description: "[Sync]",
      fetch: () => {
        h.calls++;
        if (h.calls === 1) throw new TypeError("boom");
        return Promise.resolve({ token: "ok" });
      },
    });
    const err = await source.getToken().catch((e: unknown) => e);
    expect(isStorageError(err, "Protocol")).toBe(true);
    expect((err as StorageError).message).toBe("auth sync: unexpected failure: TypeError: boom");
    expect((await source.getToken()).token).toBe("ok");
  });

  it("invalidate drops the cache only when given the current token", async () => {
    const h = harness();
    const source = sourceOf(h);
    h.next.push(token("a", 3_600_000, h), token("b", 3_600_000, h));
    await source.getToken();
    source.invalidate("an-old-token");
    expect((await source.getToken()).token).toBe("a");
    expect(h.calls).toBe(1);
    source.invalidate("a");
    expect((await source.getToken()).token).toBe("b");
    expect(h.calls).toBe(2);
  });

  it("a caller's abort rejects only that caller with Aborted; the others get the token from the one fetch", async () => {
    const h = harness();
    const source = sourceOf(h);
    const gate = deferred<void>();
    h.next.push(async () => {
      await gate.promise;
      return { token: "a" };
    });
    const controller = new AbortController();
    const aborted = source.getToken({ signal: controller.signal });
    const other = source.getToken();
    controller.abort();
    const err = await aborted.catch((e: unknown) => e);
    expect(isStorageError(err, "Aborted")).toBe(true);
    expect((err as StorageError).message).toBe("auth testSource: the operation was aborted");
    gate.resolve();
    expect((await other).token).toBe("a");
    expect(h.calls).toBe(1);
  });

  it("an already aborted signal rejects at once without fetching", async () => {
    const h = harness();
    const err = await sourceOf(h)
      .getToken({ signal: AbortSignal.abort() })
      .catch((e: unknown) => e);
    expect(isStorageError(err, "Aborted")).toBe(true);
    expect(h.calls).toBe(0);
  });

  it("prints as its description and serialises without the token", async () => {
    const h = harness();
    const source = sourceOf(h);
    h.next.push(token("very-secret-token-value"));
    await source.getToken();
    expect(String(source)).toBe("[TestSource]");
    expect(inspect(source)).toBe("[TestSource]");
    expect(JSON.stringify(source)).toBe('{"kind":"test-source"}');
  });
});
