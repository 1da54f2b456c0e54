import { describe, expect, it } from "vitest";
import { FailureBackoff, RateLimiter } from "../src/limits.js";

function clock(start = 0) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

describe("RateLimiter", () => {
  it("allows a burst, then refills at the per-minute rate", () => {
    const time = clock();
    const limiter = new RateLimiter({ perMinute: 60, burst: 3 }, time.now);
    expect([1, 2, 3].map(() => limiter.take("ip").ok)).toEqual([true, true, true]);
    expect(limiter.take("ip")).toEqual({ ok: false, retryAfterMs: 1000 });
    time.advance(500);
    expect(limiter.take("ip")).toEqual({ ok: false, retryAfterMs: 500 });
    time.advance(500);
    expect(limiter.take("ip").ok).toBe(true);
  });

  it("counts each key on its own", () => {
    const limiter = new RateLimiter({ perMinute: 1, burst: 1 }, clock().now);
    expect(limiter.take("a").ok).toBe(true);
    expect(limiter.take("b").ok).toBe(true);
    expect(limiter.take("a").ok).toBe(false);
  });

  it("lets everything through when disabled", () => {
    const limiter = new RateLimiter(false);
    for (let i = 0; i < 1000; i++) expect(limiter.take("x").ok).toBe(true);
  });
});

describe("FailureBackoff", () => {
  it("answers free attempts at once, then doubles the wait up to the maximum", () => {
    const time = clock();
    const backoff = new FailureBackoff({ freeAttempts: 2, maxBackoffSec: 4 }, time.now);
    backoff.fail("k");
    backoff.fail("k");
    expect(backoff.check("k")).toBe(0);
    const waits: number[] = [];
    for (let i = 0; i < 5; i++) {
      backoff.fail("k");
      waits.push(backoff.check("k"));
      time.advance(backoff.check("k"));
    }
    expect(waits).toEqual([1000, 2000, 4000, 4000, 4000]);
  });

  it("is cleared by a right secret and kept per KEYID", () => {
    const backoff = new FailureBackoff({ freeAttempts: 0, maxBackoffSec: 60 }, clock().now);
    backoff.fail("a");
    expect(backoff.check("a")).toBe(1000);
    expect(backoff.check("b")).toBe(0);
    backoff.succeed("a");
    expect(backoff.check("a")).toBe(0);
  });
});
