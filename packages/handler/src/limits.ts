import type { BucketLimit } from "./config.js";

/** The answer of a limiter: go ahead, or wait this long. */
export type LimitDecision = { ok: true } | { ok: false; retryAfterMs: number };

const OK: LimitDecision = Object.freeze({ ok: true });

// Past this many tracked keys, idle ones are swept so that a flood of addresses cannot grow memory.
const MAX_TRACKED = 100_000;

interface Bucket {
  tokens: number;
  updated: number;
}

/**
 * Token buckets keyed by client IP or KEYID: `burst` requests at once, refilled at `perMinute`.
 * Kept in process memory, so each instance counts on its own (documented in docs/handler.md).
 */
export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly capacity: number;
  private readonly perMs: number;

  constructor(
    private readonly limit: BucketLimit,
    private readonly now: () => number = Date.now,
  ) {
    this.capacity = limit === false ? 0 : (limit.burst ?? Math.max(1, Math.ceil(limit.perMinute)));
    this.perMs = limit === false ? 0 : limit.perMinute / 60_000;
  }

  take(key: string): LimitDecision {
    if (this.limit === false) return OK;
    const now = this.now();
    const bucket = this.buckets.get(key) ?? { tokens: this.capacity, updated: now };
    bucket.tokens = Math.min(this.capacity, bucket.tokens + (now - bucket.updated) * this.perMs);
    bucket.updated = now;
    if (!this.buckets.has(key)) {
      if (this.buckets.size >= MAX_TRACKED) this.sweep(now);
      this.buckets.set(key, bucket);
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return OK;
    }
    return { ok: false, retryAfterMs: Math.ceil((1 - bucket.tokens) / this.perMs) };
  }

  private sweep(now: number): void {
    const refillMs = this.capacity / this.perMs;
    for (const [key, bucket] of this.buckets) {
      if (now - bucket.updated >= refillMs) this.buckets.delete(key);
    }
  }
}

export interface BackoffOptions {
  freeAttempts: number;
  maxBackoffSec: number;
}

interface Failures {
  count: number;
  blockedUntil: number;
  last: number;
}

/**
 * Failed-password backoff per KEYID: after `freeAttempts` wrong secrets, every request for that
 * KEYID is refused for 1 s, then 2 s, 4 s, … up to `maxBackoffSec`; a right secret clears it.
 * A wrong secret cannot be told from a right one during the backoff, so guessing gains nothing.
 */
export class FailureBackoff {
  private readonly failures = new Map<string, Failures>();

  constructor(
    private readonly options: BackoffOptions,
    private readonly now: () => number = Date.now,
  ) {}

  /** 0 when the KEYID may be tried now, else how long to wait. */
  check(keyId: string): number {
    const entry = this.failures.get(keyId);
    if (entry === undefined) return 0;
    return Math.max(0, entry.blockedUntil - this.now());
  }

  fail(keyId: string): void {
    const now = this.now();
    const entry = this.failures.get(keyId) ?? { count: 0, blockedUntil: 0, last: now };
    entry.count++;
    entry.last = now;
    const over = entry.count - this.options.freeAttempts;
    if (over > 0) {
      const delayMs = Math.min(this.options.maxBackoffSec * 1000, 1000 * 2 ** Math.min(over - 1, 30));
      entry.blockedUntil = now + delayMs;
    }
    if (!this.failures.has(keyId)) {
      if (this.failures.size >= MAX_TRACKED) this.sweep(now);
      this.failures.set(keyId, entry);
    }
  }

  succeed(keyId: string): void {
    this.failures.delete(keyId);
  }

  private sweep(now: number): void {
    // Failures are forgotten an hour after the backoff they caused has ended.
    const forgetMs = this.options.maxBackoffSec * 1000 + 3_600_000;
    for (const [key, entry] of this.failures) {
      if (now - entry.last > forgetMs) this.failures.delete(key);
    }
  }
}
