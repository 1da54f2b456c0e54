import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createFaults, type Faults } from "./faults.js";
import { HttpError, readForm, requestUrl, sendHtml, sendJson, startHttpServer } from "./http-server.js";

/** An OAuth client registered with the emulated provider. */
export interface OAuthClient {
  clientId: string;
  /** A confidential client authenticates with it; a public client (no secret) sends only its id. */
  clientSecret?: string;
  /** When given, `redirect_uri` must be one of these; otherwise any absolute URL is accepted. */
  redirectUris?: readonly string[];
}

export interface OAuthProviderOptions {
  /** Default: one confidential client, {@link defaultOAuthClient}. */
  clients?: readonly OAuthClient[];
  /**
   * Issue a new refresh token on every refresh and make the old one unusable, as the Microsoft
   * identity platform does (default `true`); `false` keeps the refresh token and leaves
   * `refresh_token` out of refresh responses, as Google does.
   */
  rotateRefreshTokens?: boolean;
  /** `expires_in` of access tokens, in seconds. Default 3600. */
  accessTokenLifetimeSec?: number;
  /** How long a refresh token stays usable, in seconds. Default: until revoked. */
  refreshTokenLifetimeSec?: number;
  /** How long an authorization code stays usable, in seconds. Default 600 (RFC 6749 §4.1.2: "10 minutes"). */
  codeLifetimeSec?: number;
  /** Redirect back with a code at once instead of showing the consent page. Default false. */
  autoApprove?: boolean;
  /** Refuse authorization requests without a PKCE `code_challenge` (S256). Default false. */
  requirePkce?: boolean;
  /** The user every grant belongs to. Default `"user-1"`. */
  subject?: string;
  /** The clock, in milliseconds since the epoch; tests pass one they can move. Default `Date.now`. */
  now?: () => number;
  /** Share a fault set with other emulators; default: a new one, at `provider.faults`. */
  faults?: Faults;
}

/** The client used when {@link OAuthProviderOptions.clients} is not given. */
export const defaultOAuthClient: Readonly<Required<Pick<OAuthClient, "clientId" | "clientSecret">>> =
  Object.freeze({
    clientId: "stowage-test-client",
    clientSecret: "stowage-test-client-secret",
  });

/** How a token request authenticated its client (RFC 6749 §2.3.1, RFC 7591 names). */
export type ClientAuthMethod = "client_secret_basic" | "client_secret_post" | "none";

/** One request the token endpoint answered. */
export interface TokenRequestRecord {
  grantType: string;
  clientId?: string;
  clientAuth?: ClientAuthMethod;
  /** `"ok"`, or the OAuth error code sent back. */
  outcome: string;
  /** `refresh_token` was in a successful response. */
  issuedRefreshToken: boolean;
}

export type RefreshTokenStatus = "active" | "rotated" | "revoked" | "expired" | "unknown";

/** What {@link OAuthProvider.validate} says about a bearer token. */
export type TokenValidation =
  | { valid: true; clientId: string; subject: string; scopes: readonly string[]; expiresAt: Date }
  | { valid: false; reason: "unknown" | "expired" | "revoked"; scopes: readonly string[] };

/** A grant made without the browser flow, for tests that start from a refresh or access token. */
export interface GrantInput {
  /** Default: the first registered client. */
  clientId?: string;
  scopes?: readonly string[];
  /** Default: the provider's `subject`. */
  subject?: string;
}

export interface OAuthProviderCounters {
  authorizeRequests: number;
  tokenRequests: number;
  revokeRequests: number;
}

/** A running OAuth 2.0 authorization server emulator. */
export interface OAuthProvider {
  /** The server's base URL, `http://127.0.0.1:<port>`. */
  readonly url: string;
  /** `GET` shows the consent page (or redirects back at once with `autoApprove`); `POST` is the consent form. */
  readonly authorizeUrl: string;
  /** The token endpoint: `authorization_code` and `refresh_token` grants. */
  readonly tokenUrl: string;
  /** The RFC 7009 revocation endpoint. */
  readonly revokeUrl: string;
  /** Fault injection for every endpoint. */
  readonly faults: Faults;
  /** Requests each endpoint has handled (faulted requests that never reached it are not counted). */
  readonly counters: Readonly<OAuthProviderCounters>;
  /** Every request the token endpoint answered, in order. */
  readonly tokenRequestLog: readonly TokenRequestRecord[];
  /** Checks a bearer token, as a resource server (the Graph or Drive emulator) does. */
  validate(accessToken: string): TokenValidation;
  /** Makes a grant and returns its refresh token, skipping the browser flow. */
  issueRefreshToken(grant?: GrantInput): string;
  /** Makes a grant and returns an access token for it, skipping the browser flow. */
  issueAccessToken(grant?: GrantInput): string;
  refreshTokenStatus(refreshToken: string): RefreshTokenStatus;
  /** Revokes a token as the revocation endpoint does (a refresh token takes its whole grant with it). */
  revoke(token: string): void;
  close(): Promise<void>;
}

