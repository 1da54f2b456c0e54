import { redactUrl } from "@stowage/core";
import type pg from "pg";
import { duplicate, newerSchema, SCHEMA_VERSION, storeError } from "./schema.js";
import type { AuthRecord, FetchEntry, LockedOutcome, LoginState, Tombstone, VaultStore } from "./types.js";

export interface PostgresStoreOptions {
  /** Connections per instance. Default 10. */
  poolSize?: number;
  /** How long a refresh waits for a record another instance is refreshing. Default 30 s. */
  lockWaitMs?: number;
}

interface RecordRow {
  key_id: string;
  provider: string;
  created_at: string;
  used_at: string;
  grant_box: Buffer;
  access_box: Buffer | null;
  access_expires_at: string | null;
  access_stale_at: string | null;
}

// Times are BIGINT milliseconds: node-postgres returns them as strings, converted in toRecord.
const SCHEMA = [
  "CREATE TABLE IF NOT EXISTS stowage_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
  `CREATE TABLE IF NOT EXISTS auth_records (
    key_id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    used_at BIGINT NOT NULL,
    grant_box BYTEA NOT NULL,
    access_box BYTEA,
    access_expires_at BIGINT,
    access_stale_at BIGINT
  )`,
  "CREATE INDEX IF NOT EXISTS auth_records_used_at ON auth_records (used_at)",
  "CREATE TABLE IF NOT EXISTS tombstones (key_id TEXT PRIMARY KEY, reason TEXT NOT NULL, at BIGINT NOT NULL)",
  `CREATE TABLE IF NOT EXISTS login_states (
    state_hash TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    sealed BYTEA NOT NULL,
    expires_at BIGINT NOT NULL
  )`,
  `CREATE TABLE IF NOT EXISTS fetch_tokens (
    token_hash TEXT PRIMARY KEY,
    sealed BYTEA,
    expires_at BIGINT NOT NULL
  )`,
];

// Any constant works; it only has to be the same in every instance (pg_advisory_xact_lock).
const MIGRATION_LOCK = 0x5354_4f57;

// One statement, so the tombstone and the deletion commit together without a transaction of their own.
const REMOVE_RECORD = `WITH gone AS (DELETE FROM auth_records WHERE key_id = $1 RETURNING key_id)
  INSERT INTO tombstones (key_id, reason, at) SELECT key_id, $2, $3 FROM gone
  ON CONFLICT (key_id) DO UPDATE SET reason = EXCLUDED.reason, at = EXCLUDED.at`;

const RECORD_COLUMNS =
  "key_id, provider, created_at, used_at, grant_box, access_box, access_expires_at, access_stale_at";

/**
 * PostgreSQL: several handler instances share one database. The record lock is `SELECT … FOR UPDATE`
 * in a transaction held across the provider call, so a second instance's refresh waits for the first
 * to commit, then finds the new access token and makes no provider call of its own.
 */
export class PostgresStore implements VaultStore {
  readonly kind = "postgres" as const;
  readonly location: string;
  private pool?: pg.Pool;
  private readonly lockWaitMs: number;
  private ready?: Promise<pg.Pool>;
  private closing?: Promise<void>;

  constructor(
    private readonly url: string,
    private readonly options: PostgresStoreOptions = {},
  ) {
    this.location = redactUrl(url);
    this.lockWaitMs = options.lockWaitMs ?? 30_000;
  }

