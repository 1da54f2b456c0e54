import { createHttpClient, type HttpClient, isStorageError, type Logger, redact } from "@stowage/core";
import { z } from "zod";
import type { ProviderConfig } from "./config.js";
import { HandlerError } from "./errors.js";

/** A token endpoint's successful answer, as the handler uses it. */
export interface TokenResponse {
  accessToken: string;
  /** Seconds, as the provider sent it (default 3600 when it sent none). */
  expiresIn: number;
  /** Present when the provider issued (or rotated) one. */
  refreshToken?: string;
  scope?: string;
}

const tokenSchema = z.object({
  access_token: z.string().min(1),
  // Some providers send numbers as strings (RFC 6749 says number; Azure AD v1 sent "3600").
  expires_in: z.union([z.number(), z.string().regex(/^\d+$/).transform(Number)]).optional(),
  refresh_token: z.string().min(1).optional(),
  scope: z.string().optional(),
});

const oauthErrorSchema = z.object({ error: z.string(), error_description: z.string().optional() });

const DEFAULT_EXPIRES_IN = 3600;
const MAX_DESCRIPTION = 200;

/** What a provider said when it refused a request (RFC 6749 §5.2). */
export interface OAuthRefusal {
  error: string;
  description?: string;
}

export type ProviderCall = "exchange" | "refresh" | "revoke";

/**
 * Talks to one provider's endpoints: builds the authorize URL, exchanges codes, refreshes, revokes.
 * Transient failures (5xx, 429, resets) are retried a few times by core's HTTP client; an OAuth
 * refusal (400/401 with `{error}`) is never retried.
 */
export class ProviderClient {
  readonly config: ProviderConfig;
  private readonly http: HttpClient;
  private readonly redirectUri: () => string;

  constructor(config: ProviderConfig, redirectUri: () => string, logger?: Logger) {
    this.config = config;
    this.redirectUri = redirectUri;
    this.http = createHttpClient({
      provider: config.id,
      connectTimeoutMs: 10_000,
      headersTimeoutMs: 20_000,
      bodyTimeoutMs: 20_000,
      concurrency: 64,
      retry: { attempts: 3, minDelayMs: 200, maxDelayMs: 2_000, maxTotalMs: 10_000 },
      headers: { accept: "application/json", "user-agent": "stowage-handler" },
      logger,
    });
  }

  /** The provider's authorize URL for one login (RFC 6749 §4.1.1, RFC 7636 §4.3). */
  authorizeUrl(state: string, codeChallenge: string | undefined): string {
    const url = new URL(this.config.authorizeUrl);
    const params = url.searchParams;
    params.set("client_id", this.config.clientId);
    params.set("response_type", "code");
    params.set("redirect_uri", this.redirectUri());
    params.set("scope", this.config.scopes.join(" "));
    params.set("state", state);
    if (codeChallenge !== undefined) {
      params.set("code_challenge", codeChallenge);
      params.set("code_challenge_method", "S256");
    }
    for (const [name, value] of Object.entries(this.config.authorizeParams)) params.set(name, value);
    return url.href;
  }

  /** RFC 6749 §4.1.3. */
  exchangeCode(code: string, codeVerifier: string | undefined): Promise<TokenResponse | OAuthRefusal> {
    const form = new URLSearchParams({
      grant_type: "authorization_code",
      code,
      redirect_uri: this.redirectUri(),
    });
    if (codeVerifier !== undefined) form.set("code_verifier", codeVerifier);
    return this.tokenRequest("exchange", form);
  }

  /** RFC 6749 §6. */
  refresh(refreshToken: string): Promise<TokenResponse | OAuthRefusal> {
    const form = new URLSearchParams({ grant_type: "refresh_token", refresh_token: refreshToken });
    return this.tokenRequest("refresh", form);
  }

  /** RFC 7009; `false` when the provider has no revocation endpoint. */
  async revoke(token: string): Promise<boolean> {
    const url = this.config.revokeUrl;
    if (url === undefined) return false;
    const form = new URLSearchParams({ token, token_type_hint: "refresh_token" });
    try {
      const response = await this.http.request({
        method: "POST",
        url,
        operation: "revoke",
        ...this.withClientAuth(form),
        expect: [200, 400],
      });
      if (response.status === 200) {
        await response.dump();
        return true;
      }
      // RFC 7009 §2.2: an invalid token (already revoked, expired) needs no revoking.
      const refusal = parseRefusal(await response.text());
      if (refusal.error === "invalid_token") return true;
      throw providerRefused(this.config.id, "revoke", refusal);
    } catch (err) {
      throw providerFailure(this.config.id, "revoke", err);
    }
  }

  async close(): Promise<void> {
    await this.http.close();
  }

