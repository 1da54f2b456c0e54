import {
  createHttpClient,
  type Logger,
  type RetryOptions,
  redactUrl,
  registerSecret,
  StorageError,
  type TokenSource,
  toStorageError,
} from "@stowage/core";
import { z } from "zod";
import { loginUrlFor, parseAuthId } from "./authid.js";
import { cachedTokenSource } from "./cached-token-source.js";
import { endpointUrl } from "./endpoint-url.js";
import { classifyHandlerFailure, unreachableHint } from "./handler-errors.js";

export interface HandlerOptions {
  /** `KEYID:SECRET` or `v2:SERVICE:REFRESH_TOKEN`; trimmed and percent-decoded once. */
  authId: string;
  /** The handler's refresh endpoint, e.g. `https://handler.example.com/refresh`. */
  url: string | URL;
  /**
   * The handler's id for the storage provider the AuthID was made for (`onedrive`, `gdrive`, …): it
   * completes the login URL in hints (`/?type=<provider>`). Default: a v2 AuthID's service, else the
   * `type` the handler reports.
   */
  provider?: string;
  /** Receives redacted request lines (`debug`) and refresh fallbacks (`warn`). */
  logger?: Logger;
  /** Retries of transient failures (5xx, network, 429/503); `false` for none. Default: core's `retry` defaults. */
  retry?: RetryOptions | false;
}

export interface SelfHostedHandlerOptions extends HandlerOptions {
  /** Sent as `X-API-Key` when the handler requires one. */
  apiKey?: string;
}

/** What only {@link tokenSourceFromConnection} needs to say. */
export interface HandlerSourceExtras {
  /** The AuthID came from a connection URL's query, which was percent-decoded already. */
  authIdDecoded?: boolean;
}

// Duplicati gives each attempt 25 s (DQ OAuthHelperHttpClient.cs); a handler that is slower is down.
const ATTEMPT_TIMEOUT_MS = 25_000;

const handlerResponseSchema = z.object({
  access_token: z.string().min(1),
  /** Seconds the token stays valid, from now. */
  expires: z.number().nonnegative(),
  type: z.string().optional(),
  v2_authid: z.string().optional(),
});

/**
 * A token source backed by a third party's OAuth handler that speaks the Duplicati protocol (it works
 * against Duplicati's public handler): `GET <url>` with `X-AuthID: <authid>` returns an access token.
 * The URL must be https: the AuthID travels with every request.
 *
 * The AuthID is checked before any request; a malformed one is `InvalidConfig` with a hint naming the
 * login URL. Failures map as DESIGN §4 says (see `handlerErrorCodes`), and every message names the
 * handler URL and every hint the login URL, never the AuthID. Tokens follow the shared discipline of
 * {@link cachedTokenSource}.
 *
 * @example
 * const auth = hostedHandler({
 *   authId: process.env.STOWAGE_AUTHID!,
 *   url: "https://duplicati-oauth-handler.appspot.com/refresh",
 *   provider: "onedrivev2",
 * });
 */
export function hostedHandler(options: HandlerOptions): TokenSource {
  return handlerSource("hostedHandler", options, {});
}

/**
 * A token source backed by your own `@stowage/handler`: the same protocol as {@link hostedHandler},
 * plus an optional `X-API-Key`, plain http on loopback (127.0.0.0/8, ::1, localhost), and the
 * handler's JSON error bodies (`{ error, code }`, see `handlerErrorCodes`).
 *
 * @example
 * const auth = selfHostedHandler({
 *   authId: process.env.STOWAGE_AUTHID!,
 *   url: "http://127.0.0.1:8080/refresh",
 *   apiKey: process.env.STOWAGE_API_KEY,
 * });
 */
export function selfHostedHandler(options: SelfHostedHandlerOptions): TokenSource {
  return handlerSource("selfHostedHandler", options, {});
}

/** The two handler strategies; `extras` is for {@link tokenSourceFromConnection} only. */
export function handlerSource(
  operation: "hostedHandler" | "selfHostedHandler",
  options: SelfHostedHandlerOptions,
  extras: HandlerSourceExtras,
): TokenSource {
  const selfHosted = operation === "selfHostedHandler";
  const context = { provider: "auth", operation };
  const url = endpointUrl(options.url, {
    operation,
    what: "the handler URL",
    loopbackHttp: selfHosted,
    example: "https://handler.example.com/refresh",
    httpHint: selfHosted
      ? "use the handler's https:// address"
      : "use the handler's https:// address; for your own handler on this machine use selfHostedHandler, which allows http on loopback",
  });
  const shownUrl = redactUrl(url);
  const authId = parseAuthId(typeof options.authId === "string" ? options.authId : "", {
    loginUrl: loginUrlFor(url, options.provider),
    decoded: extras.authIdDecoded,
    operation,
  });
  let provider = options.provider ?? (authId.version === 2 ? authId.service : undefined);
  let loginUrl = loginUrlFor(url, provider);
  const headers: Record<string, string> = { "x-authid": authId.value, accept: "application/json" };
  if (selfHosted && options.apiKey !== undefined) headers["x-api-key"] = apiKeyOf(options.apiKey, operation);

  const http = createHttpClient({
    provider: "auth",
    retry: options.retry,
    logger: options.logger,
    headersTimeoutMs: ATTEMPT_TIMEOUT_MS,
    bodyTimeoutMs: ATTEMPT_TIMEOUT_MS,
    classify: (failure) => classifyHandlerFailure(failure, { loginUrl, jsonErrors: selfHosted }),
  });

  const describe = (err: unknown): StorageError => {
    const error = toStorageError(err, context);
    if (error.code === "Aborted") return error;
    const received = error.status !== undefined;
    let hint = error.hint;
    if (error.code === "Protocol" || hint === undefined) hint = unreachableHint(loginUrl, received);
    else if (!hint.includes(loginUrl)) hint = `${hint}; AuthIDs are made at ${loginUrl}`;
    return new StorageError({
      ...context,
      code: error.code,
      retryable: error.retryable,
      status: error.status,
      retryAfterMs: error.retryAfterMs,
      message: `OAuth handler ${shownUrl}: ${error.detail}`,
      hint,
      cause: error,
    });
  };

  const fetch = async () => {
    try {
      const body = await http.requestJson(
        { method: "GET", url: url.href, operation, headers },
        handlerResponseSchema,
      );
      registerSecret(body.access_token);
      // A Duplicati handler may offer a v2 AuthID after a v1 refresh. It is not adopted: it carries the
      // refresh token the handler exists to keep, and it would outlive a revoked AuthID (duplicati#4846).
      registerSecret(body.v2_authid);
      if (provider === undefined && body.type) {
        provider = body.type;
        loginUrl = loginUrlFor(url, provider);
      }
      return { token: body.access_token, expiresAt: new Date(Date.now() + body.expires * 1000) };
    } catch (err) {
      throw describe(err);
    }
  };

  return cachedTokenSource({
    kind: selfHosted ? "self-hosted-handler" : "hosted-handler",
    operation,
    fetch,
    logger: options.logger,
    description: `[${operation} ${shownUrl}]`,
    summary: { url: shownUrl },
  });
}

function configError(operation: string, message: string, hint: string): StorageError {
  return new StorageError({ provider: "auth", operation, code: "InvalidConfig", message, hint });
}

function apiKeyOf(value: string, operation: string): string {
  const apiKey = typeof value === "string" ? value.trim() : "";
  if (apiKey === "") {
    throw configError(
      operation,
      "the API key is empty",
      "pass the key the handler's operator gave you, or leave apiKey out",
    );
  }
  registerSecret(apiKey);
  return apiKey;
}