  /**
   * Loads pg, opens the pool and creates the tables on first use (a SQLite deployment never loads
   * pg); concurrent instances serialise the table creation on an advisory lock.
   */
  private init(): Promise<pg.Pool> {
    this.ready ??= (async () => {
      if (this.closing) throw new Error("the store is closed");
      const { default: driver } = await import("pg");
      this.pool ??= new driver.Pool({ connectionString: this.url, max: this.options.poolSize ?? 10 });
      // An idle connection the server dropped must not crash the process; the next query reconnects.
      this.pool.on("error", () => {});
      const pool = this.pool;
      const client = await pool.connect();
      try {
        await client.query("BEGIN");
        await client.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK]);
        for (const statement of SCHEMA) await client.query(statement);
        const found = await client.query<{ value: string }>(
          "SELECT value FROM stowage_meta WHERE name = 'schema_version'",
        );
        const version = found.rows[0]?.value;
        if (version === undefined) {
          await client.query("INSERT INTO stowage_meta (name, value) VALUES ('schema_version', $1)", [
            String(SCHEMA_VERSION),
          ]);
        } else if (Number(version) > SCHEMA_VERSION) {
          throw newerSchema(Number(version), this.location);
        }
        await client.query("COMMIT");
      } catch (err) {
        await client.query("ROLLBACK").catch(() => {});
        throw err;
      } finally {
        client.release();
      }
      return pool;
    })().catch((err) => {
      // The next call tries again (the database may come up later).
      this.ready = undefined;
      throw err;
    });
    return this.ready;
  }

  private async query<R extends pg.QueryResultRow>(
    operation: string,
    text: string,
    values: unknown[] = [],
  ): Promise<pg.QueryResult<R>> {
    try {
      const pool = await this.init();
      return await pool.query<R>(text, values);
    } catch (err) {
      throw storeError(err, "postgres", operation);
    }
  }

  async insert(record: AuthRecord): Promise<void> {
    const result = await this.query(
      "insert",
      `INSERT INTO auth_records (${RECORD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
       ON CONFLICT (key_id) DO NOTHING`,
      [
        record.keyId,
        record.provider,
        record.createdAt,
        record.usedAt,
        record.grant,
        record.access?.box ?? null,
        record.access?.expiresAt ?? null,
        record.access?.staleAt ?? null,
      ],
    );
    if (result.rowCount === 0) throw duplicate(record.keyId);
  }

  async get(keyId: string): Promise<AuthRecord | undefined> {
    const result = await this.query<RecordRow>(
      "get",
      `SELECT ${RECORD_COLUMNS} FROM auth_records WHERE key_id = $1`,
      [keyId],
    );
    const row = result.rows[0];
    return row && toRecord(row);
  }

  async withRecordLock<T>(
    keyId: string,
    work: (record: AuthRecord | undefined) => Promise<LockedOutcome<T>>,
  ): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await (await this.init()).connect();
    } catch (err) {
      throw storeError(err, "postgres", "lock");
    }
    let open = false;
    try {
      const step = async <R extends pg.QueryResultRow>(
        operation: string,
        text: string,
        values: unknown[] = [],
      ) => {
        try {
          return await client.query<R>(text, values);
        } catch (err) {
          throw storeError(err, "postgres", operation);
        }
      };
      await step("lock", "BEGIN");
      open = true;
      await step("lock", `SET LOCAL lock_timeout = ${Math.max(1, Math.round(this.lockWaitMs))}`);
      const locked = await step<RecordRow>(
        "lock",
        `SELECT ${RECORD_COLUMNS} FROM auth_records WHERE key_id = $1 FOR UPDATE`,
        [keyId],
      );
      const row = locked.rows[0];
      const outcome = await work(row && toRecord(row));
      if (row && outcome.remove) {
        await step("delete", REMOVE_RECORD, [keyId, "revoked", outcome.remove.now]);
      } else if (row && outcome.change) {
        const { grant, access, usedAt } = outcome.change;
        await step(
          "update",
          `UPDATE auth_records SET
             grant_box = COALESCE($2, grant_box),
             access_box = CASE WHEN $3 THEN $4 ELSE access_box END,
             access_expires_at = CASE WHEN $3 THEN $5 ELSE access_expires_at END,
             access_stale_at = CASE WHEN $3 THEN $6 ELSE access_stale_at END,
             used_at = GREATEST(used_at, COALESCE($7, used_at))
           WHERE key_id = $1`,
          [
            keyId,
            grant ?? null,
            access !== undefined,
            access?.box ?? null,
            access?.expiresAt ?? null,
            access?.staleAt ?? null,
            usedAt ?? null,
          ],
        );
      }
      await step("commit", "COMMIT");
      open = false;
      return outcome.result;
    } finally {
      if (open) await client.query("ROLLBACK").catch(() => {});
      client.release();
    }
  }

  async tombstone(keyId: string): Promise<Tombstone | undefined> {
    const result = await this.query<{ reason: Tombstone["reason"]; at: string }>(
      "tombstone",
      "SELECT reason, at FROM tombstones WHERE key_id = $1",
      [keyId],
    );
    const row = result.rows[0];
    return row && { reason: row.reason, at: Number(row.at) };
  }

  async delete(keyId: string, now: number): Promise<boolean> {
    const result = await this.query("delete", REMOVE_RECORD, [keyId, "revoked", now]);
    return (result.rowCount ?? 0) > 0;
  }

  async touch(keyId: string, usedAt: number): Promise<void> {
    await this.query("touch", "UPDATE auth_records SET used_at = $2 WHERE key_id = $1 AND used_at < $2", [
      keyId,
      usedAt,
    ]);
  }

  async purgeUnused(cutoff: number, now: number): Promise<string[]> {
    await this.query("purge", "DELETE FROM tombstones WHERE at < $1", [cutoff]);
    const result = await this.query<{ key_id: string }>(
      "purge",
      `WITH gone AS (DELETE FROM auth_records WHERE used_at < $1 RETURNING key_id)
       INSERT INTO tombstones (key_id, reason, at) SELECT key_id, 'purged', $2 FROM gone
       ON CONFLICT (key_id) DO UPDATE SET reason = EXCLUDED.reason, at = EXCLUDED.at
       RETURNING key_id`,
      [cutoff, now],
    );
    return result.rows.map((row) => row.key_id);
  }

  async countRecords(): Promise<number> {
    const result = await this.query<{ n: string }>("count", "SELECT COUNT(*) AS n FROM auth_records");
    return Number(result.rows[0]?.n ?? 0);
  }

  async saveLoginState(stateHash: string, state: LoginState): Promise<void> {
    await this.query(
      "save login state",
      "INSERT INTO login_states (state_hash, provider, sealed, expires_at) VALUES ($1, $2, $3, $4)",
      [stateHash, state.provider, state.sealed, state.expiresAt],
    );
  }

  async takeLoginState(stateHash: string, now: number): Promise<LoginState | undefined> {
    const result = await this.query<{ provider: string; sealed: Buffer; expires_at: string }>(
      "take login state",
      "DELETE FROM login_states WHERE state_hash = $1 RETURNING provider, sealed, expires_at",
      [stateHash],
    );
    const row = result.rows[0];
    if (row === undefined || Number(row.expires_at) <= now) return undefined;
    return { provider: row.provider, sealed: row.sealed, expiresAt: Number(row.expires_at) };
  }

  async registerFetch(tokenHash: string, expiresAt: number): Promise<void> {
    await this.query(
      "register fetch token",
      "INSERT INTO fetch_tokens (token_hash, sealed, expires_at) VALUES ($1, NULL, $2) ON CONFLICT DO NOTHING",
      [tokenHash, expiresAt],
    );
  }

  async completeFetch(
    tokenHash: string,
    sealed: Uint8Array,
    expiresAt: number,
    now: number,
  ): Promise<boolean> {
    const result = await this.query(
      "complete fetch token",
      "UPDATE fetch_tokens SET sealed = $2, expires_at = $3 WHERE token_hash = $1 AND expires_at > $4",
      [tokenHash, sealed, expiresAt, now],
    );
    return (result.rowCount ?? 0) > 0;
  }

  async takeFetch(tokenHash: string, now: number): Promise<FetchEntry | undefined> {
    const taken = await this.query<{ sealed: Buffer }>(
      "take fetch token",
      "DELETE FROM fetch_tokens WHERE token_hash = $1 AND sealed IS NOT NULL AND expires_at > $2 RETURNING sealed",
      [tokenHash, now],
    );
    const row = taken.rows[0];
    if (row) return { status: "ready", sealed: row.sealed };
    const waiting = await this.query(
      "take fetch token",
      "SELECT 1 FROM fetch_tokens WHERE token_hash = $1 AND expires_at > $2",
      [tokenHash, now],
    );
    return (waiting.rowCount ?? 0) > 0 ? { status: "wait" } : undefined;
  }

  async purgeExpired(now: number): Promise<number> {
    const states = await this.query("purge expired", "DELETE FROM login_states WHERE expires_at <= $1", [
      now,
    ]);
    const fetches = await this.query("purge expired", "DELETE FROM fetch_tokens WHERE expires_at <= $1", [
      now,
    ]);
    return (states.rowCount ?? 0) + (fetches.rowCount ?? 0);
  }

  async ping(): Promise<void> {
    await this.query("ping", "SELECT 1");
  }

  async close(): Promise<void> {
    this.closing ??= (async () => {
      await this.ready?.catch(() => {});
      await this.pool?.end();
    })();
    await this.closing;
  }
}

function toRecord(row: RecordRow): AuthRecord {
  const record: AuthRecord = {
    keyId: row.key_id,
    provider: row.provider,
    createdAt: Number(row.created_at),
    usedAt: Number(row.used_at),
    grant: row.grant_box,
  };
  if (row.access_box !== null && row.access_expires_at !== null && row.access_stale_at !== null) {
    record.access = {
      box: row.access_box,
      expiresAt: Number(row.access_expires_at),
      staleAt: Number(row.access_stale_at),
    };
  }
  return record;
}
