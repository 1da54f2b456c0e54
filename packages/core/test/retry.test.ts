import { subscribe, unsubscribe } from "node:diagnostics_channel";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { StorageError } from "../src/errors.js";
import { defaultRetryOptions, type RetryInfo, retry, sleep } from "../src/retry.js";

const context = { provider: "test", operation: "stat", key: "a.txt" };

function unavailable(retryAfterMs?: number): StorageError {
  return new StorageError({ ...context, code: "Unavailable", message: "503 from the server", retryAfterMs });
}

/** A function that fails with each given error in turn, then resolves with "done". */
function failing(...errors: unknown[]) {
  return vi.fn(async (attempt: number) => {
    const error = errors[attempt - 1];
    if (error !== undefined) throw error;
    return "done";
  });
}

describe("retry", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("has the documented defaults", () => {
    expect(defaultRetryOptions).toEqual({
      attempts: 5,
      minDelayMs: 250,
      maxDelayMs: 30_000,
      maxTotalMs: 300_000,
    });
  });

  it("retries retryable errors with exponential backoff, then returns the result", async () => {
    const reset = Object.assign(new Error("socket hang up"), { code: "ECONNRESET" });
    const fn = failing(reset, unavailable());
    const retries: RetryInfo[] = [];
    const events: unknown[] = [];
    const onEvent = (message: unknown) => events.push(message);
    subscribe("stowage:retry", onEvent);
    try {
      const result = retry(fn, { context, random: () => 1, onRetry: (info) => retries.push(info) });

      await vi.advanceTimersByTimeAsync(0);
      expect(fn).toHaveBeenCalledTimes(1);
      await vi.advanceTimersByTimeAsync(249);
      expect(fn).toHaveBeenCalledTimes(1);
      await vi.advanceTimersByTimeAsync(1);
      expect(fn).toHaveBeenCalledTimes(2);
      await vi.advanceTimersByTimeAsync(500);
      expect(fn).toHaveBeenCalledTimes(3);
      await expect(result).resolves.toBe("done");
    } finally {
      unsubscribe("stowage:retry", onEvent);
    }

    expect(retries.map(({ attempt, delayMs, error }) => ({ attempt, delayMs, code: error.code }))).toEqual([
      { attempt: 1, delayMs: 250, code: "Unavailable" },
      { attempt: 2, delayMs: 500, code: "Unavailable" },
    ]);
    expect(retries[0]?.error.message).toContain("test stat 'a.txt': the connection was reset (ECONNRESET)");
    expect(events[0]).toEqual({ ...context, attempt: 1, delayMs: 250, code: "Unavailable" });
  });

  it("uses full jitter: the wait is random() times the backoff cap", async () => {
    const fn = failing(unavailable(), unavailable());
    const delays: number[] = [];
    const result = retry(fn, {
      random: () => 0.5,
      minDelayMs: 1_000,
      onRetry: ({ delayMs }) => delays.push(delayMs),
    });
    await vi.runAllTimersAsync();
    await expect(result).resolves.toBe("done");
    expect(delays).toEqual([500, 1_000]);
  });

  it("does not retry an error that is not retryable", async () => {
    const notFound = new StorageError({ ...context, code: "NotFound", message: "no such object" });
    const fn = failing(notFound);
    const onRetry = vi.fn();

    const error = await retry(fn, { context, onRetry }).catch((err: unknown) => err);

    expect(error).toBeInstanceOf(StorageError);
    expect(error).toMatchObject({ code: "NotFound", retryable: false });
    expect((error as StorageError).message).toBe("test stat 'a.txt': no such object");
    expect(fn).toHaveBeenCalledTimes(1);
    expect(onRetry).not.toHaveBeenCalled();
  });

  it("waits at least Retry-After, even when the backoff is shorter", async () => {
    const fn = failing(unavailable(2_000));
    const delays: number[] = [];
    const result = retry(fn, { random: () => 0.5, onRetry: ({ delayMs }) => delays.push(delayMs) });

    await vi.advanceTimersByTimeAsync(1_999);
    expect(fn).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(fn).toHaveBeenCalledTimes(2);
    await expect(result).resolves.toBe("done");
    expect(delays).toEqual([2_000]);
  });

  it("fails at once with RateLimited when Retry-After is longer than maxDelayMs", async () => {
    const throttled = new StorageError({
      ...context,
      code: "RateLimited",
      status: 429,
      message: "too many requests",
      retryAfterMs: 120_000,
    });
    const fn = failing(throttled);
    const onRetry = vi.fn();

    const error = await retry(fn, { context, maxDelayMs: 30_000, onRetry }).catch((err: unknown) => err);

    expect(error).toMatchObject({ code: "RateLimited", retryable: true, retryAfterMs: 120_000, status: 429 });
    const message = (error as StorageError).message;
    expect(message).toContain("test stat 'a.txt'");
    expect(message).toContain("the server asked to wait 120 s, longer than the maximum 30 s");
    expect((error as StorageError).hint).toBe("try again later or raise maxDelayMs");
    expect(fn).toHaveBeenCalledTimes(1);
    expect(onRetry).not.toHaveBeenCalled();
    expect(vi.getTimerCount()).toBe(0);
  });

  it("gives up after the configured number of attempts with the last error", async () => {
    const fn = vi.fn(async (attempt: number) => {
      throw new StorageError({ ...context, code: "Timeout", message: `attempt ${attempt} timed out` });
    });

    const outcome = retry(fn, { attempts: 3, minDelayMs: 10 }).catch((err: unknown) => err);
    await vi.runAllTimersAsync();
    const error = await outcome;

    expect(error).toMatchObject({ code: "Timeout", retryable: true });
    expect((error as StorageError).message).toContain("attempt 3 timed out");
    expect(fn).toHaveBeenCalledTimes(3);
  });

  it("stops when the next wait would end past maxTotalMs", async () => {
    const fn = vi.fn(async () => {
      throw unavailable();
    });
    const delays: number[] = [];

    const outcome = retry(fn, {
      random: () => 1,
      minDelayMs: 800,
      maxTotalMs: 1_000,
      onRetry: ({ delayMs }) => delays.push(delayMs),
    }).catch((err: unknown) => err);
    await vi.runAllTimersAsync();
    const error = await outcome;

    expect(error).toMatchObject({ code: "Unavailable" });
    expect((error as StorageError).message).toContain("503 from the server");
    expect(delays).toEqual([800]);
    expect(fn).toHaveBeenCalledTimes(2);
  });

  it("rejects with Aborted as soon as the signal fires during a wait", async () => {
    const fn = failing(unavailable());
    const controller = new AbortController();
    const outcome = retry(fn, {
      context,
      minDelayMs: 10_000,
      random: () => 1,
      signal: controller.signal,
    }).catch((err: unknown) => err);
    await vi.advanceTimersByTimeAsync(0);
    expect(fn).toHaveBeenCalledTimes(1);

    controller.abort();
    const error = await outcome;

    expect(error).toMatchObject({ code: "Aborted", provider: "test", operation: "stat", key: "a.txt" });
    expect((error as StorageError).message).toBe("test stat 'a.txt': the operation was aborted");
    expect(fn).toHaveBeenCalledTimes(1);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("rejects with Aborted while an attempt that ignores the signal is still running", async () => {
    const controller = new AbortController();
    const outcome = retry(() => new Promise<never>(() => {}), { context, signal: controller.signal }).catch(
      (err: unknown) => err,
    );
    controller.abort(new Error("user cancelled"));

    const error = await outcome;
    expect(error).toMatchObject({ code: "Aborted" });
    expect((error as StorageError).message).toBe("test stat 'a.txt': the operation was aborted");
  });

  it("does not call the function when the signal has already fired", async () => {
    const fn = failing();
    const error = await retry(fn, { context, signal: AbortSignal.abort() }).catch((err: unknown) => err);
    expect(error).toMatchObject({ code: "Aborted" });
    expect(fn).not.toHaveBeenCalled();
  });
});

describe("sleep", () => {
  it("resolves after the time has passed", async () => {
    vi.useFakeTimers();
    try {
      let done = false;
      const slept = sleep(1_000).then(() => {
        done = true;
      });
      await vi.advanceTimersByTimeAsync(999);
      expect(done).toBe(false);
      await vi.advanceTimersByTimeAsync(1);
      await slept;
      expect(done).toBe(true);
    } finally {
      vi.useRealTimers();
    }
  });

  it("rejects with Aborted when the signal fires", async () => {
    const controller = new AbortController();
    const slept = sleep(60_000, controller.signal);
    controller.abort();
    await expect(slept).rejects.toMatchObject({ code: "Aborted" });
  });
});
