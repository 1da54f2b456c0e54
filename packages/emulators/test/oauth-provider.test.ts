import { createHash, randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import {
  defaultOAuthClient,
  type OAuthProvider,
  type OAuthProviderOptions,
  startOAuthProvider,
} from "../src/index.js";

const { clientId, clientSecret } = defaultOAuthClient;
const redirectUri = "http://127.0.0.1:9/callback";
const providers: OAuthProvider[] = [];

afterEach(async () => {
  await Promise.all(providers.splice(0).map((provider) => provider.close()));
});

async function start(options: OAuthProviderOptions = {}): Promise<OAuthProvider> {
  const provider = await startOAuthProvider(options);
  providers.push(provider);
  return provider;
}

function pkcePair(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString("base64url");
  return { verifier, challenge: createHash("sha256").update(verifier).digest("base64url") };
}

function authorizeUrl(provider: OAuthProvider, params: Record<string, string>): string {
  const url = new URL(provider.authorizeUrl);
  const all = {
    response_type: "code",
    client_id: clientId,
    redirect_uri: redirectUri,
    scope: "files.rw offline",
    ...params,
  };
  for (const [name, value] of Object.entries(all)) url.searchParams.set(name, value);
  return url.href;
}

/** Follows the authorize endpoint's redirect without leaving the test; returns the callback's query. */
async function authorize(
  provider: OAuthProvider,
  params: Record<string, string> = {},
): Promise<URLSearchParams> {
  const response = await fetch(authorizeUrl(provider, params), { redirect: "manual" });
  expect(response.status).toBe(302);
  const location = new URL(response.headers.get("location")!);
  expect(`${location.origin}${location.pathname}`).toBe(redirectUri);
  return location.searchParams;
}

async function token(
  provider: OAuthProvider,
  form: Record<string, string>,
  auth: "post" | "basic" | "none" = "post",
): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const headers: Record<string, string> = { "content-type": "application/x-www-form-urlencoded" };
  const fields = { ...form };
  if (auth === "post") Object.assign(fields, { client_id: clientId, client_secret: clientSecret });
  if (auth === "basic")
    headers.authorization = `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString("base64")}`;
  if (auth === "none") Object.assign(fields, { client_id: clientId });
  const response = await fetch(provider.tokenUrl, {
    method: "POST",
    headers,
    body: new URLSearchParams(fields),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : {}, headers: response.headers };
}

async function codeFor(provider: OAuthProvider, params: Record<string, string> = {}): Promise<string> {
  return (await authorize(provider, params)).get("code")!;
}

describe("authorize endpoint", () => {
  it("autoApprove redirects straight back with a code and the state echoed", async () => {
    const provider = await start({ autoApprove: true });
    const query = await authorize(provider, { state: "st-123 with space" });
    expect(query.get("code")).toMatch(/^code_/);
    expect(query.get("state")).toBe("st-123 with space");
    expect(provider.counters.authorizeRequests).toBe(1);
  });

  it("without autoApprove it shows a consent page with an Approve button carrying the request", async () => {
    const provider = await start();
    const response = await fetch(authorizeUrl(provider, { state: "s1" }));
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/html; charset=utf-8");
    const html = await response.text();
    expect(html).toContain('<button type="submit" name="decision" value="approve">Approve</button>');
    expect(html).toContain('<form method="post" action="/authorize">');
    expect(html).toContain('<input type="hidden" name="state" value="s1">');
  });

  it("approving the consent form redirects back with a code and the state", async () => {
    const provider = await start();
    const form = new URLSearchParams({
      response_type: "code",
      client_id: clientId,
      redirect_uri: redirectUri,
      state: "s2",
      decision: "approve",
    });
    const response = await fetch(provider.authorizeUrl, { method: "POST", body: form, redirect: "manual" });
    expect(response.status).toBe(302);
    const query = new URL(response.headers.get("location")!).searchParams;
    expect(query.get("state")).toBe("s2");
    expect(
      (
        await token(provider, {
          grant_type: "authorization_code",
          code: query.get("code")!,
          redirect_uri: redirectUri,
        })
      ).status,
    ).toBe(200);
  });

  it("denying the consent form redirects back with access_denied and the state", async () => {
    const provider = await start();
    const form = new URLSearchParams({
      response_type: "code",
      client_id: clientId,
      redirect_uri: redirectUri,
      state: "s3",
      decision: "deny",
    });
    const response = await fetch(provider.authorizeUrl, { method: "POST", body: form, redirect: "manual" });
    const query = new URL(response.headers.get("location")!).searchParams;
    expect(query.get("error")).toBe("access_denied");
    expect(query.get("state")).toBe("s3");
    expect(query.get("code")).toBeNull();
  });

  it("an unknown client is shown an error page, never redirected to", async () => {
    const provider = await start({ autoApprove: true });
    const response = await fetch(authorizeUrl(provider, { client_id: "nobody" }), { redirect: "manual" });
    expect(response.status).toBe(400);
    expect(response.headers.get("location")).toBeNull();
    expect(await response.text()).toContain("unknown client_id");
  });

  it("a redirect_uri that is not registered is shown an error page", async () => {
    const provider = await start({
      autoApprove: true,
      clients: [{ clientId, clientSecret, redirectUris: ["http://127.0.0.1:9/registered"] }],
    });
    const response = await fetch(authorizeUrl(provider, {}), { redirect: "manual" });
    expect(response.status).toBe(400);
    expect(await response.text()).toContain("redirect_uri is not registered");
  });

  it("code_challenge_method plain is refused with invalid_request, state echoed", async () => {
    const provider = await start({ autoApprove: true });
    const query = await authorize(provider, {
      code_challenge: pkcePair().challenge,
      code_challenge_method: "plain",
      state: "s4",
    });
    expect(query.get("error")).toBe("invalid_request");
    expect(query.get("error_description")).toBe("code_challenge_method must be S256");
    expect(query.get("state")).toBe("s4");
  });

  it("requirePkce refuses a request without code_challenge", async () => {
    const provider = await start({ autoApprove: true, requirePkce: true });
    const query = await authorize(provider);
    expect(query.get("error")).toBe("invalid_request");
    expect(query.get("error_description")).toBe("PKCE is required: send code_challenge");
  });
});

describe("token endpoint: authorization_code", () => {
  it("exchanges a code for an access and a refresh token that validate", async () => {
    const provider = await start({ autoApprove: true, accessTokenLifetimeSec: 120 });
    const { status, body, headers } = await token(provider, {
      grant_type: "authorization_code",
      code: await codeFor(provider),
      redirect_uri: redirectUri,
    });
    expect(status).toBe(200);
    expect(headers.get("cache-control")).toBe("no-store");
    expect(body).toMatchObject({ token_type: "Bearer", expires_in: 120, scope: "files.rw offline" });
    expect(provider.validate(body.access_token as string)).toMatchObject({
      valid: true,
      clientId,
      subject: "user-1",
      scopes: ["files.rw", "offline"],
    });
    expect(provider.refreshTokenStatus(body.refresh_token as string)).toBe("active");
  });

  it("PKCE: the right code_verifier is accepted", async () => {
    const provider = await start({ autoApprove: true });
    const { verifier, challenge } = pkcePair();
    const code = await codeFor(provider, { code_challenge: challenge, code_challenge_method: "S256" });
    const result = await token(provider, {
      grant_type: "authorization_code",
      code,
      redirect_uri: redirectUri,
      code_verifier: verifier,
    });
    expect(result.status).toBe(200);
  });

  it("PKCE: a code_verifier that does not match the challenge is refused with invalid_grant", async () => {
    const provider = await start({ autoApprove: true });
    const code = await codeFor(provider, {
      code_challenge: pkcePair().challenge,
      code_challenge_method: "S256",
    });
    const result = await token(provider, {
      grant_type: "authorization_code",
      code,
      redirect_uri: redirectUri,
      code_verifier: pkcePair().verifier,
    });
    expect(result.status).toBe(400);
    expect(result.body).toEqual({
      error: "invalid_grant",
      error_description: "code_verifier does not match the code_challenge",
    });
  });

  it("PKCE: a missing code_verifier is refused with invalid_grant", async () => {
    const provider = await start({ autoApprove: true });
    const code = await codeFor(provider, {
      code_challenge: pkcePair().challenge,
      code_challenge_method: "S256",
    });
    const result = await token(provider, {
      grant_type: "authorization_code",
      code,
      redirect_uri: redirectUri,
    });
    expect(result.body).toEqual({ error: "invalid_grant", error_description: "code_verifier is missing" });
  });

  it("a reused code is invalid_grant and revokes the tokens it issued", async () => {
    const provider = await start({ autoApprove: true });
    const code = await codeFor(provider);
    const first = await token(provider, {
      grant_type: "authorization_code",
      code,
      redirect_uri: redirectUri,
    });
    const second = await token(provider, {
      grant_type: "authorization_code",
      code,
      redirect_uri: redirectUri,
    });
    expect(second.status).toBe(400);
    expect(second.body).toEqual({
      error: "invalid_grant",
      error_description: "the authorization code was already used",
    });
    expect(provider.validate(first.body.access_token as string)).toEqual({
      valid: false,
      reason: "revoked",
      scopes: [],
    });
    expect(provider.refreshTokenStatus(first.body.refresh_token as string)).toBe("revoked");
  });

  it("an expired code is invalid_grant", async () => {
    let clock = 1_000_000;
    const provider = await start({ autoApprove: true, codeLifetimeSec: 60, now: () => clock });
    const code = await codeFor(provider);
    clock += 61_000;
    const result = await token(provider, {
      grant_type: "authorization_code",
      code,
      redirect_uri: redirectUri,
    });
    expect(result.body).toEqual({
      error: "invalid_grant",
      error_description: "the authorization code has expired",
    });
  });

  it("a redirect_uri different from the authorization request's is invalid_grant", async () => {
    const provider = await start({ autoApprove: true });
    const code = await codeFor(provider);
    const result = await token(provider, {
      grant_type: "authorization_code",
      code,
      redirect_uri: "http://127.0.0.1:9/other",
    });
    expect(result.body).toEqual({
      error: "invalid_grant",
      error_description: "redirect_uri does not match the authorization request",
    });
  });
});

describe("token endpoint: client authentication", () => {
  it("accepts client_secret_basic and client_secret_post and records which one was used", async () => {
    const provider = await start();
    const refreshToken = provider.issueRefreshToken();
    expect(
      (await token(provider, { grant_type: "refresh_token", refresh_token: refreshToken }, "basic")).status,
    ).toBe(200);
    const rotated = provider.tokenRequestLog[0];
    expect(rotated).toEqual({
      grantType: "refresh_token",
      clientId,
      clientAuth: "client_secret_basic",
      outcome: "ok",
      issuedRefreshToken: true,
    });
    const second = provider.issueRefreshToken();
    expect(
      (await token(provider, { grant_type: "refresh_token", refresh_token: second }, "post")).status,
    ).toBe(200);
    expect(provider.tokenRequestLog[1]?.clientAuth).toBe("client_secret_post");
  });

  it("a wrong secret is 401 invalid_client, with a Basic challenge when Basic was used", async () => {
    const provider = await start();
    const headers = {
      authorization: `Basic ${Buffer.from(`${clientId}:wrong`).toString("base64")}`,
      "content-type": "application/x-www-form-urlencoded",
    };
    const response = await fetch(provider.tokenUrl, {
      method: "POST",
      headers,
      body: new URLSearchParams({ grant_type: "refresh_token", refresh_token: provider.issueRefreshToken() }),
    });
    expect(response.status).toBe(401);
    expect(response.headers.get("www-authenticate")).toBe('Basic realm="oauth-emulator"');
    expect(await response.json()).toEqual({
      error: "invalid_client",
      error_description: "client authentication failed",
    });
  });

  it("a confidential client that sends no secret is 401 invalid_client", async () => {
    const provider = await start();
    const result = await token(
      provider,
      { grant_type: "refresh_token", refresh_token: provider.issueRefreshToken() },
      "none",
    );
    expect(result.status).toBe(401);
    expect(result.body).toEqual({
      error: "invalid_client",
      error_description: "client authentication failed",
    });
  });

  it("Basic and client_secret together is invalid_request (RFC 6749 §2.3)", async () => {
    const provider = await start();
    const response = await fetch(provider.tokenUrl, {
      method: "POST",
      headers: { authorization: `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString("base64")}` },
      body: new URLSearchParams({
        grant_type: "refresh_token",
        refresh_token: "x",
        client_secret: clientSecret,
      }),
    });
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({
      error: "invalid_request",
      error_description: "the client authenticated with both HTTP Basic and client_secret",
    });
  });

  it("a public client authenticates with its id alone", async () => {
    const provider = await start({ clients: [{ clientId: "cli" }] });
    const refreshToken = provider.issueRefreshToken();
    const response = await fetch(provider.tokenUrl, {
      method: "POST",
      body: new URLSearchParams({
        grant_type: "refresh_token",
        refresh_token: refreshToken,
        client_id: "cli",
      }),
    });
    expect(response.status).toBe(200);
    expect(provider.tokenRequestLog[0]?.clientAuth).toBe("none");
  });
});

describe("token endpoint: refresh_token", () => {
  it("rotation on (Microsoft style): a new refresh token each time, and the old one is invalid_grant", async () => {
    const provider = await start({ rotateRefreshTokens: true });
    const first = provider.issueRefreshToken();
    const result = await token(provider, { grant_type: "refresh_token", refresh_token: first });
    expect(result.status).toBe(200);
    const second = result.body.refresh_token as string;
    expect(second).toMatch(/^rt_/);
    expect(second).not.toBe(first);
    expect(provider.refreshTokenStatus(first)).toBe("rotated");
    const reuse = await token(provider, { grant_type: "refresh_token", refresh_token: first });
    expect(reuse.status).toBe(400);
    expect(reuse.body).toEqual({
      error: "invalid_grant",
      error_description: "the refresh token was already used and replaced",
    });
    expect((await token(provider, { grant_type: "refresh_token", refresh_token: second })).status).toBe(200);
  });

  it("rotation off (Google style): no refresh_token in the response, and the same one keeps working", async () => {
    const provider = await start({ rotateRefreshTokens: false });
    const refreshToken = provider.issueRefreshToken();
    for (let i = 0; i < 2; i++) {
      const result = await token(provider, { grant_type: "refresh_token", refresh_token: refreshToken });
      expect(result.status).toBe(200);
      expect(result.body).not.toHaveProperty("refresh_token");
    }
    expect(provider.refreshTokenStatus(refreshToken)).toBe("active");
    expect(provider.tokenRequestLog.map((entry) => entry.issuedRefreshToken)).toEqual([false, false]);
  });

  it("a revoked refresh token is invalid_grant, and its grant's access tokens stop validating", async () => {
    const provider = await start();
    const refreshToken = provider.issueRefreshToken();
    const { body } = await token(provider, { grant_type: "refresh_token", refresh_token: refreshToken });
    const current = body.refresh_token as string;
    const revoke = await fetch(provider.revokeUrl, {
      method: "POST",
      body: new URLSearchParams({
        token: current,
        token_type_hint: "refresh_token",
        client_id: clientId,
        client_secret: clientSecret,
      }),
    });
    expect(revoke.status).toBe(200);
    expect(provider.counters.revokeRequests).toBe(1);
    const result = await token(provider, { grant_type: "refresh_token", refresh_token: current });
    expect(result.status).toBe(400);
    expect(result.body).toEqual({
      error: "invalid_grant",
      error_description: "the refresh token was revoked",
    });
    expect(provider.validate(body.access_token as string)).toEqual({
      valid: false,
      reason: "revoked",
      scopes: [],
    });
  });

  it("an expired refresh token is invalid_grant", async () => {
    let clock = 5_000_000;
    const provider = await start({ refreshTokenLifetimeSec: 3600, now: () => clock });
    const refreshToken = provider.issueRefreshToken();
    clock += 3_600_000;
    const result = await token(provider, { grant_type: "refresh_token", refresh_token: refreshToken });
    expect(result.body).toEqual({
      error: "invalid_grant",
      error_description: "the refresh token has expired",
    });
  });

  it("an unknown refresh token is invalid_grant", async () => {
    const provider = await start();
    const result = await token(provider, { grant_type: "refresh_token", refresh_token: "rt_nope" });
    expect(result.body).toEqual({
      error: "invalid_grant",
      error_description: "the refresh token is unknown",
    });
  });

  it("a refresh may narrow the scope but not widen it", async () => {
    const provider = await start();
    const refreshToken = provider.issueRefreshToken({ scopes: ["a", "b"] });
    const narrow = await token(provider, {
      grant_type: "refresh_token",
      refresh_token: refreshToken,
      scope: "a",
    });
    expect(narrow.status).toBe(200);
    const wide = await token(provider, {
      grant_type: "refresh_token",
      refresh_token: narrow.body.refresh_token as string,
      scope: "a c",
    });
    expect(wide.body).toEqual({ error: "invalid_scope", error_description: "not granted: c" });
  });

  it("the access-token lifetime is configurable, and a token stops validating when it ends", async () => {
    let clock = 10_000_000;
    const provider = await start({ accessTokenLifetimeSec: 90, now: () => clock });
    const result = await token(provider, {
      grant_type: "refresh_token",
      refresh_token: provider.issueRefreshToken(),
    });
    expect(result.body.expires_in).toBe(90);
    const accessToken = result.body.access_token as string;
    expect(provider.validate(accessToken).valid).toBe(true);
    clock += 90_000;
    expect(provider.validate(accessToken)).toEqual({ valid: false, reason: "expired", scopes: [] });
  });

  it("an unsupported grant_type is unsupported_grant_type", async () => {
    const provider = await start();
    const result = await token(provider, { grant_type: "password" });
    expect(result.body).toEqual({
      error: "unsupported_grant_type",
      error_description: "grant_type 'password' is not supported",
    });
    expect(provider.tokenRequestLog[0]?.outcome).toBe("unsupported_grant_type");
  });

  it("counts every token request it handles", async () => {
    const provider = await start({ rotateRefreshTokens: false });
    const refreshToken = provider.issueRefreshToken();
    for (let i = 0; i < 3; i++)
      await token(provider, { grant_type: "refresh_token", refresh_token: refreshToken });
    expect(provider.counters.tokenRequests).toBe(3);
  });
});

describe("revoke endpoint and inspection", () => {
  it("revoking an unknown token succeeds (RFC 7009 §2.2)", async () => {
    const provider = await start();
    const response = await fetch(provider.revokeUrl, {
      method: "POST",
      body: new URLSearchParams({ token: "whatever", client_id: clientId, client_secret: clientSecret }),
    });
    expect(response.status).toBe(200);
  });

  it("revoking needs client authentication", async () => {
    const provider = await start();
    const response = await fetch(provider.revokeUrl, {
      method: "POST",
      body: new URLSearchParams({ token: "x" }),
    });
    expect(response.status).toBe(401);
    expect(await response.json()).toEqual({ error: "invalid_client", error_description: "unknown client" });
  });

  it("revoking an access token leaves its refresh token working", async () => {
    const provider = await start();
    const refreshToken = provider.issueRefreshToken();
    const accessToken = provider.issueAccessToken();
    provider.revoke(accessToken);
    expect(provider.validate(accessToken)).toEqual({ valid: false, reason: "revoked", scopes: [] });
    expect(provider.refreshTokenStatus(refreshToken)).toBe("active");
  });

  it("validate says unknown for a token it never issued", async () => {
    const provider = await start();
    expect(provider.validate("at_never")).toEqual({ valid: false, reason: "unknown", scopes: [] });
  });

  it("faults apply to the provider's endpoints and the endpoint does not count faulted requests", async () => {
    const provider = await start();
    provider.faults.add({ path: "/token", respond: { status: 503, headers: { "retry-after": "1" } } });
    const first = await fetch(provider.tokenUrl, { method: "POST", body: "grant_type=refresh_token" });
    expect(first.status).toBe(503);
    expect(first.headers.get("retry-after")).toBe("1");
    expect(provider.counters.tokenRequests).toBe(0);
  });
});
