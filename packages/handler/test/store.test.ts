import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as wait } from "node:timers/promises";
import { isStorageError } from "@stowage/core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type AuthRecord, MemoryStore, PostgresStore, SqliteStore, type VaultStore } from "../src/index.js";
import { startPostgres, type TestPostgres } from "./support/postgres.js";

interface StoreKind {
  name: string;
  /** A fresh, empty store. */
  open(): Promise<VaultStore>;
  /** A second handle on the same database, as another process or instance would have; none for memory. */
  second?(): VaultStore;
  setup?(): Promise<void>;
  teardown?(): Promise<void>;
}

const dir = mkdtempSync(join(tmpdir(), "stowage-handler-store-"));
let postgres: TestPostgres | undefined;
let sqliteFile = "";
let databases = 0;

const kinds: StoreKind[] = [
  { name: "memory", open: async () => new MemoryStore() },
  {
    name: "sqlite",
    async open() {
      sqliteFile = join(dir, `vault-${databases++}.db`);
      return new SqliteStore(sqliteFile);
    },
    second: () => new SqliteStore(sqliteFile),
  },
  {
    name: "postgres",
    async setup() {
      postgres = await startPostgres();
    },
    async teardown() {
      await postgres?.stop();
    },
    async open() {
      // A fresh schema per test: tables are created on first use, in the search_path's first schema.
      const admin = new PostgresStore(postgres!.url);
      await admin.ping();
      await admin.close();
      const schema = `t${databases++}`;
      const { default: pg } = await import("pg");
      const pool = new pg.Pool({ connectionString: postgres!.url });
      await pool.query(`CREATE SCHEMA ${schema}`);
      await pool.end();
      currentPgUrl = `${postgres!.url}?options=${encodeURIComponent(`-c search_path=${schema}`)}`;
      return new PostgresStore(currentPgUrl);
    },
    second: () => new PostgresStore(currentPgUrl),
  },
];
let currentPgUrl = "";

afterAll(() => rmSync(dir, { recursive: true, force: true }));

function record(keyId: string, overrides: Partial<AuthRecord> = {}): AuthRecord {
  return {
    keyId,
    provider: "emu",
    createdAt: 1_000,
    usedAt: 2_000,
    grant: Buffer.from(`grant-${keyId}`),
    ...overrides,
  };
}

const KEY_A = "a".repeat(32);
const KEY_B = "b".repeat(32);

