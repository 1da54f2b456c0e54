import { describe, expect, it } from "vitest";
import { StorageError } from "../src/errors.js";
import { createLimiter } from "../src/limiter.js";

function deferred() {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe("createLimiter", () => {
  it("runs at most max calls at once and starts the rest in arrival order", async () => {
    const limiter = createLimiter(2);
    const gates = [deferred(), deferred(), deferred(), deferred()];
    const started: number[] = [];
    const runs = gates.map((gate, index) =>
      limiter.run(async () => {
        started.push(index);
        await gate.promise;
        return index;
      }),
    );

    await tick();
    expect(started).toEqual([0, 1]);
    expect(limiter.active).toBe(2);
    expect(limiter.pending).toBe(2);

    gates[1]?.resolve();
    await tick();
    expect(started).toEqual([0, 1, 2]);
    expect(limiter.pending).toBe(1);

    gates[0]?.resolve();
    gates[2]?.resolve();
    gates[3]?.resolve();
    await expect(Promise.all(runs)).resolves.toEqual([0, 1, 2, 3]);
    expect(limiter.active).toBe(0);
    expect(limiter.pending).toBe(0);
  });

  it("frees the slot when the call fails", async () => {
    const limiter = createLimiter(1);
    await expect(limiter.run(() => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
    expect(limiter.active).toBe(0);
    await expect(limiter.run(async () => "next")).resolves.toBe("next");
  });

  it("aborting a queued call rejects it with Aborted and removes it from the queue", async () => {
    const limiter = createLimiter(1);
    const gate = deferred();
    const first = limiter.run(() => gate.promise);
    const controller = new AbortController();
    let abortedRan = false;
    const queued = limiter.run(async () => {
      abortedRan = true;
    }, controller.signal);
    const after = limiter.run(async () => "after");
    expect(limiter.pending).toBe(2);

    controller.abort();
    const error = await queued.catch((err: unknown) => err);
    expect(error).toBeInstanceOf(StorageError);
    expect(error).toMatchObject({ code: "Aborted" });
    expect((error as StorageError).message).toContain("the operation was aborted");
    expect(limiter.pending).toBe(1);

    gate.resolve();
    await first;
    await expect(after).resolves.toBe("after");
    expect(abortedRan).toBe(false);
    expect(limiter.active).toBe(0);
  });

  it("rejects at once when the signal has already fired, even with a free slot", async () => {
    const limiter = createLimiter(1);
    await expect(limiter.run(async () => "ran", AbortSignal.abort())).rejects.toMatchObject({
      code: "Aborted",
    });
    expect(limiter.active).toBe(0);
  });

  it("an abort after the call has started does not affect it", async () => {
    const limiter = createLimiter(1);
    const controller = new AbortController();
    const gate = deferred();
    const run = limiter.run(async () => {
      await gate.promise;
      return "finished";
    }, controller.signal);
    await tick();
    controller.abort();
    gate.resolve();
    await expect(run).resolves.toBe("finished");
  });

  it("rejects a limit that is not a whole number of at least 1", () => {
    for (const max of [0, -1, 1.5, Number.NaN]) {
      expect(() => createLimiter(max)).toThrow(/concurrency limit must be a whole number of at least 1/);
    }
    expect(() => createLimiter(0)).toThrow(expect.objectContaining({ code: "InvalidConfig" }));
  });
});
