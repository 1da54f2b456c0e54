import {
  createHttpClient,
  isStorageError,
  type Logger,
  publish,
  type RetryOptions,
  redact,
  redactUrl,
  registerSecret,
  StorageError,
  type StorageErrorInit,
  type TokenSource,
  toStorageError,
} from "@stowage/core";
import { z } from "zod";
import { cachedTokenSource, type FetchedToken } from "./cached-token-source.js";
import { endpointUrl } from "./endpoint-url.js";
import { redactedCause } from "./redacted-cause.js";

/** How the client proves its identity to the token endpoint (RFC 6749 §2.3.1). */
export type ClientAuthMethod = "client_secret_post" | "client_secret_basic";

export interface OAuthRefreshTokenOptions {
  /** The provider's token endpoint; https, or http on loopback (an emulator). */
  tokenUrl: string | URL;
  clientId: string;
  /** Omit for a public client (no secret); then `client_id` is sent alone. */
  clientSecret?: string;
  refreshToken: string;
  /** Narrow the access token to these scopes (RFC 6749 §6); default: as granted. */
  scope?: string | readonly string[];
  /**
   * `client_secret_post` (default: the form Google's and Microsoft's documentation show) sends the
   * secret in the form; `client_secret_basic` sends `Authorization: Basic`.
   */
  clientAuth?: ClientAuthMethod;
  /**
   * Receives each new refresh token when the provider rotates it (Microsoft does, Google does not).
   * Persist it: the old one may stop working. It is awaited before the new access token is used; if
   * it throws, the call fails, and the next call hands the same token to `onRotate` again first.
   */
  onRotate: (refreshToken: string) => void | Promise<void>;
  /** Receives redacted request lines (`debug`) and refresh fallbacks (`warn`). */
  logger?: Logger;
  /** Retries of transient failures (5xx, network, 429/503); `false` for none. Default: core's `retry` defaults. */
  retry?: RetryOptions | false;
}

const operation = "oauthRefreshToken";
const context = { provider: "auth", operation };

const tokenResponseSchema = z.object({
  access_token: z.string().min(1),
  token_type: z
    .string()
    .refine((type) => type.toLowerCase() === "bearer", "must be Bearer")
    .optional(),
  // Seconds; a few providers send it as a string.
  expires_in: z.union([z.number().nonnegative(), z.string().regex(/^\d+$/).transform(Number)]).optional(),
  refresh_token: z.string().min(1).optional(),
  scope: z.string().optional(),
});

/** RFC 6749 §5.2 error codes, and what each means to the user. */
const oauthErrors: Record<string, { code: StorageErrorInit["code"]; hint: string }> = {
  invalid_grant: {
    code: "Unauthenticated",
    hint: "the refresh token was revoked, has expired or was replaced; sign in again to get a new refresh token",
  },
  invalid_client: { code: "InvalidConfig", hint: "check clientId, clientSecret and clientAuth" },
  unauthorized_client: {
    code: "InvalidConfig",
    hint: "this client may not use refresh tokens; check the app registration at the provider",
  },
  invalid_scope: { code: "InvalidConfig", hint: "ask only for scopes the refresh token was granted" },
  invalid_request: { code: "InvalidConfig", hint: "check tokenUrl, clientId and clientAuth" },
  unsupported_grant_type: {
    code: "InvalidConfig",
    hint: "check that tokenUrl is the provider's OAuth 2.0 token endpoint",
  },
  temporarily_unavailable: { code: "Unavailable", hint: "try again later" },
  server_error: { code: "Unavailable", hint: "try again later" },
};

/**
 * Direct OAuth, no handler (rclone's model): your own app registration refreshes an access token in
 * this process with the RFC 6749 `refresh_token` grant. Tokens follow the shared discipline of
 * {@link cachedTokenSource}; transient failures are retried, refusals are not. `invalid_grant` is
 * `Unauthenticated` with a hint to sign in again.
 *
 * When the provider rotates the refresh token, the new one goes to `onRotate` and is awaited before
 * the new access token is returned, so a crash cannot lose it.
 *
 * @example
 * const auth = oauthRefreshToken({
 *   tokenUrl: "https://login.microsoftonline.com/consumers/oauth2/v2.0/token",
 *   clientId: process.env.APP_CLIENT_ID!,
 *   refreshToken: await vault.read("onedrive-refresh-token"),
 *   onRotate: (token) => vault.write("onedrive-refresh-token", token),
 * });
 */