describe.each(kinds)("$name store", (kind) => {
  const opened: VaultStore[] = [];
  let store: VaultStore;

  beforeAll(async () => {
    await kind.setup?.();
  });
  afterAll(async () => {
    await kind.teardown?.();
  });

  async function fresh(): Promise<VaultStore> {
    store = await kind.open();
    opened.push(store);
    return store;
  }

  function secondHandle(): VaultStore {
    const other = kind.second!();
    opened.push(other);
    return other;
  }

  afterEach(async () => {
    await Promise.all(opened.splice(0).map((s) => s.close()));
  });

  it("round-trips a record, bytes and times exactly", async () => {
    await fresh();
    const access = {
      box: Buffer.from([0, 1, 2, 255]),
      expiresAt: 9_000_000_000_000,
      staleAt: 8_999_999_999_999,
    };
    await store.insert(record(KEY_A, { access }));
    await store.insert(record(KEY_B));
    const a = await store.get(KEY_A);
    expect(a).toMatchObject({
      keyId: KEY_A,
      provider: "emu",
      createdAt: 1_000,
      usedAt: 2_000,
      access: { expiresAt: access.expiresAt, staleAt: access.staleAt },
    });
    expect(Buffer.from(a!.grant).toString()).toBe(`grant-${KEY_A}`);
    expect(Buffer.from(a!.access!.box).equals(access.box)).toBe(true);
    expect((await store.get(KEY_B))!.access).toBeUndefined();
    expect(await store.get("c".repeat(32))).toBeUndefined();
    expect(await store.countRecords()).toBe(2);
  });

  it("refuses a second record with the same KEYID", async () => {
    await fresh();
    await store.insert(record(KEY_A));
    const error = await store.insert(record(KEY_A, { provider: "other" })).catch((err: unknown) => err);
    expect(isStorageError(error, "AlreadyExists")).toBe(true);
    expect((error as Error).message).toBe("handler store: a record named aaaaaaaa… already exists");
    expect((await store.get(KEY_A))!.provider).toBe("emu");
  });

  it("writes a locked change: new grant, cached token, and a used time that never moves back", async () => {
    await fresh();
    await store.insert(record(KEY_A, { access: { box: Buffer.from("old"), expiresAt: 5, staleAt: 4 } }));
    const result = await store.withRecordLock(KEY_A, async (current) => {
      expect(Buffer.from(current!.grant).toString()).toBe(`grant-${KEY_A}`);
      return {
        result: "done",
        change: {
          grant: Buffer.from("rotated"),
          access: { box: Buffer.from("new"), expiresAt: 50, staleAt: 40 },
          usedAt: 3_000,
        },
      };
    });
    expect(result).toBe("done");
    let after = (await store.get(KEY_A))!;
    expect(Buffer.from(after.grant).toString()).toBe("rotated");
    expect(after.access).toMatchObject({ expiresAt: 50, staleAt: 40 });
    expect(after.usedAt).toBe(3_000);
    await store.withRecordLock(KEY_A, async () => ({ result: null, change: { access: null, usedAt: 1 } }));
    after = (await store.get(KEY_A))!;
    expect(after.access).toBeUndefined();
    expect(Buffer.from(after.grant).toString()).toBe("rotated");
    expect(after.usedAt).toBe(3_000);
  });

  it("runs one holder of a record's lock at a time; the next sees what the first wrote", async () => {
    await fresh();
    await store.insert(record(KEY_A));
    const events: string[] = [];
    const holder = (name: string) =>
      store.withRecordLock(KEY_A, async (current) => {
        events.push(`${name} in (${Buffer.from(current!.grant).toString()})`);
        await wait(50);
        events.push(`${name} out`);
        return { result: name, change: { grant: Buffer.from(`by-${name}`) } };
      });
    await Promise.all([holder("first"), holder("second")]);
    expect(events).toEqual([`first in (grant-${KEY_A})`, "first out", "second in (by-first)", "second out"]);
  });

  it("does not make one record's lock wait for another's", async () => {
    await fresh();
    await store.insert(record(KEY_A));
    await store.insert(record(KEY_B));
    const events: string[] = [];
    const holder = (keyId: string) =>
      store.withRecordLock(keyId, async () => {
        events.push(`${keyId[0]} in`);
        await wait(50);
        events.push(`${keyId[0]} out`);
        return { result: null };
      });
    await Promise.all([holder(KEY_A), holder(KEY_B)]);
    expect(events.slice(0, 2).sort()).toEqual(["a in", "b in"]);
  });

  it("writes nothing and releases the lock when the work fails", async () => {
    await fresh();
    await store.insert(record(KEY_A));
    await expect(
      store.withRecordLock(KEY_A, async () => {
        throw new Error("provider failed");
      }),
    ).rejects.toThrow("provider failed");
    expect(Buffer.from((await store.get(KEY_A))!.grant).toString()).toBe(`grant-${KEY_A}`);
    const again = await store.withRecordLock(KEY_A, async () => ({ result: "next holder ran" }));
    expect(again).toBe("next holder ran");
  });

  it("hands the work no record for an unknown KEYID", async () => {
    await fresh();
    expect(await store.withRecordLock(KEY_A, async (current) => ({ result: current }))).toBeUndefined();
  });

  it("deletes under the lock and remembers the revocation", async () => {
    await fresh();
    await store.insert(record(KEY_A));
    await store.withRecordLock(KEY_A, async () => ({ result: null, remove: { now: 7_000 } }));
    expect(await store.get(KEY_A)).toBeUndefined();
    expect(await store.tombstone(KEY_A)).toEqual({ reason: "revoked", at: 7_000 });
    expect(await store.tombstone(KEY_B)).toBeUndefined();
  });

  it("deletes by KEYID, leaving a tombstone, and says whether there was a record", async () => {
    await fresh();
    await store.insert(record(KEY_A));
    expect(await store.delete(KEY_A, 8_000)).toBe(true);
    expect(await store.delete(KEY_A, 9_000)).toBe(false);
    expect(await store.tombstone(KEY_A)).toEqual({ reason: "revoked", at: 8_000 });
  });

  it("moves the used time forward only", async () => {
    await fresh();
    await store.insert(record(KEY_A));
    await store.touch(KEY_A, 5_000);
    await store.touch(KEY_A, 4_000);
    expect((await store.get(KEY_A))!.usedAt).toBe(5_000);
  });

  it("purges records unused since the cutoff, leaving tombstones, and forgets old tombstones", async () => {
    await fresh();
    await store.insert(record(KEY_A, { usedAt: 100 }));
    await store.insert(record(KEY_B, { usedAt: 10_000 }));
    await store.insert(record("c".repeat(32), { usedAt: 200 }));
    await store.delete("c".repeat(32), 300);
    expect((await store.purgeUnused(5_000, 20_000)).sort()).toEqual([KEY_A]);
    expect(await store.get(KEY_A)).toBeUndefined();
    expect(await store.get(KEY_B)).toBeDefined();
    expect(await store.tombstone(KEY_A)).toEqual({ reason: "purged", at: 20_000 });
    expect(await store.tombstone("c".repeat(32))).toBeUndefined();
  });

  it("hands out a login state once, and never an expired one", async () => {
    await fresh();
    const state = { provider: "emu", sealed: Buffer.from("sealed-state"), expiresAt: 10_000 };
    await store.saveLoginState("s1", state);
    await store.saveLoginState("s2", { ...state, expiresAt: 500 });
    const taken = await store.takeLoginState("s1", 1_000);
    expect(taken).toMatchObject({ provider: "emu", expiresAt: 10_000 });
    expect(Buffer.from(taken!.sealed).toString()).toBe("sealed-state");
    expect(await store.takeLoginState("s1", 1_000)).toBeUndefined();
    expect(await store.takeLoginState("s2", 1_000)).toBeUndefined();
    expect(await store.takeLoginState("unknown", 1_000)).toBeUndefined();
  });

  it("answers a fetch token with wait, then the sealed AuthID once", async () => {
    await fresh();
    await store.registerFetch("f1", 10_000);
    expect(await store.takeFetch("f1", 1_000)).toEqual({ status: "wait" });
    expect(await store.completeFetch("f1", Buffer.from("sealed-authid"), 20_000, 1_000)).toBe(true);
    await store.registerFetch("f1", 10_000);
    const ready = await store.takeFetch("f1", 1_000);
    expect(ready?.status).toBe("ready");
    expect(ready?.status === "ready" && Buffer.from(ready.sealed).toString()).toBe("sealed-authid");
    expect(await store.takeFetch("f1", 1_000)).toBeUndefined();
    expect(await store.completeFetch("unknown", Buffer.from("x"), 20_000, 1_000)).toBe(false);
    await store.registerFetch("f2", 500);
    expect(await store.takeFetch("f2", 1_000)).toBeUndefined();
    expect(await store.completeFetch("f2", Buffer.from("x"), 20_000, 1_000)).toBe(false);
  });

  it("purges expired login states and fetch tokens", async () => {
    await fresh();
    await store.saveLoginState("old", { provider: "emu", sealed: Buffer.from("x"), expiresAt: 100 });
    await store.saveLoginState("new", { provider: "emu", sealed: Buffer.from("x"), expiresAt: 10_000 });
    await store.registerFetch("old", 100);
    expect(await store.purgeExpired(1_000)).toBe(2);
    expect(await store.takeLoginState("new", 1_000)).toBeDefined();
  });

  it("fails with Unavailable once closed", async () => {
    await fresh();
    await store.ping();
    await store.close();
    const error = await store.get(KEY_A).catch((err: unknown) => err);
    expect(isStorageError(error, "Unavailable")).toBe(true);
    expect((error as Error).message).toMatch(/^handler store: the (memory|sqlite|postgres) store /);
  });

  // Memory stores are per process: nothing to share.
  if (kind.second === undefined) return;

  it("makes a second handle on the same database wait for the lock", async () => {
    await fresh();
    await store.insert(record(KEY_A));
    const other = secondHandle();
    const events: string[] = [];
    const holder = (name: string, handle: VaultStore) =>
      handle.withRecordLock(KEY_A, async (current) => {
        events.push(`${name} in (${Buffer.from(current!.grant).toString()})`);
        await wait(100);
        events.push(`${name} out`);
        return { result: name, change: { grant: Buffer.from(`by-${name}`) } };
      });
    const first = holder("first", store);
    await wait(20);
    await Promise.all([first, holder("second", other)]);
    expect(events).toEqual([`first in (grant-${KEY_A})`, "first out", "second in (by-first)", "second out"]);
  });
});