interface Grant {
  clientId: string;
  subject: string;
  scopes: readonly string[];
  revoked: boolean;
}

interface CodeRecord {
  grant: Grant;
  redirectUri?: string;
  codeChallenge?: string;
  expiresAt: number;
  used: boolean;
}

interface RefreshRecord {
  grant: Grant;
  expiresAt?: number;
  rotated: boolean;
}

interface AccessRecord {
  grant: Grant;
  expiresAt: number;
  revoked: boolean;
}

/** A failure the token or revoke endpoint reports as RFC 6749 §5.2 JSON. */
class OAuthFailure extends HttpError {
  readonly code: string;

  constructor(code: string, description: string, status = 400, headers: Record<string, string> = {}) {
    super(status, { error: code, error_description: description }, { ...noStore, ...headers });
    this.code = code;
  }
}

// RFC 6749 §5.1: token responses and their errors must not be cached.
const noStore = { "cache-control": "no-store", pragma: "no-cache" };

const PKCE_VERIFIER = /^[A-Za-z0-9._~-]{43,128}$/;

/**
 * Starts an OAuth 2.0 authorization server on 127.0.0.1 (RFC 6749 authorization code and refresh
 * token grants, PKCE S256 per RFC 7636, revocation per RFC 7009), strict where real providers are:
 * codes are single use and short-lived, a reused code revokes what it issued, a rotated refresh
 * token is dead, and every refusal is the `invalid_grant` / `invalid_client` / … a real server sends.
 *
 * @example
 * const provider = await startOAuthProvider({ rotateRefreshTokens: true, accessTokenLifetimeSec: 60 });
 * const refreshToken = provider.issueRefreshToken({ scopes: ["Files.ReadWrite"] });
 * const source = oauthRefreshToken({ tokenUrl: provider.tokenUrl, clientId: defaultOAuthClient.clientId,
 *   clientSecret: defaultOAuthClient.clientSecret, refreshToken, onRotate: save });
 * expect(provider.counters.tokenRequests).toBe(0);
 * await provider.close();
 */
