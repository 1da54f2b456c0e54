/**
 * One AuthID v1 record. Nothing here is secret on its own: the tokens are sealed under a key that
 * only the AuthID's holder can derive (see vault.ts).
 */
export interface AuthRecord {
  keyId: string;
  /** The provider id from the configuration. */
  provider: string;
  /** Milliseconds since the epoch, as every time in a store. */
  createdAt: number;
  /** The last time a refresh was served for it (updated at most hourly); purge goes by this. */
  usedAt: number;
  /** The sealed grant (refresh token and scope). */
  grant: Uint8Array;
  /** The sealed cached access token, when one is held. */
  access?: CachedAccess;
}

export interface CachedAccess {
  box: Uint8Array;
  /** When the provider said the token expires. */
  expiresAt: number;
  /** From then on a refresh asks the provider again rather than serving this token. */
  staleAt: number;
}

/** What a refresh under the row lock writes back. */
export interface RecordChange {
  grant?: Uint8Array;
  /** `null` drops the cached token. */
  access?: CachedAccess | null;
  usedAt?: number;
}

/** What the work done under {@link VaultStore.withRecordLock} returns. */
export interface LockedOutcome<T> {
  result: T;
  /** Written before the lock is released (so before the caller answers). */
  change?: RecordChange;
  /** Deletes the record instead, leaving a `revoked` tombstone dated `now`. */
  remove?: { now: number };
}

/**
 * A login between `/login` and `/logged-in`, stored under the SHA-256 of its `state` so that
 * several instances share it; `sealed` holds the PKCE verifier and fetch token, under a key derived
 * from the state itself.
 */
export interface LoginState {
  provider: string;
  sealed: Uint8Array;
  expiresAt: number;
}

/** What is left of a deleted record: when and why, so that its AuthID is refused with a reason. */
export interface Tombstone {
  reason: "revoked" | "purged";
  at: number;
}

export type FetchEntry = { status: "ready"; sealed: Uint8Array } | { status: "wait" };

/**
 * Where the handler keeps records, logins in progress and fetch tokens. Implementations: SQLite
 * (default), PostgreSQL (several instances), memory (tests, trials).
 *
 * Every method may throw a `StorageError` with code `Unavailable` when the database cannot be reached.
 */
export interface VaultStore {
  readonly kind: "sqlite" | "postgres" | "memory";
  /** A description safe to log (no password). */
  readonly location: string;
  /** Adds a record; KEYIDs are 128 random bits, so a collision is an error, never an overwrite. */
  insert(record: AuthRecord): Promise<void>;
  get(keyId: string): Promise<AuthRecord | undefined>;
  /** Why a KEYID has no record, if it had one (kept as long as records are). */
  tombstone(keyId: string): Promise<Tombstone | undefined>;
  /**
   * Runs `work` holding an exclusive lock on the record, across every process sharing the store:
   * a second caller waits, then sees what the first wrote. `work` receives the record as it is once
   * locked (`undefined` if it does not exist); its `change` is written before the lock is released.
   */
  withRecordLock<T>(
    keyId: string,
    work: (record: AuthRecord | undefined) => Promise<LockedOutcome<T>>,
  ): Promise<T>;
  /** Deletes a record, leaving a `revoked` tombstone; whether there was one. */
  delete(keyId: string, now: number): Promise<boolean>;
  /** Moves `usedAt` forward (the cached path calls it at most hourly per record). */
  touch(keyId: string, usedAt: number): Promise<void>;
  /**
   * Deletes records whose `usedAt` is before `cutoff`, leaving `purged` tombstones, and tombstones
   * older than `cutoff`; returns the purged KEYIDs.
   */
  purgeUnused(cutoff: number, now: number): Promise<string[]>;
  countRecords(): Promise<number>;
  saveLoginState(stateHash: string, state: LoginState): Promise<void>;
  /** Removes the state and returns it if it existed and had not expired: a state works once. */
  takeLoginState(stateHash: string, now: number): Promise<LoginState | undefined>;
  /** Registers a fetch token; registering one that exists changes nothing. */
  registerFetch(tokenHash: string, expiresAt: number): Promise<void>;
  /** Attaches the sealed AuthID to a registered fetch token; `false` if it is unknown or expired. */
  completeFetch(tokenHash: string, sealed: Uint8Array, expiresAt: number, now: number): Promise<boolean>;
  /** A completed entry is returned once and deleted; a registered one is `wait`. */
  takeFetch(tokenHash: string, now: number): Promise<FetchEntry | undefined>;
  /** Deletes expired login states and fetch tokens; returns how many. */
  purgeExpired(now: number): Promise<number>;
  /** Resolves when the database answers. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