describe("sqlite record lease", () => {
  it("is taken over when its holder stops answering for longer than the lease", async () => {
    const file = join(dir, "lease.db");
    const crashed = new SqliteStore(file, { leaseMs: 200 });
    const survivor = new SqliteStore(file, { leaseMs: 200 });
    await crashed.insert(record(KEY_A));
    let release!: () => void;
    const stuck = crashed.withRecordLock(
      KEY_A,
      () =>
        new Promise<{ result: null }>((resolve) => {
          release = () => resolve({ result: null });
        }),
    );
    await wait(20);
    const started = Date.now();
    expect(await survivor.withRecordLock(KEY_A, async () => ({ result: "taken over" }))).toBe("taken over");
    expect(Date.now() - started).toBeGreaterThanOrEqual(150);
    release();
    await stuck;
    await crashed.close();
    await survivor.close();
  });

  it("gives up with Unavailable when a live holder keeps it too long", async () => {
    const file = join(dir, "busy.db");
    const holder = new SqliteStore(file);
    const waiter = new SqliteStore(file, { lockWaitMs: 100 });
    await holder.insert(record(KEY_A));
    let release!: () => void;
    const held = holder.withRecordLock(
      KEY_A,
      () =>
        new Promise<{ result: null }>((resolve) => {
          release = () => resolve({ result: null });
        }),
    );
    await wait(20);
    const error = await waiter
      .withRecordLock(KEY_A, async () => ({ result: null }))
      .catch((err: unknown) => err);
    expect(isStorageError(error, "Unavailable")).toBe(true);
    expect((error as Error).message).toBe(
      "handler store: another refresh of aaaaaaaa… held its lock for more than 100 ms (the provider may be slow; try again shortly)",
    );
    release();
    await held;
    await holder.close();
    await waiter.close();
  });
});