export async function startOAuthProvider(options: OAuthProviderOptions = {}): Promise<OAuthProvider> {
  const clients = new Map(
    (options.clients ?? [defaultOAuthClient]).map((client) => [client.clientId, client]),
  );
  if (clients.size === 0) throw new TypeError("startOAuthProvider: give at least one client");
  const now = options.now ?? Date.now;
  const rotate = options.rotateRefreshTokens ?? true;
  const accessLifetimeMs = (options.accessTokenLifetimeSec ?? 3600) * 1000;
  const refreshLifetimeMs =
    options.refreshTokenLifetimeSec === undefined ? undefined : options.refreshTokenLifetimeSec * 1000;
  const codeLifetimeMs = (options.codeLifetimeSec ?? 600) * 1000;
  const defaultSubject = options.subject ?? "user-1";
  const faults = options.faults ?? createFaults();

  const codes = new Map<string, CodeRecord>();
  const refreshTokens = new Map<string, RefreshRecord>();
  const accessTokens = new Map<string, AccessRecord>();
  const counters: OAuthProviderCounters = { authorizeRequests: 0, tokenRequests: 0, revokeRequests: 0 };
  const tokenRequestLog: TokenRequestRecord[] = [];

  const newGrant = (input: GrantInput = {}): Grant => {
    const clientId = input.clientId ?? clients.keys().next().value!;
    if (!clients.has(clientId)) throw new TypeError(`unknown client '${clientId}'`);
    return {
      clientId,
      subject: input.subject ?? defaultSubject,
      scopes: [...(input.scopes ?? [])],
      revoked: false,
    };
  };

  const issueAccess = (grant: Grant): string => {
    const token = `at_${randomBytes(24).toString("base64url")}`;
    accessTokens.set(token, { grant, expiresAt: now() + accessLifetimeMs, revoked: false });
    return token;
  };

  const issueRefresh = (grant: Grant): string => {
    const token = `rt_${randomBytes(32).toString("base64url")}`;
    refreshTokens.set(token, {
      grant,
      expiresAt: refreshLifetimeMs === undefined ? undefined : now() + refreshLifetimeMs,
      rotated: false,
    });
    return token;
  };

  const refreshStatus = (record: RefreshRecord | undefined): RefreshTokenStatus => {
    if (!record) return "unknown";
    if (record.grant.revoked) return "revoked";
    if (record.rotated) return "rotated";
    if (record.expiresAt !== undefined && now() >= record.expiresAt) return "expired";
    return "active";
  };

  const revoke = (token: string): void => {
    const refresh = refreshTokens.get(token);
    // RFC 7009 §2.1: revoking a refresh token should also invalidate the access tokens of its grant.
    if (refresh) refresh.grant.revoked = true;
    const access = accessTokens.get(token);
    if (access) access.revoked = true;
  };

  const tokenResponse = (grant: Grant, refreshToken: string | undefined) => ({
    access_token: issueAccess(grant),
    token_type: "Bearer",
    expires_in: Math.round(accessLifetimeMs / 1000),
    scope: grant.scopes.join(" "),
    ...(refreshToken === undefined ? {} : { refresh_token: refreshToken }),
  });

  /** RFC 6749 §2.3: the client authenticates with HTTP Basic or with form fields, never both. */
  const authenticateClient = (req: IncomingMessage, form: URLSearchParams) => {
    const header = req.headers.authorization;
    const basic = header?.match(/^Basic\s+(\S+)$/i);
    const formSecret = form.get("client_secret");
    let clientId: string | undefined;
    let secret: string | undefined;
    let method: ClientAuthMethod;
    if (basic) {
      if (formSecret !== null) {
        throw new OAuthFailure(
          "invalid_request",
          "the client authenticated with both HTTP Basic and client_secret",
        );
      }
      const decoded = Buffer.from(basic[1]!, "base64").toString("utf8");
      const colon = decoded.indexOf(":");
      if (colon < 0)
        throw new OAuthFailure("invalid_client", "malformed HTTP Basic credentials", 401, basicChallenge);
      // RFC 6749 §2.3.1: the id and secret are form-encoded before they are joined.
      clientId = decodeFormComponent(decoded.slice(0, colon));
      secret = decodeFormComponent(decoded.slice(colon + 1));
      method = "client_secret_basic";
    } else {
      clientId = form.get("client_id") ?? undefined;
      secret = formSecret ?? undefined;
      method = secret === undefined ? "none" : "client_secret_post";
    }
    const client = clientId === undefined ? undefined : clients.get(clientId);
    const challenge = basic ? basicChallenge : {};
    if (!client) throw new OAuthFailure("invalid_client", "unknown client", 401, challenge);
    if (client.clientSecret === undefined ? secret !== undefined : !sameSecret(secret, client.clientSecret)) {
      throw new OAuthFailure("invalid_client", "client authentication failed", 401, challenge);
    }
    return { client, method };
  };

  const exchangeCode = (form: URLSearchParams, client: OAuthClient) => {
    const code = required(form, "code");
    const record = codes.get(code);
    if (!record || record.grant.clientId !== client.clientId) {
      throw new OAuthFailure("invalid_grant", "the authorization code is unknown");
    }
    if (record.used) {
      // RFC 6749 §4.1.2: a code used twice must be refused, and what it issued should be revoked.
      record.grant.revoked = true;
      throw new OAuthFailure("invalid_grant", "the authorization code was already used");
    }
    record.used = true;
    if (now() >= record.expiresAt)
      throw new OAuthFailure("invalid_grant", "the authorization code has expired");
    if (record.redirectUri !== undefined && form.get("redirect_uri") !== record.redirectUri) {
      throw new OAuthFailure("invalid_grant", "redirect_uri does not match the authorization request");
    }
    if (record.codeChallenge !== undefined) {
      const verifier = form.get("code_verifier");
      if (verifier === null) throw new OAuthFailure("invalid_grant", "code_verifier is missing");
      if (!PKCE_VERIFIER.test(verifier) || s256(verifier) !== record.codeChallenge) {
        throw new OAuthFailure("invalid_grant", "code_verifier does not match the code_challenge");
      }
    }
    return tokenResponse(record.grant, issueRefresh(record.grant));
  };

  const refresh = (form: URLSearchParams, client: OAuthClient) => {
    const token = required(form, "refresh_token");
    const record = refreshTokens.get(token);
    if (!record || record.grant.clientId !== client.clientId) {
      throw new OAuthFailure("invalid_grant", "the refresh token is unknown");
    }
    const status = refreshStatus(record);
    if (status !== "active") {
      const why = {
        revoked: "was revoked",
        rotated: "was already used and replaced",
        expired: "has expired",
      };
      throw new OAuthFailure("invalid_grant", `the refresh token ${why[status as keyof typeof why]}`);
    }
    const scope = form.get("scope");
    if (scope !== null) {
      const extra = scope.split(" ").filter((s) => s !== "" && !record.grant.scopes.includes(s));
      // RFC 6749 §6: a refresh may narrow the scope, never widen it.
      if (extra.length > 0) throw new OAuthFailure("invalid_scope", `not granted: ${extra.join(" ")}`);
    }
    if (!rotate) return tokenResponse(record.grant, undefined);
    record.rotated = true;
    return tokenResponse(record.grant, issueRefresh(record.grant));
  };

  const tokenEndpoint = async (req: IncomingMessage, res: ServerResponse) => {
    counters.tokenRequests++;
    const entry: TokenRequestRecord = { grantType: "", outcome: "ok", issuedRefreshToken: false };
    tokenRequestLog.push(entry);
    try {
      if (req.method !== "POST")
        throw new OAuthFailure("invalid_request", "the token endpoint takes POST", 405);
      const form = await readForm(req);
      entry.grantType = form.get("grant_type") ?? "";
      const { client, method } = authenticateClient(req, form);
      entry.clientId = client.clientId;
      entry.clientAuth = method;
      let body: ReturnType<typeof tokenResponse>;
      if (entry.grantType === "authorization_code") body = exchangeCode(form, client);
      else if (entry.grantType === "refresh_token") body = refresh(form, client);
      else
        throw new OAuthFailure("unsupported_grant_type", `grant_type '${entry.grantType}' is not supported`);
      entry.issuedRefreshToken = "refresh_token" in body;
      sendJson(res, 200, body, noStore);
    } catch (err) {
      entry.outcome = err instanceof OAuthFailure ? err.code : "error";
      throw err;
    }
  };

  const revokeEndpoint = async (req: IncomingMessage, res: ServerResponse) => {
    counters.revokeRequests++;
    if (req.method !== "POST")
      throw new OAuthFailure("invalid_request", "the revocation endpoint takes POST", 405);
    const form = await readForm(req);
    const { client } = authenticateClient(req, form);
    const token = required(form, "token");
    const owner = (refreshTokens.get(token) ?? accessTokens.get(token))?.grant.clientId;
    // RFC 7009 §2.1: the token must have been issued to the client asking; an unknown token is a success.
    if (owner !== undefined && owner !== client.clientId) {
      throw new OAuthFailure("unauthorized_client", "the token was issued to another client");
    }
    revoke(token);
    res.writeHead(200, noStore);
    res.end();
  };

  const authorizeEndpoint = async (req: IncomingMessage, res: ServerResponse) => {
    counters.authorizeRequests++;
    const consent = req.method === "POST";
    const params = consent ? await readForm(req) : requestUrl(req).searchParams;
    const request = checkAuthorizeRequest(params, clients, options.requirePkce ?? false);
    if ("page" in request) return sendHtml(res, 400, errorPage(request.page));
    const back = new URL(request.redirectUri);
    const state = params.get("state");
    if ("error" in request) {
      back.searchParams.set("error", request.error);
      back.searchParams.set("error_description", request.description);
    } else if (consent || options.autoApprove) {
      if (consent && params.get("decision") !== "approve") {
        back.searchParams.set("error", "access_denied");
        back.searchParams.set("error_description", "the user denied the request");
      } else {
        const code = `code_${randomBytes(24).toString("base64url")}`;
        codes.set(code, {
          grant: newGrant({ clientId: request.clientId, scopes: request.scopes }),
          redirectUri: params.get("redirect_uri") ?? undefined,
          codeChallenge: params.get("code_challenge") ?? undefined,
          expiresAt: now() + codeLifetimeMs,
          used: false,
        });
        back.searchParams.set("code", code);
      }
    } else {
      return sendHtml(res, 200, consentPage(params, request.clientId, request.scopes));
    }
    if (state !== null) back.searchParams.set("state", state);
    res.writeHead(302, { location: back.href, ...noStore });
    res.end();
  };

  const server = await startHttpServer(
    async (req, res) => {
      const path = requestUrl(req).pathname;
      if (path === "/authorize") return authorizeEndpoint(req, res);
      if (path === "/token") return tokenEndpoint(req, res);
      if (path === "/revoke") return revokeEndpoint(req, res);
      throw new HttpError(404, { error: "not_found", error_description: `no endpoint at ${path}` });
    },
    { faults },
  );

  return {
    url: server.url,
    authorizeUrl: `${server.url}/authorize`,
    tokenUrl: `${server.url}/token`,
    revokeUrl: `${server.url}/revoke`,
    faults,
    counters,
    tokenRequestLog,
    validate(accessToken) {
      const record = accessTokens.get(accessToken);
      if (!record) return { valid: false, reason: "unknown", scopes: [] };
      if (record.revoked || record.grant.revoked) return { valid: false, reason: "revoked", scopes: [] };
      if (now() >= record.expiresAt) return { valid: false, reason: "expired", scopes: [] };
      const { clientId, subject, scopes } = record.grant;
      return { valid: true, clientId, subject, scopes, expiresAt: new Date(record.expiresAt) };
    },
    issueRefreshToken: (grant) => issueRefresh(newGrant(grant)),
    issueAccessToken: (grant) => issueAccess(newGrant(grant)),
    refreshTokenStatus: (token) => refreshStatus(refreshTokens.get(token)),
    revoke,
    close: () => server.close(),
  };
}

