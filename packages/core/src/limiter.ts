import { abortedError, StorageError } from "./errors.js";

/** A first-in, first-out concurrency limit. */
export interface Limiter {
  /**
   * Runs `fn` once fewer than `max` calls are running, in the order the calls arrived. Aborting while
   * queued rejects with `Aborted` and gives the place up; once `fn` runs, the signal is `fn`'s business.
   */
  run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T>;
  /**
   * Takes a slot and resolves with the function that gives it back (calling it twice is harmless).
   * For work whose end is not a promise, such as a response body consumed later.
   */
  acquire(signal?: AbortSignal): Promise<() => void>;
  /** Slots in use. */
  readonly active: number;
  /** Callers waiting for a slot. */
  readonly pending: number;
}

interface Waiter {
  grant(release: () => void): void;
}

/**
 * A FIFO concurrency limiter.
 *
 * @example
 * const limiter = createLimiter(8);
 * await Promise.all(keys.map((key) => limiter.run(() => storage.delete(key), signal)));
 */
export function createLimiter(max: number): Limiter {
  if (!Number.isInteger(max) || max < 1) {
    throw new StorageError({
      code: "InvalidConfig",
      operation: "createLimiter",
      message: `the concurrency limit must be a whole number of at least 1, got ${max}`,
    });
  }
  let active = 0;
  // A Set keeps insertion order and lets an aborted waiter leave from the middle in O(1).
  const waiters = new Set<Waiter>();

  const take = (): (() => void) => {
    active++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      active--;
      const next = waiters.values().next();
      if (!next.done) {
        waiters.delete(next.value);
        next.value.grant(take());
      }
    };
  };

  const acquire = (signal?: AbortSignal): Promise<() => void> => {
    if (signal?.aborted) return Promise.reject(abortedError({}, signal.reason));
    if (active < max && waiters.size === 0) return Promise.resolve(take());
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        waiters.delete(waiter);
        reject(abortedError({}, signal?.reason));
      };
      const waiter: Waiter = {
        grant: (release) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(release);
        },
      };
      waiters.add(waiter);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  };

  return {
    acquire,
    async run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
      const release = await acquire(signal);
      try {
        return await fn();
      } finally {
        release();
      }
    },
    get active() {
      return active;
    },
    get pending() {
      return waiters.size;
    },
  };
}