  private async tokenRequest(
    call: ProviderCall,
    form: URLSearchParams,
  ): Promise<TokenResponse | OAuthRefusal> {
    let status: number;
    let text: string;
    try {
      const response = await this.http.request({
        method: "POST",
        url: this.config.tokenUrl,
        operation: call,
        ...this.withClientAuth(form),
        expect: [200, 400, 401],
      });
      status = response.status;
      text = await response.text();
    } catch (err) {
      throw providerFailure(this.config.id, call, err);
    }
    if (status !== 200) return parseRefusal(text);
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch {
      throw badResponse(this.config.id, call, "not JSON");
    }
    const parsed = tokenSchema.safeParse(data);
    if (!parsed.success) throw badResponse(this.config.id, call, "no access_token");
    const body = parsed.data;
    return {
      accessToken: body.access_token,
      expiresIn: body.expires_in !== undefined && body.expires_in > 0 ? body.expires_in : DEFAULT_EXPIRES_IN,
      refreshToken: body.refresh_token,
      scope: body.scope,
    };
  }

  /** RFC 6749 §2.3.1: HTTP Basic (with form-encoded parts) or form fields, as configured. */
  private withClientAuth(form: URLSearchParams): { body: string; headers: Record<string, string> } {
    const { clientAuth, clientId, clientSecret } = this.config;
    const headers: Record<string, string> = { "content-type": "application/x-www-form-urlencoded" };
    if (clientAuth === "client_secret_basic" && clientSecret !== undefined) {
      const encode = (value: string) => encodeURIComponent(value).replace(/%20/g, "+");
      headers.authorization = `Basic ${Buffer.from(`${encode(clientId)}:${encode(clientSecret)}`).toString("base64")}`;
    } else {
      form.set("client_id", clientId);
      if (clientAuth === "client_secret_post" && clientSecret !== undefined)
        form.set("client_secret", clientSecret);
    }
    return { body: form.toString(), headers };
  }
}

/** Whether a token call answered with tokens (rather than a refusal). */
export function isTokenResponse(value: TokenResponse | OAuthRefusal): value is TokenResponse {
  return "accessToken" in value;
}

function parseRefusal(text: string): OAuthRefusal {
  try {
    const parsed = oauthErrorSchema.safeParse(JSON.parse(text));
    if (parsed.success) {
      return {
        error: clean(parsed.data.error, 60),
        description: parsed.data.error_description && clean(parsed.data.error_description, MAX_DESCRIPTION),
      };
    }
  } catch {
    // Not JSON: reported as an unreadable refusal below.
  }
  return { error: "invalid_response", description: "the provider's error was not OAuth JSON" };
}

// A provider's text goes into X-Reason: one line, bounded, and redacted (it could echo a secret).
function clean(text: string, max: number): string {
  const line = redact(text.replace(/\s+/g, " ").trim());
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/** Describes a refusal for a user: `invalid_grant: the refresh token was revoked`. */
export function describeRefusal(refusal: OAuthRefusal): string {
  return refusal.description ? `${refusal.error}: ${refusal.description}` : refusal.error;
}

function providerRefused(id: string, call: ProviderCall, refusal: OAuthRefusal): HandlerError {
  return new HandlerError({
    status: 502,
    code: "provider_unavailable",
    reason: `Authentication provider for ${id} gave error during ${call}: ${describeRefusal(refusal)}`,
  });
}

function badResponse(id: string, call: ProviderCall, what: string): HandlerError {
  return new HandlerError({
    status: 502,
    code: "provider_unavailable",
    reason: `Authentication provider for ${id} sent an unusable ${call} response (${what})`,
  });
}

/** A provider that could not be reached, timed out or failed: 503 when it asked to wait, else 502. */
function providerFailure(id: string, call: ProviderCall, err: unknown): HandlerError {
  if (err instanceof HandlerError) return err;
  if (isStorageError(err) && (err.code === "RateLimited" || err.status === 429 || err.status === 503)) {
    return new HandlerError({
      status: 503,
      code: "provider_unavailable",
      reason: `Authentication provider for ${id} asked the handler to wait${err.status === undefined ? "" : ` (HTTP ${err.status})`}`,
      hint: "try again later",
      retryAfterMs: err.retryAfterMs ?? 60_000,
      cause: err,
    });
  }
  const what = isStorageError(err)
    ? err.status === undefined
      ? `could not be reached (${err.code})`
      : `answered ${err.status}`
    : "failed";
  return new HandlerError({
    status: 502,
    code: "provider_unavailable",
    reason: `Authentication provider for ${id} ${what} during ${call}`,
    hint: "try again shortly",
    cause: err,
  });
}
