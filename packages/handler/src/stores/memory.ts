import { StorageError } from "@stowage/core";
import { duplicate } from "./schema.js";
import type {
  AuthRecord,
  FetchEntry,
  LockedOutcome,
  LoginState,
  RecordChange,
  Tombstone,
  VaultStore,
} from "./types.js";

interface FetchRow {
  sealed?: Uint8Array;
  expiresAt: number;
}

/**
 * A store in process memory: for tests and trials. Everything is lost on restart, and instances do
 * not share it.
 */
export class MemoryStore implements VaultStore {
  readonly kind = "memory" as const;
  readonly location = "memory:";
  private readonly records = new Map<string, AuthRecord>();
  private readonly tombstones = new Map<string, Tombstone>();
  private readonly states = new Map<string, LoginState>();
  private readonly fetches = new Map<string, FetchRow>();
  // Per-KEYID lock chain: each waiter runs after the previous holder settles.
  private readonly locks = new Map<string, Promise<void>>();
  private closed = false;

  async insert(record: AuthRecord): Promise<void> {
    this.check();
    if (this.records.has(record.keyId)) throw duplicate(record.keyId);
    this.records.set(record.keyId, copy(record));
  }

  async get(keyId: string): Promise<AuthRecord | undefined> {
    this.check();
    const record = this.records.get(keyId);
    return record && copy(record);
  }

  async withRecordLock<T>(
    keyId: string,
    work: (record: AuthRecord | undefined) => Promise<LockedOutcome<T>>,
  ): Promise<T> {
    this.check();
    const previous = this.locks.get(keyId) ?? Promise.resolve();
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = previous.then(() => held);
    this.locks.set(keyId, tail);
    await previous;
    try {
      const current = this.records.get(keyId);
      const outcome = await work(current && copy(current));
      if (outcome.remove) this.remove(keyId, "revoked", outcome.remove.now);
      else if (outcome.change) this.apply(keyId, outcome.change);
      return outcome.result;
    } finally {
      release();
      if (this.locks.get(keyId) === tail) this.locks.delete(keyId);
    }
  }

  async tombstone(keyId: string): Promise<Tombstone | undefined> {
    this.check();
    const tombstone = this.tombstones.get(keyId);
    return tombstone && { ...tombstone };
  }

  async delete(keyId: string, now: number): Promise<boolean> {
    this.check();
    return this.remove(keyId, "revoked", now);
  }

  private remove(keyId: string, reason: Tombstone["reason"], now: number): boolean {
    if (!this.records.delete(keyId)) return false;
    this.tombstones.set(keyId, { reason, at: now });
    return true;
  }

  async touch(keyId: string, usedAt: number): Promise<void> {
    this.check();
    const record = this.records.get(keyId);
    if (record && record.usedAt < usedAt) record.usedAt = usedAt;
  }

  async purgeUnused(cutoff: number, now: number): Promise<string[]> {
    this.check();
    for (const [keyId, tombstone] of this.tombstones) {
      if (tombstone.at < cutoff) this.tombstones.delete(keyId);
    }
    const purged = [...this.records.values()].filter((r) => r.usedAt < cutoff).map((r) => r.keyId);
    for (const keyId of purged) this.remove(keyId, "purged", now);
    return purged;
  }

  async countRecords(): Promise<number> {
    this.check();
    return this.records.size;
  }

  async saveLoginState(stateHash: string, state: LoginState): Promise<void> {
    this.check();
    this.states.set(stateHash, { ...state });
  }

  async takeLoginState(stateHash: string, now: number): Promise<LoginState | undefined> {
    this.check();
    const state = this.states.get(stateHash);
    this.states.delete(stateHash);
    return state && state.expiresAt > now ? state : undefined;
  }

  async registerFetch(tokenHash: string, expiresAt: number): Promise<void> {
    this.check();
    if (!this.fetches.has(tokenHash)) this.fetches.set(tokenHash, { expiresAt });
  }

  async completeFetch(
    tokenHash: string,
    sealed: Uint8Array,
    expiresAt: number,
    now: number,
  ): Promise<boolean> {
    this.check();
    const row = this.fetches.get(tokenHash);
    if (!row || row.expiresAt <= now) return false;
    this.fetches.set(tokenHash, { sealed, expiresAt });
    return true;
  }

  async takeFetch(tokenHash: string, now: number): Promise<FetchEntry | undefined> {
    this.check();
    const row = this.fetches.get(tokenHash);
    if (!row || row.expiresAt <= now) return undefined;
    if (row.sealed === undefined) return { status: "wait" };
    this.fetches.delete(tokenHash);
    return { status: "ready", sealed: row.sealed };
  }

  async purgeExpired(now: number): Promise<number> {
    this.check();
    let count = 0;
    for (const map of [this.states, this.fetches] as Map<string, { expiresAt: number }>[]) {
      for (const [key, value] of map) {
        if (value.expiresAt <= now) {
          map.delete(key);
          count++;
        }
      }
    }
    return count;
  }

  async ping(): Promise<void> {
    this.check();
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private apply(keyId: string, change: RecordChange): void {
    const record = this.records.get(keyId);
    if (!record) return;
    if (change.grant) record.grant = change.grant;
    if (change.access === null) delete record.access;
    else if (change.access) record.access = { ...change.access };
    if (change.usedAt !== undefined) record.usedAt = Math.max(record.usedAt, change.usedAt);
  }

  private check(): void {
    if (this.closed) {
      throw new StorageError({
        provider: "handler",
        operation: "store",
        code: "Unavailable",
        message: "the memory store was closed",
      });
    }
  }
}

function copy(record: AuthRecord): AuthRecord {
  return { ...record, access: record.access && { ...record.access } };
}
