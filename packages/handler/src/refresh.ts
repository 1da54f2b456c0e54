import type { Logger } from "@stowage/core";
import { failures, HandlerError } from "./errors.js";
import type { FailureBackoff } from "./limits.js";
import type { HandlerMetrics } from "./metrics.js";
import { describeRefusal, isTokenResponse, type OAuthRefusal, type ProviderClient } from "./oauth.js";
import { RecordKey } from "./records.js";
import type { AuthRecord, LockedOutcome, VaultStore } from "./stores/types.js";
import { sha256Hex } from "./vault.js";

/** What `/refresh` answers: Duplicati's `{access_token, expires, type}` (plus `v2_authid` for v2 rotation). */
export interface RefreshAnswer {
  accessToken: string;
  /** Seconds the token is still valid. */
  expires: number;
  /** The provider id. */
  type: string;
  /** Only for a v2 AuthID whose provider rotated its refresh token: the AuthID to use from now on. */
  v2AuthId?: string;
  source: "cache" | "provider" | "v2-cache" | "v2-provider";
}

export interface RefreshDeps {
  store: VaultStore;
  providers: ReadonlyMap<string, ProviderClient>;
  metrics: HandlerMetrics;
  backoff: FailureBackoff;
  now: () => number;
  /** The login URL a user is sent to for a new AuthID. */
  loginUrl: (provider?: string) => string;
  purgeAfterDays: number;
  logger: Logger;
}

// `usedAt` (what purge goes by) is moved at most this often, so the cached path rarely writes.
const TOUCH_INTERVAL_MS = 3_600_000;
// v2 AuthIDs are not stored; their access tokens are cached in memory, bounded.
const V2_CACHE_ENTRIES = 10_000;

interface V2Cached {
  accessToken: string;
  expiresAt: number;
  staleAt: number;
  provider: string;
}

/**
 * Turns AuthIDs into access tokens.
 *
 * v1: the cached access token is served while fresh; otherwise one refresh per KEYID runs at a time
 * in this process (single flight), under the store's record lock across processes. Under the lock the
 * record is read again, so a caller that waited finds the token the first one fetched and makes no
 * provider call. A rotated refresh token is written before the lock is released, so before anyone is
 * answered.
 *
 * v2: `v2:SERVICE:REFRESH_TOKEN` is refreshed at the provider without storing anything; access tokens
 * are cached in memory under the refresh token's SHA-256.
 */
export class RefreshService {
  private readonly flights = new Map<string, Promise<RefreshAnswer>>();
  private readonly v2Cache = new Map<string, V2Cached>();

  constructor(private readonly deps: RefreshDeps) {}

  async refreshV1(keyId: string, secret: string): Promise<RefreshAnswer> {
    const { store, backoff, now } = this.deps;
    const wait = backoff.check(keyId);
    if (wait > 0) throw failures.backoff(wait);
    const key = new RecordKey(keyId, secret);
    const record = await store.get(keyId);
    if (record === undefined) throw await this.missing(keyId);
    const cached = key.openAccess(record, now());
    if (cached.state === "wrong-secret") throw this.wrongSecret(keyId, record);
    if (cached.state === "fresh") {
      backoff.succeed(keyId);
      await this.touch(record);
      return this.answer(record.provider, cached.accessToken, cached.expiresAt, "cache");
    }
    if (key.openGrant(record) === undefined) throw this.wrongSecret(keyId, record);
    backoff.succeed(keyId);
    // The secret was checked above, so every caller joining this flight holds the same one.
    return this.singleFlight(`v1:${keyId}`, () =>
      store.withRecordLock(keyId, (locked) => this.refreshLocked(key, locked)),
    );
  }

  private async refreshLocked(
    key: RecordKey,
    record: AuthRecord | undefined,
  ): Promise<LockedOutcome<RefreshAnswer>> {
    const now = this.deps.now();
    // Revoked or purged while this caller waited for the lock.
    if (record === undefined) throw await this.missing(key.keyId);
    const cached = key.openAccess(record, now);
    if (cached.state === "fresh") {
      return { result: this.answer(record.provider, cached.accessToken, cached.expiresAt, "cache") };
    }
    const grant = key.openGrant(record);
    if (grant === undefined) throw failures.wrongPassword(this.deps.loginUrl(record.provider));
    const client = this.client(record.provider);
    const response = await this.callProvider(client, grant.refreshToken);
    const access = key.sealAccess(record.provider, response.accessToken, response.expiresIn, now);
    const rotated = response.refreshToken !== undefined && response.refreshToken !== grant.refreshToken;
    return {
      result: this.answer(record.provider, response.accessToken, access.expiresAt, "provider", now),
      change: {
        grant: rotated
          ? key.sealGrant(record.provider, { ...grant, refreshToken: response.refreshToken! })
          : undefined,
        access,
        usedAt: now,
      },
    };
  }

