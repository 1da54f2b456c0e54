import { resolve } from "node:path";
import { StorageError } from "@stowage/core";
import { MemoryStore } from "./memory.js";
import { PostgresStore, type PostgresStoreOptions } from "./postgres.js";
import { SqliteStore, type SqliteStoreOptions } from "./sqlite.js";
import type { VaultStore } from "./types.js";

export type {
  AuthRecord,
  CachedAccess,
  FetchEntry,
  LockedOutcome,
  LoginState,
  RecordChange,
  VaultStore,
} from "./types.js";
export type { PostgresStoreOptions, SqliteStoreOptions };
export { MemoryStore, PostgresStore, SqliteStore };

/**
 * Opens the store a configuration names: `sqlite:<path>` (relative paths from the working folder),
 * `postgres://…` or `memory:`.
 *
 * @example
 * const store = openStore("sqlite:/var/lib/stowage-handler/vault.db");
 */
export function openStore(url: string, options: SqliteStoreOptions & PostgresStoreOptions = {}): VaultStore {
  if (url === "memory:") return new MemoryStore();
  if (url.startsWith("sqlite:")) return new SqliteStore(resolve(url.slice("sqlite:".length)), options);
  if (/^postgres(ql)?:\/\//.test(url)) return new PostgresStore(url, options);
  throw new StorageError({
    provider: "handler",
    operation: "store",
    code: "InvalidConfig",
    message: "the store URL must be sqlite:<path>, postgres://… or memory:",
  });
}
