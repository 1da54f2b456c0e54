import { abortedError } from "@stowage/core";

/**
 * Waits for a promise shared by several callers (a single flight), but lets this caller leave when
 * its own signal fires: one caller's abort must not fail the others, so the shared work runs on.
 */
export function joinFlight<T>(
  flight: Promise<T>,
  signal: AbortSignal | undefined,
  context: { provider: string; operation: string; key?: string },
): Promise<T> {
  if (!signal) return flight;
  if (signal.aborted) return Promise.reject(abortedError(context, signal.reason));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortedError(context, signal.reason));
    signal.addEventListener("abort", onAbort, { once: true });
    flight.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/**
 * Runs work for one name at a time, in arrival order. Two puts of one key in one storage must not
 * both find "no file yet" and both create one: Drive allows duplicate names (reference §B.6).
 */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<void>>();

  async run<T>(
    name: string,
    work: () => Promise<T>,
    signal: AbortSignal | undefined,
    context: { provider: string; operation: string; key?: string },
  ): Promise<T> {
    const previous = this.tails.get(name) ?? Promise.resolve();
    let release!: () => void;
    const done = new Promise<void>((resolve) => {
      release = resolve;
    });
    // The next caller waits for this one even if this one gives up while waiting.
    const tail = previous.then(() => done);
    this.tails.set(name, tail);
    try {
      await joinFlight(previous, signal, context);
      return await work();
    } finally {
      release();
      if (this.tails.get(name) === tail) this.tails.delete(name);
    }
  }
}
