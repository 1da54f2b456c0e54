import {
  defaultOAuthClient,
  type OAuthProvider,
  type OAuthProviderOptions,
  startOAuthProvider,
} from "@stowage/emulators";
import { afterEach, describe, expect, it, vi } from "vitest";
import { type OAuthRefreshTokenOptions, oauthRefreshToken } from "../src/index.js";
import { failure } from "./support/failure.js";

const { clientId, clientSecret } = defaultOAuthClient;
const providers: OAuthProvider[] = [];
const fastRetry = { minDelayMs: 1, maxDelayMs: 2_000 };

afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(providers.splice(0).map((provider) => provider.close()));
});

async function start(options: OAuthProviderOptions = {}): Promise<OAuthProvider> {
  const provider = await startOAuthProvider(options);
  providers.push(provider);
  return provider;
}

function source(provider: OAuthProvider, options: Partial<OAuthRefreshTokenOptions> = {}) {
  return oauthRefreshToken({
    tokenUrl: provider.tokenUrl,
    clientId,
    clientSecret,
    refreshToken: options.refreshToken ?? provider.issueRefreshToken({ scopes: ["files.rw"] }),
    onRotate: () => {},
    retry: fastRetry,
    ...options,
  });
}

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

describe("oauthRefreshToken against the OAuth emulator", () => {
  it("refreshes an access token the provider accepts, expiring after expires_in", async () => {
    const provider = await start({ accessTokenLifetimeSec: 900 });
    const before = Date.now();
    const { token, expiresAt } = await source(provider).getToken();
    expect(provider.validate(token)).toMatchObject({ valid: true, clientId, scopes: ["files.rw"] });
    expect(expiresAt!.getTime()).toBeGreaterThanOrEqual(before + 900_000);
    expect(provider.tokenRequestLog).toEqual([
      {
        grantType: "refresh_token",
        clientId,
        clientAuth: "client_secret_post",
        outcome: "ok",
        issuedRefreshToken: true,
      },
    ]);
  });

  it("100 concurrent getToken calls on a cold cache make exactly one token request", async () => {
    const provider = await start();
    provider.faults.add({ path: "/token", delayMs: 50 });
    const auth = source(provider);
    const tokens = await Promise.all(Array.from({ length: 100 }, () => auth.getToken()));
    expect(provider.counters.tokenRequests).toBe(1);
    expect(new Set(tokens.map((t) => t.token)).size).toBe(1);
  });

  it("a rotated refresh token is handed to onRotate, and awaited, before the new access token is returned", async () => {
    const provider = await start({ rotateRefreshTokens: true });
    const original = provider.issueRefreshToken();
    const rotations: string[] = [];
    const stored = deferred();
    const auth = source(provider, {
      refreshToken: original,
      onRotate: async (refreshToken) => {
        rotations.push(refreshToken);
        await stored.promise;
      },
    });
    let settled = false;
    const pending = auth.getToken().then((result) => {
      settled = true;
      return result;
    });
    await vi.waitFor(() => expect(rotations).toHaveLength(1));
    // The provider has answered and the old token is dead, but the access token is held back.
    expect(provider.refreshTokenStatus(original)).toBe("rotated");
    expect(provider.refreshTokenStatus(rotations[0]!)).toBe("active");
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(settled).toBe(false);
    stored.resolve();
    const { token } = await pending;
    expect(provider.validate(token).valid).toBe(true);
  });

  it("the next refresh uses the rotated refresh token", async () => {
    const provider = await start({ rotateRefreshTokens: true });
    const rotations: string[] = [];
    const auth = source(provider, { onRotate: (refreshToken) => void rotations.push(refreshToken) });
    const first = await auth.getToken();
    auth.invalidate(first.token);
    const second = await auth.getToken();
    expect(second.token).not.toBe(first.token);
    expect(rotations).toHaveLength(2);
    expect(provider.refreshTokenStatus(rotations[0]!)).toBe("rotated");
    expect(provider.refreshTokenStatus(rotations[1]!)).toBe("active");
    expect(provider.tokenRequestLog.map((entry) => entry.outcome)).toEqual(["ok", "ok"]);
  });

  it("without rotation (Google style) onRotate is never called and the same refresh token keeps working", async () => {
    const provider = await start({ rotateRefreshTokens: false });
    const refreshToken = provider.issueRefreshToken();
    const onRotate = vi.fn();
    const auth = source(provider, { refreshToken, onRotate });
    auth.invalidate((await auth.getToken()).token);
    await auth.getToken();
    expect(onRotate).not.toHaveBeenCalled();
    expect(provider.counters.tokenRequests).toBe(2);
    expect(provider.refreshTokenStatus(refreshToken)).toBe("active");
  });

  it("when onRotate fails the call fails, and the next call hands it the same token before using it", async () => {
    const provider = await start({ rotateRefreshTokens: true });
    const attempts: string[] = [];
    const auth = source(provider, {
      onRotate: (refreshToken) => {
        attempts.push(refreshToken);
        if (attempts.length === 1) throw new Error("the vault is read-only");
      },
    });
    const err = await failure(() => auth.getToken());
    expect(err.code).toBe("Unavailable");
    expect(err.message).toBe(
      "auth oauthRefreshToken: onRotate failed to store the rotated refresh token: the vault is read-only (the new refresh token is kept in memory and handed to onRotate again on the next call; fix what onRotate writes to)",
    );
    const { token } = await auth.getToken();
    expect(attempts).toHaveLength(2);
    expect(attempts[1]).toBe(attempts[0]);
    expect(provider.counters.tokenRequests).toBe(1);
    expect(provider.validate(token).valid).toBe(true);
  });

  it("client_secret_basic sends the client credentials in an Authorization header", async () => {
    const provider = await start();
    await source(provider, { clientAuth: "client_secret_basic" }).getToken();
    expect(provider.tokenRequestLog[0]?.clientAuth).toBe("client_secret_basic");
  });

  it("a public client sends its id alone", async () => {
    const provider = await start({ clients: [{ clientId: "public-cli" }] });
    const refreshToken = provider.issueRefreshToken({ clientId: "public-cli" });
    await source(provider, { clientId: "public-cli", clientSecret: undefined, refreshToken }).getToken();
    expect(provider.tokenRequestLog[0]?.clientAuth).toBe("none");
  });

  it("asks for the given scope, and an ungranted one is InvalidConfig", async () => {
    const provider = await start({ rotateRefreshTokens: false });
    const refreshToken = provider.issueRefreshToken({ scopes: ["a", "b"] });
    const { token } = await source(provider, { refreshToken, scope: ["a"] }).getToken();
    expect(provider.validate(token)).toMatchObject({ valid: true });
    const err = await failure(() => source(provider, { refreshToken, scope: "a c" }).getToken());
    expect(err.code).toBe("InvalidConfig");
    expect(err.message).toBe(
      `auth oauthRefreshToken: token endpoint ${provider.tokenUrl}: POST /token returned 400 Bad Request: invalid_scope: not granted: c (ask only for scopes the refresh token was granted)`,
    );
  });

  it("a revoked refresh token is invalid_grant: Unauthenticated with a hint to sign in again, not retried", async () => {
    const provider = await start();
    const refreshToken = provider.issueRefreshToken();
    provider.revoke(refreshToken);
    const err = await failure(() => source(provider, { refreshToken }).getToken());
    expect(err.code).toBe("Unauthenticated");
    expect(err.status).toBe(400);
    expect(err.message).toBe(
      `auth oauthRefreshToken: token endpoint ${provider.tokenUrl}: POST /token returned 400 Bad Request: invalid_grant: the refresh token was revoked (the refresh token was revoked, has expired or was replaced; sign in again to get a new refresh token)`,
    );
    expect(provider.counters.tokenRequests).toBe(1);
  });

  it("an expired refresh token is invalid_grant too", async () => {
    let clock = Date.now();
    const provider = await start({ refreshTokenLifetimeSec: 60, now: () => clock });
    const refreshToken = provider.issueRefreshToken();
    clock += 61_000;
    const err = await failure(() => source(provider, { refreshToken }).getToken());
    expect(err.code).toBe("Unauthenticated");
    expect(err.detail).toContain("invalid_grant: the refresh token has expired");
  });

  it("a wrong client secret is invalid_client: InvalidConfig, not retried", async () => {
    const provider = await start();
    const err = await failure(() => source(provider, { clientSecret: "not-the-secret" }).getToken());
    expect(err.code).toBe("InvalidConfig");
    expect(err.message).toBe(
      `auth oauthRefreshToken: token endpoint ${provider.tokenUrl}: POST /token returned 401 Unauthorized: invalid_client: client authentication failed (check clientId, clientSecret and clientAuth)`,
    );
    expect(provider.counters.tokenRequests).toBe(1);
  });

  it("transient 503s with Retry-After are retried, then the token is fetched", async () => {
    const provider = await start();
    const fault = provider.faults.add({
      path: "/token",
      times: 2,
      respond: { status: 503, headers: { "retry-after": "0" } },
    });
    const { token } = await source(provider).getToken();
    expect(provider.validate(token).valid).toBe(true);
    expect(fault.hits).toBe(2);
    expect(provider.counters.tokenRequests).toBe(1);
  });

  it("a connection reset is retried", async () => {
    const provider = await start();
    provider.faults.add({ path: "/token", reset: true });
    const { token } = await source(provider).getToken();
    expect(provider.validate(token).valid).toBe(true);
  });

  it("429 asking to wait longer than the retry maximum fails at once with RateLimited", async () => {
    const provider = await start();
    provider.faults.add({ path: "/token", respond: { status: 429, headers: { "retry-after": "3600" } } });
    const err = await failure(() => source(provider).getToken());
    expect(err.code).toBe("RateLimited");
    expect(err.retryAfterMs).toBe(3_600_000);
    expect(err.message).toBe(
      `auth oauthRefreshToken: token endpoint ${provider.tokenUrl}: the server asked to wait 3600 s, longer than the maximum 2 s (try again later or raise maxDelayMs)`,
    );
  });

  it("a refresh failure while the cached access token is still valid returns the cached token", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const provider = await start({ accessTokenLifetimeSec: 3600 });
    const refreshToken = provider.issueRefreshToken();
    const auth = source(provider, { refreshToken, onRotate: (next) => provider.revoke(next) });
    const first = await auth.getToken();
    vi.setSystemTime(Date.now() + 3_570_000);
    expect((await auth.getToken()).token).toBe(first.token);
    expect(provider.tokenRequestLog.map((entry) => entry.outcome)).toEqual(["ok", "invalid_grant"]);
  });

  it("an invalid configuration is refused before any request", async () => {
    const provider = await start();
    const cases: Array<[Partial<OAuthRefreshTokenOptions>, string]> = [
      [
        { tokenUrl: "http://oauth.example.com/token" },
        "the token URL may use http only on loopback (127.0.0.0/8, ::1, localhost), not 'http://oauth.example.com/token': secrets travel with every request (use the provider's https:// token endpoint)",
      ],
      [{ clientId: " " }, "clientId is missing or empty (pass your app registration's client id)"],
      [
        { refreshToken: "" },
        "refreshToken is missing or empty (pass the refresh token you got when signing in)",
      ],
      [
        { clientSecret: undefined, clientAuth: "client_secret_basic" },
        "clientAuth client_secret_basic needs a clientSecret (pass clientSecret, or leave clientAuth out for a public client)",
      ],
      [
        { onRotate: undefined as unknown as OAuthRefreshTokenOptions["onRotate"] },
        "onRotate is missing (pass a function that stores the new refresh token: providers that rotate refresh tokens invalidate the old one)",
      ],
    ];
    for (const [options, message] of cases) {
      const err = await failure(() => source(provider, options));
      expect(err.code).toBe("InvalidConfig");
      expect(err.message).toBe(`auth oauthRefreshToken: ${message}`);
    }
    expect(provider.counters.tokenRequests).toBe(0);
  });
});
