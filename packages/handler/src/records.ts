import type { AuthRecord, CachedAccess } from "./stores/types.js";
import { newAuthId, open, recordAad, recordKey, seal } from "./vault.js";

/** What a record's sealed grant holds. */
export interface Grant {
  refreshToken: string;
  scope?: string;
}

// Serve a cached access token until this long before it expires (or half its life, if shorter), so a
// client that caches it for `expires − 60 s` (DESIGN §4) still gets a useful lifetime.
const STALE_MARGIN_MS = 300_000;

/** The key and names needed to read and write one record. */
export class RecordKey {
  readonly keyId: string;
  private readonly key: Buffer;

  constructor(keyId: string, secret: string) {
    this.keyId = keyId;
    this.key = recordKey(keyId, secret);
  }

  sealGrant(provider: string, grant: Grant): Buffer {
    return seal(this.key, recordAad(this.keyId, provider, "grant"), JSON.stringify(grant));
  }

  /** `undefined` when the secret is wrong (or the record was altered). */
  openGrant(record: AuthRecord): Grant | undefined {
    const text = open(this.key, recordAad(this.keyId, record.provider, "grant"), record.grant);
    if (text === undefined) return undefined;
    const data = JSON.parse(text) as { refreshToken?: unknown; scope?: unknown };
    if (typeof data.refreshToken !== "string") return undefined;
    return {
      refreshToken: data.refreshToken,
      scope: typeof data.scope === "string" ? data.scope : undefined,
    };
  }

  sealAccess(provider: string, accessToken: string, expiresInSec: number, now: number): CachedAccess {
    const lifetimeMs = expiresInSec * 1000;
    return {
      box: seal(this.key, recordAad(this.keyId, provider, "access"), accessToken),
      expiresAt: now + lifetimeMs,
      staleAt: now + Math.max(lifetimeMs / 2, lifetimeMs - STALE_MARGIN_MS),
    };
  }

  /**
   * The cached access token: `fresh` when it may still be served, `stale` when a refresh is due,
   * `wrong-secret` when it does not open, `none` when none is cached.
   */
  openAccess(
    record: AuthRecord,
    now: number,
  ):
    | { state: "fresh"; accessToken: string; expiresAt: number }
    | { state: "stale" | "wrong-secret" | "none" } {
    const access = record.access;
    if (access === undefined) return { state: "none" };
    const token = open(this.key, recordAad(this.keyId, record.provider, "access"), access.box);
    if (token === undefined) return { state: "wrong-secret" };
    if (now >= access.staleAt) return { state: "stale" };
    return { state: "fresh", accessToken: token, expiresAt: access.expiresAt };
  }
}

/** A new record for a completed login, and the AuthID that opens it (shown to the user once). */
export function newRecord(
  provider: string,
  grant: Grant,
  access: { accessToken: string; expiresIn: number },
  now: number,
): { authId: string; record: AuthRecord } {
  const { authId, keyId, secret } = newAuthId();
  const key = new RecordKey(keyId, secret);
  return {
    authId,
    record: {
      keyId,
      provider,
      createdAt: now,
      usedAt: now,
      grant: key.sealGrant(provider, grant),
      access: key.sealAccess(provider, access.accessToken, access.expiresIn, now),
    },
  };
}
