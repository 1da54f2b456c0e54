import { randomUUID } from "node:crypto";
import { closeSync, existsSync, openSync } from "node:fs";
import { setTimeout as wait } from "node:timers/promises";
import { StorageError } from "@stowage/core";
import Database from "better-sqlite3";
import { duplicate, newerSchema, SCHEMA_VERSION, storeError } from "./schema.js";
import type { AuthRecord, FetchEntry, LockedOutcome, LoginState, Tombstone, VaultStore } from "./types.js";

export interface SqliteStoreOptions {
  /**
   * How long a refresh may hold a record's lease before another process may take it over (the
   * holder crashed). Longer than the provider's timeout. Default 60 s.
   */
  leaseMs?: number;
  /** How long a caller waits for a busy record before giving up with `Unavailable`. Default 30 s. */
  lockWaitMs?: number;
}

interface RecordRow {
  key_id: string;
  provider: string;
  created_at: number;
  used_at: number;
  grant_box: Buffer;
  access_box: Buffer | null;
  access_expires_at: number | null;
  access_stale_at: number | null;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS stowage_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS auth_records (
  key_id TEXT PRIMARY KEY,
  provider TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  used_at INTEGER NOT NULL,
  grant_box BLOB NOT NULL,
  access_box BLOB,
  access_expires_at INTEGER,
  access_stale_at INTEGER,
  lease_owner TEXT,
  lease_until INTEGER
);
CREATE INDEX IF NOT EXISTS auth_records_used_at ON auth_records (used_at);
CREATE TABLE IF NOT EXISTS tombstones (
  key_id TEXT PRIMARY KEY,
  reason TEXT NOT NULL,
  at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS login_states (
  state_hash TEXT PRIMARY KEY,
  provider TEXT NOT NULL,
  sealed BLOB NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS fetch_tokens (
  token_hash TEXT PRIMARY KEY,
  sealed BLOB,
  expires_at INTEGER NOT NULL
);`;

const RECORD_COLUMNS =
  "key_id, provider, created_at, used_at, grant_box, access_box, access_expires_at, access_stale_at";

/**
 * The default store: one SQLite file (WAL mode), for one machine. Several processes on that machine
 * may share the file.
 *
 * The record lock is a lease taken in a `BEGIN IMMEDIATE` transaction rather than a transaction held
 * open across the provider call: better-sqlite3 has one connection per process, and an open
 * transaction would hold SQLite's single write lock (every other record's writes) for the length of
 * an HTTP call.
 */
export class SqliteStore implements VaultStore {
  readonly kind = "sqlite" as const;
  readonly location: string;
  private readonly db: Database.Database;
  private readonly leaseMs: number;
  private readonly lockWaitMs: number;

  constructor(path: string, options: SqliteStoreOptions = {}) {
    this.location = `sqlite:${path}`;
    this.leaseMs = options.leaseMs ?? 60_000;
    this.lockWaitMs = options.lockWaitMs ?? 30_000;
    try {
      // Created owner-only before SQLite opens it; SQLite gives its -wal and -shm files the same mode.
      if (!existsSync(path)) closeSync(openSync(path, "a", 0o600));
      this.db = new Database(path);
      this.db.pragma("journal_mode = WAL");
      // A rotated refresh token must survive a power cut once the response has been sent.
      this.db.pragma("synchronous = FULL");
      this.db.pragma("busy_timeout = 5000");
      // Deleted records (revoked, purged) are overwritten on disk, not left in free pages.
      this.db.pragma("secure_delete = ON");
      this.db.exec(SCHEMA);
      this.checkSchema();
    } catch (err) {
      throw storeError(err, "sqlite", `opening ${path}`);
    }
  }

  private checkSchema(): void {
    const row = this.sql("SELECT value FROM stowage_meta WHERE name = 'schema_version'").get() as
      | { value: string }
      | undefined;
    if (row === undefined) {
      this.sql("INSERT OR IGNORE INTO stowage_meta (name, value) VALUES ('schema_version', ?)").run(
        String(SCHEMA_VERSION),
      );
    } else if (Number(row.value) > SCHEMA_VERSION) {
      throw newerSchema(Number(row.value), this.location);
    }
  }

  private readonly statements = new Map<string, Database.Statement>();

  /** Statements are prepared once: preparing costs more than running them on the refresh path. */
  private sql(text: string): Database.Statement {
    let statement = this.statements.get(text);
    if (statement === undefined) {
      statement = this.db.prepare(text);
      this.statements.set(text, statement);
    }
    return statement;
  }

  private run<T>(operation: string, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw storeError(err, "sqlite", operation);
    }
  }

  async insert(record: AuthRecord): Promise<void> {
    this.run("insert", () => {
      const result = this.sql(
        `INSERT OR IGNORE INTO auth_records (${RECORD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(
        record.keyId,
        record.provider,
        record.createdAt,
        record.usedAt,
        record.grant,
        record.access?.box ?? null,
        record.access?.expiresAt ?? null,
        record.access?.staleAt ?? null,
      );
      if (result.changes === 0) throw duplicate(record.keyId);
    });
  }

  async get(keyId: string): Promise<AuthRecord | undefined> {
    return this.run("get", () => this.read(keyId));
  }

  private read(keyId: string): AuthRecord | undefined {
    const row = this.sql(`SELECT ${RECORD_COLUMNS} FROM auth_records WHERE key_id = ?`).get(keyId) as
      | RecordRow
      | undefined;
    return row && toRecord(row);
  }

  async withRecordLock<T>(
    keyId: string,
    work: (record: AuthRecord | undefined) => Promise<LockedOutcome<T>>,
  ): Promise<T> {
    const owner = randomUUID();
    const acquire = this.db.transaction((now: number): "missing" | "busy" | "held" => {
      const lease = this.sql("SELECT lease_until FROM auth_records WHERE key_id = ?").get(keyId) as
        | { lease_until: number | null }
        | undefined;
      if (lease === undefined) return "missing";
      if (lease.lease_until !== null && lease.lease_until > now) return "busy";
      this.sql("UPDATE auth_records SET lease_owner = ?, lease_until = ? WHERE key_id = ?").run(
        owner,
        now + this.leaseMs,
        keyId,
      );
      return "held";
    });
    const deadline = Date.now() + this.lockWaitMs;
    for (let attempt = 0; ; attempt++) {
      const state = this.run("lock", () => acquire.immediate(Date.now()));
      if (state === "missing") return (await work(undefined)).result;
      if (state === "held") break;
      if (Date.now() > deadline) throw lockTimeout(keyId, this.lockWaitMs);
      // Polling is the only wait SQLite offers across processes; the jitter spreads the waiters.
      await wait(Math.min(100, 5 * 2 ** Math.min(attempt, 4)) * (0.5 + Math.random()));
    }
    try {
      const outcome = await work(this.run("get", () => this.read(keyId)));
      const write = this.db.transaction(() => {
        if (outcome.remove) {
          this.removeRecord(keyId, "revoked", outcome.remove.now);
          return;
        }
        const change = outcome.change ?? {};
        const access = change.access;
        this.sql(
          `UPDATE auth_records SET
               grant_box = COALESCE(?, grant_box),
               access_box = CASE WHEN ? THEN ? ELSE access_box END,
               access_expires_at = CASE WHEN ? THEN ? ELSE access_expires_at END,
               access_stale_at = CASE WHEN ? THEN ? ELSE access_stale_at END,
               used_at = MAX(used_at, COALESCE(?, used_at)),
               lease_owner = NULL, lease_until = NULL
             WHERE key_id = ?`,
        ).run(
          change.grant ?? null,
          access === undefined ? 0 : 1,
          access?.box ?? null,
          access === undefined ? 0 : 1,
          access?.expiresAt ?? null,
          access === undefined ? 0 : 1,
          access?.staleAt ?? null,
          change.usedAt ?? null,
          keyId,
        );
      });
      this.run("update", () => write.immediate());
      return outcome.result;
    } finally {
      this.run("unlock", () =>
        this.sql(
          "UPDATE auth_records SET lease_owner = NULL, lease_until = NULL WHERE key_id = ? AND lease_owner = ?",
        ).run(keyId, owner),
      );
    }
  }

  async tombstone(keyId: string): Promise<Tombstone | undefined> {
    return this.run("tombstone", () => {
      const row = this.sql("SELECT reason, at FROM tombstones WHERE key_id = ?").get(keyId) as
        | { reason: Tombstone["reason"]; at: number }
        | undefined;
      return row && { reason: row.reason, at: row.at };
    });
  }

  async delete(keyId: string, now: number): Promise<boolean> {
    return this.run("delete", () =>
      this.db.transaction(() => this.removeRecord(keyId, "revoked", now)).immediate(),
    );
  }

  /** Call inside a transaction. */
  private removeRecord(keyId: string, reason: Tombstone["reason"], now: number): boolean {
    if (this.sql("DELETE FROM auth_records WHERE key_id = ?").run(keyId).changes === 0) return false;
    this.sql("INSERT OR REPLACE INTO tombstones (key_id, reason, at) VALUES (?, ?, ?)").run(
      keyId,
      reason,
      now,
    );
    return true;
  }

  async touch(keyId: string, usedAt: number): Promise<void> {
    this.run("touch", () =>
      this.sql("UPDATE auth_records SET used_at = ? WHERE key_id = ? AND used_at < ?").run(
        usedAt,
        keyId,
        usedAt,
      ),
    );
  }

  async purgeUnused(cutoff: number, now: number): Promise<string[]> {
    return this.run("purge", () =>
      this.db
        .transaction(() => {
          this.sql("DELETE FROM tombstones WHERE at < ?").run(cutoff);
          const rows = this.sql("DELETE FROM auth_records WHERE used_at < ? RETURNING key_id").all(
            cutoff,
          ) as {
            key_id: string;
          }[];
          const mark = this.sql(
            "INSERT OR REPLACE INTO tombstones (key_id, reason, at) VALUES (?, 'purged', ?)",
          );
          for (const row of rows) mark.run(row.key_id, now);
          return rows.map((row) => row.key_id);
        })
        .immediate(),
    );
  }

  async countRecords(): Promise<number> {
    return this.run(
      "count",
      () => (this.sql("SELECT COUNT(*) AS n FROM auth_records").get() as { n: number }).n,
    );
  }

  async saveLoginState(stateHash: string, state: LoginState): Promise<void> {
    this.run("save login state", () =>
      this.sql("INSERT INTO login_states (state_hash, provider, sealed, expires_at) VALUES (?, ?, ?, ?)").run(
        stateHash,
        state.provider,
        state.sealed,
        state.expiresAt,
      ),
    );
  }

  async takeLoginState(stateHash: string, now: number): Promise<LoginState | undefined> {
    return this.run("take login state", () => {
      const row = this.sql(
        "DELETE FROM login_states WHERE state_hash = ? RETURNING provider, sealed, expires_at",
      ).get(stateHash) as { provider: string; sealed: Buffer; expires_at: number } | undefined;
      if (row === undefined || row.expires_at <= now) return undefined;
      return { provider: row.provider, sealed: row.sealed, expiresAt: row.expires_at };
    });
  }

  async registerFetch(tokenHash: string, expiresAt: number): Promise<void> {
    this.run("register fetch token", () =>
      this.sql("INSERT OR IGNORE INTO fetch_tokens (token_hash, sealed, expires_at) VALUES (?, NULL, ?)").run(
        tokenHash,
        expiresAt,
      ),
    );
  }

  async completeFetch(
    tokenHash: string,
    sealed: Uint8Array,
    expiresAt: number,
    now: number,
  ): Promise<boolean> {
    return this.run(
      "complete fetch token",
      () =>
        this.sql(
          "UPDATE fetch_tokens SET sealed = ?, expires_at = ? WHERE token_hash = ? AND expires_at > ?",
        ).run(sealed, expiresAt, tokenHash, now).changes > 0,
    );
  }

  async takeFetch(tokenHash: string, now: number): Promise<FetchEntry | undefined> {
    return this.run("take fetch token", () => {
      const taken = this.sql(
        "DELETE FROM fetch_tokens WHERE token_hash = ? AND sealed IS NOT NULL AND expires_at > ? RETURNING sealed",
      ).get(tokenHash, now) as { sealed: Buffer } | undefined;
      if (taken) return { status: "ready" as const, sealed: taken.sealed };
      const waiting = this.sql(
        "SELECT 1 AS found FROM fetch_tokens WHERE token_hash = ? AND expires_at > ?",
      ).get(tokenHash, now);
      return waiting === undefined ? undefined : { status: "wait" as const };
    });
  }

  async purgeExpired(now: number): Promise<number> {
    return this.run("purge expired", () => {
      const states = this.sql("DELETE FROM login_states WHERE expires_at <= ?").run(now).changes;
      const fetches = this.sql("DELETE FROM fetch_tokens WHERE expires_at <= ?").run(now).changes;
      return states + fetches;
    });
  }

  async ping(): Promise<void> {
    this.run("ping", () => this.sql("SELECT 1").get());
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}

function toRecord(row: RecordRow): AuthRecord {
  const record: AuthRecord = {
    keyId: row.key_id,
    provider: row.provider,
    createdAt: row.created_at,
    usedAt: row.used_at,
    grant: row.grant_box,
  };
  if (row.access_box !== null && row.access_expires_at !== null && row.access_stale_at !== null) {
    record.access = { box: row.access_box, expiresAt: row.access_expires_at, staleAt: row.access_stale_at };
  }
  return record;
}

/** The error when a record stays locked longer than a caller may wait. */
export function lockTimeout(keyId: string, waitedMs: number): StorageError {
  return new StorageError({
    provider: "handler",
    operation: "store",
    code: "Unavailable",
    message: `another refresh of ${keyId.slice(0, 8)}… held its lock for more than ${waitedMs < 1000 ? `${waitedMs} ms` : `${Math.round(waitedMs / 1000)} s`}`,
    hint: "the provider may be slow; try again shortly",
    retryAfterMs: 5_000,
  });
}