type AuthorizeCheck =
  | { page: string }
  | { redirectUri: string; error: string; description: string }
  | { redirectUri: string; clientId: string; scopes: string[] };

/**
 * RFC 6749 §4.1.2.1: an unknown client or a bad redirect URI is shown to the user, never redirected
 * to; every other problem goes back to the client as `error=…`.
 */
function checkAuthorizeRequest(
  params: URLSearchParams,
  clients: ReadonlyMap<string, OAuthClient>,
  requirePkce: boolean,
): AuthorizeCheck {
  const clientId = params.get("client_id");
  const client = clientId === null ? undefined : clients.get(clientId);
  if (!client) return { page: "unknown client_id" };
  const given = params.get("redirect_uri");
  const registered = client.redirectUris ?? [];
  const redirectUri = given ?? (registered.length === 1 ? registered[0] : undefined);
  if (redirectUri === undefined) return { page: "redirect_uri is missing" };
  if (registered.length > 0 && !registered.includes(redirectUri))
    return { page: "redirect_uri is not registered" };
  if (!URL.canParse(redirectUri)) return { page: "redirect_uri is not an absolute URL" };
  const fail = (error: string, description: string) => ({ redirectUri, error, description });
  if (params.get("response_type") !== "code")
    return fail("unsupported_response_type", "use response_type=code");
  const challenge = params.get("code_challenge");
  const method = params.get("code_challenge_method");
  if (challenge === null && requirePkce)
    return fail("invalid_request", "PKCE is required: send code_challenge");
  // RFC 7636 §4.2: "plain" is allowed by the RFC, but providers that care about PKCE accept S256 only.
  if (challenge !== null && method !== "S256")
    return fail("invalid_request", "code_challenge_method must be S256");
  if (challenge !== null && !/^[A-Za-z0-9_-]{43}$/.test(challenge)) {
    return fail("invalid_request", "code_challenge must be a base64url SHA-256 (43 characters)");
  }
  const scopes = (params.get("scope") ?? "").split(" ").filter((scope) => scope !== "");
  return { redirectUri, clientId: client.clientId, scopes };
}

