import type { VaultStore } from "./stores/types.js";

export interface PurgeResult {
  /** AuthID records deleted for being unused for `purgeAfterDays`. */
  records: number;
  /** Expired login states and fetch tokens deleted. */
  expired: number;
}

const DAY_MS = 86_400_000;

/**
 * Deletes records unused for `purgeAfterDays` (a purged AuthID is refused like a revoked one) and
 * expired logins and fetch tokens. The provider's refresh token cannot be revoked here: without the
 * AuthID the handler cannot decrypt it; it lapses at the provider on its own (docs/security-model.md).
 */
export async function purgeStore(
  store: VaultStore,
  purgeAfterDays: number,
  now: number,
): Promise<PurgeResult> {
  const purged = await store.purgeUnused(now - purgeAfterDays * DAY_MS, now);
  const expired = await store.purgeExpired(now);
  return { records: purged.length, expired };
}
