import { type HandlerConfig, type HandlerConfigInput, isParsedConfig, parseConfig } from "./config.js";
import { buildHandler, type Handler, type HandlerOptions } from "./server.js";
import { openStore } from "./stores/index.js";
import type { VaultStore } from "./stores/types.js";

export {
  type BucketLimit,
  type ClientAuthMethod,
  type HandlerConfig,
  type HandlerConfigInput,
  type LimitsConfig,
  loadConfigFile,
  type ParseConfigOptions,
  type ProviderConfig,
  parseConfig,
  type SecretRef,
} from "./config.js";
export { HandlerError, type HandlerErrorInit } from "./errors.js";
export { HandlerMetrics } from "./metrics.js";
export type { PurgeResult } from "./purge.js";
export type { RefreshAnswer } from "./refresh.js";
export type { RevokeResult } from "./revoke.js";
export type { Handler, HandlerOptions } from "./server.js";
export {
  type AuthRecord,
  type CachedAccess,
  type FetchEntry,
  type LockedOutcome,
  type LoginState,
  MemoryStore,
  openStore,
  PostgresStore,
  type PostgresStoreOptions,
  type RecordChange,
  SqliteStore,
  type SqliteStoreOptions,
  type VaultStore,
} from "./stores/index.js";

export interface CreateHandlerOptions extends HandlerOptions {
  /** Use this store instead of opening the configuration's `store` URL (the handler closes it). */
  store?: VaultStore;
}

/**
 * Creates the OAuth handler: validates the configuration (a file's parsed JSON, or the result of
 * {@link parseConfig}), opens its store, and returns a server ready to `listen`.
 *
 * @example
 * const handler = createHandler({
 *   publicUrl: "https://handler.example.com",
 *   store: "sqlite:/var/lib/stowage-handler/vault.db",
 *   providers: { onedrive: { type: "microsoft", clientId: "…", clientSecret: { env: "MS_SECRET" } } },
 * });
 * await handler.listen(8080, "127.0.0.1");
 * // … later
 * await handler.close();
 */
export function createHandler(
  config: HandlerConfigInput | HandlerConfig,
  options: CreateHandlerOptions = {},
): Handler {
  const parsed = isParsedConfig(config) ? config : parseConfig(config);
  const store = options.store ?? openStore(parsed.store);
  return buildHandler(parsed, store, options);
}