const basicChallenge = { "www-authenticate": 'Basic realm="oauth-emulator"' };

function required(form: URLSearchParams, name: string): string {
  const value = form.get(name);
  if (value === null || value === "") throw new OAuthFailure("invalid_request", `${name} is missing`);
  return value;
}

function decodeFormComponent(text: string): string {
  try {
    return decodeURIComponent(text.replace(/\+/g, " "));
  } catch {
    throw new OAuthFailure("invalid_client", "malformed HTTP Basic credentials", 401, basicChallenge);
  }
}

function sameSecret(given: string | undefined, expected: string): boolean {
  if (given === undefined) return false;
  const a = createHash("sha256").update(given).digest();
  const b = createHash("sha256").update(expected).digest();
  return timingSafeEqual(a, b);
}

function s256(verifier: string): string {
  return createHash("sha256").update(verifier).digest("base64url");
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function errorPage(problem: string): string {
  return `<!doctype html><meta charset="utf-8"><title>Authorization error</title><h1>Authorization error</h1><p>${escapeHtml(problem)}</p>`;
}

function consentPage(params: URLSearchParams, clientId: string, scopes: readonly string[]): string {
  const hidden = [...params]
    .filter(([name]) => name !== "decision")
    .map(([name, value]) => `<input type="hidden" name="${escapeHtml(name)}" value="${escapeHtml(value)}">`)
    .join("");
  const list = scopes.map((scope) => `<li>${escapeHtml(scope)}</li>`).join("");
  return `<!doctype html><meta charset="utf-8"><title>Allow access?</title>
<h1>Allow ${escapeHtml(clientId)} to access your account?</h1>
<ul>${list}</ul>
<form method="post" action="/authorize">${hidden}
<button type="submit" name="decision" value="approve">Approve</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>`;
}
