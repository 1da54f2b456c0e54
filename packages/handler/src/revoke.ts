import type { Logger } from "@stowage/core";
import { failures, HandlerError } from "./errors.js";
import type { FailureBackoff } from "./limits.js";
import type { HandlerMetrics } from "./metrics.js";
import type { ProviderClient } from "./oauth.js";
import { RecordKey } from "./records.js";
import { missingRecord, type RefreshService } from "./refresh.js";
import type { VaultStore } from "./stores/types.js";
import type { PresentedAuthId } from "./vault.js";

/** What `POST /revoke` answers. */
export interface RevokeResult {
  /** The handler holds nothing for this AuthID any more (always true for a v2 AuthID). */
  revoked: true;
  provider: string;
  /** The provider confirmed that the refresh token is revoked. */
  providerRevoked: boolean;
  /** Why the provider did not revoke it, and what the user can do. */
  detail?: string;
}

export interface RevokeDeps {
  store: VaultStore;
  providers: ReadonlyMap<string, ProviderClient>;
  refresher: RefreshService;
  metrics: HandlerMetrics;
  backoff: FailureBackoff;
  loginUrl: (provider?: string) => string;
  purgeAfterDays: number;
  logger: Logger;
  now: () => number;
}

/**
 * Revokes an AuthID: proves the secret (by opening the record), deletes the record, and revokes the
 * refresh token at the provider where it has an endpoint (RFC 7009). The record is deleted even if
 * the provider cannot be reached, so the handler can never mint a token for it again; the answer
 * says when the user must still remove the app's access at the provider.
 */
export async function revokeAuthId(
  authId: PresentedAuthId & { kind: "v1" | "v2" },
  deps: RevokeDeps,
): Promise<RevokeResult> {
  if (authId.kind === "v2") {
    const client = deps.providers.get(authId.service);
    if (client === undefined) throw failures.unsupportedService(authId.service, [...deps.providers.keys()]);
    deps.refresher.forgetV2(authId.refreshToken);
    return atProvider(client, authId.refreshToken, deps);
  }
  const { keyId, secret } = authId;
  const wait = deps.backoff.check(keyId);
  if (wait > 0) throw failures.backoff(wait);
  const key = new RecordKey(keyId, secret);
  const removed = await deps.store.withRecordLock(keyId, async (record) => {
    if (record === undefined) throw await missingRecord(keyId, deps);
    const grant = key.openGrant(record);
    if (grant === undefined) {
      deps.backoff.fail(keyId);
      throw failures.wrongPassword(deps.loginUrl(record.provider));
    }
    return {
      result: { provider: record.provider, refreshToken: grant.refreshToken },
      remove: { now: deps.now() },
    };
  });
  deps.backoff.succeed(keyId);
  const client = deps.providers.get(removed.provider);
  if (client === undefined) {
    return {
      revoked: true,
      provider: removed.provider,
      providerRevoked: false,
      detail:
        "this provider is no longer configured here; remove the app's access in your account's settings",
    };
  }
  return atProvider(client, removed.refreshToken, deps);
}

async function atProvider(
  client: ProviderClient,
  refreshToken: string,
  deps: RevokeDeps,
): Promise<RevokeResult> {
  const provider = client.config.id;
  const manual = client.config.deauthorizeUrl
    ? `remove the app's access at ${client.config.deauthorizeUrl}`
    : "remove the app's access in your account's settings at the provider";
  try {
    const revoked = await client.revoke(refreshToken);
    deps.metrics.providerCalls.inc({ provider, call: "revoke", outcome: revoked ? "ok" : "no-endpoint" });
    if (revoked) return { revoked: true, provider, providerRevoked: true };
    return {
      revoked: true,
      provider,
      providerRevoked: false,
      detail: `this provider has no revocation endpoint; ${manual}`,
    };
  } catch (err) {
    deps.metrics.providerCalls.inc({ provider, call: "revoke", outcome: "failed" });
    deps.logger.warn({ err, provider }, "provider revocation failed");
    const why = err instanceof HandlerError ? err.reason : "the provider could not be reached";
    return { revoked: true, provider, providerRevoked: false, detail: `${why}; ${manual}` };
  }
}