export function oauthRefreshToken(options: OAuthRefreshTokenOptions): TokenSource {
  const tokenUrl = endpointUrl(options.tokenUrl, {
    operation,
    what: "the token URL",
    loopbackHttp: true,
    example: "https://oauth2.googleapis.com/token",
    httpHint: "use the provider's https:// token endpoint",
  });
  const shownUrl = redactUrl(tokenUrl);
  const clientId = required(options.clientId, "clientId", "pass your app registration's client id");
  let refreshToken = required(
    options.refreshToken,
    "refreshToken",
    "pass the refresh token you got when signing in",
  );
  registerSecret(refreshToken);
  const clientSecret =
    options.clientSecret === undefined
      ? undefined
      : required(
          options.clientSecret,
          "clientSecret",
          "pass the app's client secret, or leave it out for a public client",
        );
  registerSecret(clientSecret);
  const clientAuth = options.clientAuth ?? "client_secret_post";
  if (clientAuth !== "client_secret_post" && clientAuth !== "client_secret_basic") {
    throw configError(
      `clientAuth must be client_secret_post or client_secret_basic, not '${String(clientAuth)}'`,
      "leave it out for client_secret_post",
    );
  }
  if (clientAuth === "client_secret_basic" && clientSecret === undefined) {
    throw configError(
      "clientAuth client_secret_basic needs a clientSecret",
      "pass clientSecret, or leave clientAuth out for a public client",
    );
  }
  if (typeof options.onRotate !== "function") {
    throw configError(
      "onRotate is missing",
      "pass a function that stores the new refresh token: providers that rotate refresh tokens invalidate the old one",
    );
  }
  const onRotate = options.onRotate;
  const scope = typeof options.scope === "string" ? options.scope : options.scope?.join(" ");

  const http = createHttpClient({
    provider: "auth",
    retry: options.retry,
    logger: options.logger,
    classify: ({ bodyText }) => classifyTokenError(bodyText),
  });

  const describe = (err: unknown): StorageError => {
    const error = toStorageError(err, context);
    if (error.code === "Aborted") return error;
    return new StorageError({
      ...context,
      code: error.code,
      retryable: error.retryable,
      status: error.status,
      retryAfterMs: error.retryAfterMs,
      message: `token endpoint ${shownUrl}: ${error.detail}`,
      hint: error.hint ?? (error.status === undefined ? "check tokenUrl and the network" : undefined),
      cause: error,
    });
  };

  const requestToken = () => {
    const form = new URLSearchParams({ grant_type: "refresh_token", refresh_token: refreshToken });
    if (scope) form.set("scope", scope);
    const headers: Record<string, string> = { "content-type": "application/x-www-form-urlencoded" };
    if (clientAuth === "client_secret_basic" && clientSecret !== undefined) {
      // RFC 6749 §2.3.1: each part is form-encoded before they are joined and base64-encoded.
      const pair = `${formEncode(clientId)}:${formEncode(clientSecret)}`;
      headers.authorization = `Basic ${Buffer.from(pair).toString("base64")}`;
    } else {
      form.set("client_id", clientId);
      if (clientSecret !== undefined) form.set("client_secret", clientSecret);
    }
    return http.requestJson(
      { method: "POST", url: tokenUrl.href, operation, headers, body: form.toString() },
      tokenResponseSchema,
    );
  };

  const persist = async (token: string): Promise<void> => {
    try {
      await onRotate(token);
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      throw new StorageError({
        ...context,
        // Retryable unless onRotate said otherwise: the next call hands it the same token again.
        code: isStorageError(err) ? err.code : "Unavailable",
        message: `onRotate failed to store the rotated refresh token: ${redact(reason)}`,
        hint: "the new refresh token is kept in memory and handed to onRotate again on the next call; fix what onRotate writes to",
        cause: redactedCause(err),
      });
    }
    publish("token", { kind: "oauth-refresh-token", event: "rotate" });
  };

  // A rotated refresh token that onRotate has not yet stored, with the access token it came with.
  let unsaved: { refreshToken: string; access: FetchedToken } | undefined;

  const fetch = async (): Promise<FetchedToken> => {
    if (unsaved) {
      await persist(unsaved.refreshToken);
      const { access } = unsaved;
      unsaved = undefined;
      if (access.expiresAt === undefined || access.expiresAt.getTime() > Date.now()) return access;
    }
    let body: z.infer<typeof tokenResponseSchema>;
    try {
      body = await requestToken();
    } catch (err) {
      throw describe(err);
    }
    registerSecret(body.access_token);
    const access: FetchedToken =
      body.expires_in === undefined
        ? { token: body.access_token }
        : { token: body.access_token, expiresAt: new Date(Date.now() + body.expires_in * 1000) };
    if (body.refresh_token !== undefined && body.refresh_token !== refreshToken) {
      registerSecret(body.refresh_token);
      // The provider may have invalidated the old token already: from here on, only the new one works.
      refreshToken = body.refresh_token;
      unsaved = { refreshToken, access };
      await persist(refreshToken);
      unsaved = undefined;
    }
    return access;
  };

  return cachedTokenSource({
    kind: "oauth-refresh-token",
    operation,
    fetch,
    logger: options.logger,
    description: `[oauthRefreshToken ${shownUrl} ${clientId}]`,
    summary: { tokenUrl: shownUrl, clientId },
  });
}

function classifyTokenError(bodyText: string): Partial<StorageErrorInit> | undefined {
  let data: unknown;
  try {
    data = JSON.parse(bodyText);
  } catch {
    return undefined;
  }
  const { error, error_description } = (typeof data === "object" && data !== null ? data : {}) as Record<
    string,
    unknown
  >;
  if (typeof error !== "string") return undefined;
  const known = oauthErrors[error];
  const what = typeof error_description === "string" ? `${error}: ${error_description}` : error;
  return known ? { code: known.code, hint: known.hint, message: what } : { message: what };
}

function formEncode(text: string): string {
  return encodeURIComponent(text).replace(/%20/g, "+");
}

function configError(message: string, hint: string): StorageError {
  return new StorageError({ ...context, code: "InvalidConfig", message, hint });
}

function required(value: unknown, name: string, hint: string): string {
  const text = typeof value === "string" ? value.trim() : "";
  if (text === "") throw configError(`${name} is missing or empty`, hint);
  return text;
}