  async refreshV2(service: string, refreshToken: string): Promise<RefreshAnswer> {
    const client = this.deps.providers.get(service);
    if (client === undefined) throw failures.unsupportedService(service, [...this.deps.providers.keys()]);
    const hash = sha256Hex(refreshToken);
    const cached = this.v2Cache.get(hash);
    if (cached !== undefined && cached.provider === service && this.deps.now() < cached.staleAt) {
      return this.answer(service, cached.accessToken, cached.expiresAt, "v2-cache");
    }
    return this.singleFlight(`v2:${hash}`, async () => {
      const response = await this.callProvider(client, refreshToken);
      const now = this.deps.now();
      const lifetimeMs = response.expiresIn * 1000;
      const expiresAt = now + lifetimeMs;
      if (this.v2Cache.size >= V2_CACHE_ENTRIES) this.v2Cache.delete(this.v2Cache.keys().next().value!);
      this.v2Cache.set(hash, {
        accessToken: response.accessToken,
        expiresAt,
        staleAt: now + Math.max(lifetimeMs / 2, lifetimeMs - 300_000),
        provider: service,
      });
      const answer = this.answer(service, response.accessToken, expiresAt, "v2-provider", now);
      // Nothing is stored for v2: a rotating provider's new refresh token can only go back to the client.
      if (response.refreshToken !== undefined && response.refreshToken !== refreshToken) {
        answer.v2AuthId = `v2:${service}:${response.refreshToken}`;
      }
      return answer;
    });
  }

  /** Forgets a v2 refresh token's cached access token (after it was revoked). */
  forgetV2(refreshToken: string): void {
    this.v2Cache.delete(sha256Hex(refreshToken));
  }

  private async callProvider(client: ProviderClient, refreshToken: string) {
    const provider = client.config.id;
    const response = await client.refresh(refreshToken).catch((err: unknown) => {
      this.deps.metrics.providerCalls.inc({ provider, call: "refresh", outcome: "failed" });
      throw err;
    });
    if (!isTokenResponse(response)) {
      this.deps.metrics.providerCalls.inc({ provider, call: "refresh", outcome: response.error });
      throw this.refused(provider, response);
    }
    this.deps.metrics.providerCalls.inc({ provider, call: "refresh", outcome: "ok" });
    return response;
  }

  private refused(provider: string, refusal: OAuthRefusal): HandlerError {
    if (refusal.error === "invalid_grant") {
      return new HandlerError({
        status: 401,
        code: "provider_refused",
        reason: `Authentication provider for ${provider} refused the refresh token (${describeRefusal(refusal)})`,
        hint: `the access was revoked or expired at the provider; create a new AuthID at ${this.deps.loginUrl(provider)}`,
      });
    }
    if (refusal.error === "invalid_client" || refusal.error === "unauthorized_client") {
      return new HandlerError({
        status: 502,
        code: "provider_unavailable",
        reason: `Authentication provider for ${provider} refused this handler's client credentials (${describeRefusal(refusal)})`,
        hint: "the handler's operator must check the provider's client id and secret",
      });
    }
    return new HandlerError({
      status: 502,
      code: "provider_unavailable",
      reason: `Authentication provider for ${provider} gave error: ${describeRefusal(refusal)}`,
    });
  }

  private client(provider: string): ProviderClient {
    const client = this.deps.providers.get(provider);
    if (client !== undefined) return client;
    throw new HandlerError({
      status: 503,
      code: "server_error",
      reason: `The provider '${provider}' of this AuthID is no longer configured on this handler`,
      hint: "the handler's operator must add it back to the configuration",
    });
  }

  private answer(
    type: string,
    accessToken: string,
    expiresAt: number,
    source: RefreshAnswer["source"],
    // A fresh token's lifetime is counted from the instant its expiry was computed, so that a
    // millisecond passing in between does not report 3599 s for a 3600 s token.
    now = this.deps.now(),
  ): RefreshAnswer {
    this.deps.metrics.refreshes.inc({ provider: type, source });
    const expires = Math.max(0, Math.floor((expiresAt - now) / 1000));
    return { accessToken, expires, type, source };
  }

  private async touch(record: AuthRecord): Promise<void> {
    const now = this.deps.now();
    if (now - record.usedAt < TOUCH_INTERVAL_MS) return;
    try {
      await this.deps.store.touch(record.keyId, now);
    } catch (err) {
      // A missed touch only delays purge by an hour; the token is still good to serve.
      this.deps.logger.warn({ err, keyId: record.keyId.slice(0, 8) }, "could not record use");
    }
  }

  private singleFlight(key: string, run: () => Promise<RefreshAnswer>): Promise<RefreshAnswer> {
    const existing = this.flights.get(key);
    if (existing !== undefined) return existing.then((answer) => this.copyAnswer(answer));
    const flight = run().finally(() => this.flights.delete(key));
    this.flights.set(key, flight);
    return flight;
  }

  private copyAnswer(answer: RefreshAnswer): RefreshAnswer {
    // A joiner got its token from the leader's call, not from a provider call of its own.
    const source =
      answer.source === "provider" ? "cache" : answer.source === "v2-provider" ? "v2-cache" : answer.source;
    this.deps.metrics.refreshes.inc({ provider: answer.type, source });
    return { ...answer, source };
  }

  /** Why a KEYID has no record: revoked (410), purged or unknown (404). */
  async missing(keyId: string): Promise<HandlerError> {
    return missingRecord(keyId, this.deps);
  }

  private wrongSecret(keyId: string, record: AuthRecord): HandlerError {
    this.deps.backoff.fail(keyId);
    return failures.wrongPassword(this.deps.loginUrl(record.provider));
  }
}

/** The error for a KEYID without a record, from its tombstone. */
export async function missingRecord(
  keyId: string,
  deps: Pick<RefreshDeps, "store" | "loginUrl" | "purgeAfterDays">,
): Promise<HandlerError> {
  const tombstone = await deps.store.tombstone(keyId);
  if (tombstone?.reason === "revoked") return failures.revoked(tombstone.at, deps.loginUrl());
  return failures.noSuchKey(deps.purgeAfterDays, deps.loginUrl(), tombstone?.at);
}
