import { channel } from "node:diagnostics_channel";
import pRetry from "p-retry";
import { abortedError, StorageError, toStorageError } from "./errors.js";

export interface RetryContext {
  provider?: string;
  operation?: string;
  key?: string;
}

export interface RetryInfo {
  /** The attempt that failed, from 1. */
  attempt: number;
  /** How long `retry` waits before the next attempt. */
  delayMs: number;
  error: StorageError;
}

export interface RetryOptions {
  /** Total attempts, the first one included. Default 5. */
  attempts?: number;
  /** The backoff cap of the first retry; it doubles per attempt. Default 250 ms. */
  minDelayMs?: number;
  /**
   * The longest wait between two attempts. A server asking (`Retry-After`) for longer fails the call
   * at once with `RateLimited`. Default 30 s.
   */
  maxDelayMs?: number;
  /** No retry starts whose wait would end later than this after the first attempt. Default 5 min. */
  maxTotalMs?: number;
  /** Aborting rejects with `Aborted`, also while waiting between attempts. */
  signal?: AbortSignal;
  /** Called before each wait, e.g. to report progress. */
  onRetry?: (info: RetryInfo) => void;
  /** Where errors are placed (provider, operation, key). */
  context?: RetryContext;
  /** A source of numbers in [0, 1) for the jitter; tests pass a fixed one. Default `Math.random`. */
  random?: () => number;
}

/** The defaults of {@link retry}, as DESIGN section 3 sets them. */
export const defaultRetryOptions = Object.freeze({
  attempts: 5,
  minDelayMs: 250,
  maxDelayMs: 30_000,
  maxTotalMs: 300_000,
});

const retryChannel = channel("stowage:retry");

/**
 * Waits `ms` milliseconds. Aborting the signal rejects at once with an `Aborted` {@link StorageError}.
 *
 * @example
 * await sleep(1_000, options.signal);
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(abortedError({}, signal.reason));
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortedError({}, signal?.reason));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Calls `fn` until it succeeds, retrying only errors whose `retryable` is true (`RateLimited`,
 * `Unavailable`, `Timeout`). Anything `fn` throws is normalised with `toStorageError` first.
 *
 * Waits use exponential backoff with full jitter: `random() × min(maxDelayMs, minDelayMs × 2^(attempt−1))`.
 * An error's `retryAfterMs` is a floor on the wait; when it exceeds `maxDelayMs` the call fails at
 * once with `RateLimited` (carrying `retryAfterMs`) rather than sleeping. Retrying stops after
 * `attempts`, or when the next wait would end past `maxTotalMs`; the last error is thrown.
 *
 * Each retry is published on `node:diagnostics_channel` as `stowage:retry`.
 *
 * @example
 * const entry = await retry((attempt) => api.stat(key, { signal }), {
 *   signal,
 *   context: { provider: "onedrive", operation: "stat", key },
 * });
 */
export async function retry<T>(fn: (attempt: number) => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const attempts = options.attempts ?? defaultRetryOptions.attempts;
  const minDelayMs = options.minDelayMs ?? defaultRetryOptions.minDelayMs;
  const maxDelayMs = options.maxDelayMs ?? defaultRetryOptions.maxDelayMs;
  const maxTotalMs = options.maxTotalMs ?? defaultRetryOptions.maxTotalMs;
  const random = options.random ?? Math.random;
  const context = options.context ?? {};
  const signal = options.signal;
  if (!Number.isInteger(attempts) || attempts < 1) {
    throw new StorageError({
      ...context,
      code: "InvalidConfig",
      message: `retry attempts must be a whole number ≥ 1, got ${attempts}`,
    });
  }
  const started = performance.now();

  try {
    // p-retry runs the attempt loop, counts attempts and stops on abort. Its own delay cannot depend
    // on the error (Retry-After), so it is set to zero and the wait happens in onFailedAttempt.
    return await pRetry((attempt) => attemptOnce(fn, attempt, signal, context), {
      retries: attempts - 1,
      minTimeout: 0,
      signal,
      onFailedAttempt: async ({ error, attemptNumber, retriesLeft }) => {
        const failure = error as StorageError;
        // Throwing ends p-retry at once with this error.
        if (!failure.retryable) throw failure;
        if (retriesLeft <= 0) return;

        const backoff = random() * Math.min(maxDelayMs, minDelayMs * 2 ** (attemptNumber - 1));
        const retryAfterMs = failure.retryAfterMs ?? 0;
        if (retryAfterMs > maxDelayMs) throw retryAfterTooLong(failure, retryAfterMs, maxDelayMs);
        const delayMs = Math.round(Math.max(backoff, retryAfterMs));
        if (performance.now() - started + delayMs > maxTotalMs) throw failure;

        options.onRetry?.({ attempt: attemptNumber, delayMs, error: failure });
        if (retryChannel.hasSubscribers) {
          retryChannel.publish({
            provider: failure.provider,
            operation: failure.operation,
            key: failure.key,
            attempt: attemptNumber,
            delayMs,
            code: failure.code,
          });
        }
        await sleep(delayMs, signal);
      },
    });
  } catch (err) {
    if (signal?.aborted) throw abortedError(context, signal.reason);
    throw toStorageError(err, context);
  }
}

async function attemptOnce<T>(
  fn: (attempt: number) => Promise<T>,
  attempt: number,
  signal: AbortSignal | undefined,
  context: RetryContext,
): Promise<T> {
  try {
    return await untilAborted(fn(attempt), signal);
  } catch (err) {
    throw toStorageError(err, context);
  }
}

// An attempt that ignores the signal must not hold the caller: the call rejects when the signal
// fires, and the attempt's late outcome is dropped.
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortedError({}, signal.reason));
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

function retryAfterTooLong(failure: StorageError, retryAfterMs: number, maxDelayMs: number): StorageError {
  const seconds = (ms: number) => `${Math.ceil(ms / 1000)} s`;
  return new StorageError({
    provider: failure.provider,
    operation: failure.operation,
    key: failure.key,
    code: "RateLimited",
    retryable: true,
    status: failure.status,
    retryAfterMs,
    message: `the server asked to wait ${seconds(retryAfterMs)}, longer than the maximum ${seconds(maxDelayMs)}`,
    hint: "try again later or raise maxDelayMs",
    cause: failure,
  });
}
