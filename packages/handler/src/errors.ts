import type { HandlerErrorCode } from "@stowage/auth";
import { redact } from "@stowage/core";

/**
 * The `code` of an error body. `/refresh` and `/revoke` answer with the codes `@stowage/auth` maps to
 * client errors (`handlerErrorCodes`); the browser pages and `/fetch` have a few of their own.
 */
export type HandlerCode =
  | HandlerErrorCode
  | "bad_request"
  | "unknown_provider"
  | "invalid_fetch_token"
  | "invalid_callback"
  | "invalid_state"
  | "login_refused"
  | "no_code"
  | "no_refresh_token"
  | "missing_token"
  | "no_such_entry";

export interface HandlerErrorInit {
  status: number;
  /** The `code` of the JSON body, stable across versions. */
  code: HandlerCode;
  /** One line for `X-Reason` and the body's `error`; shown to users by Duplicati and by @stowage/auth. */
  reason: string;
  /** What the user should do next, when there is something. */
  hint?: string;
  retryAfterMs?: number;
  /** Kept for the log line, never sent. */
  cause?: unknown;
}

/**
 * An error the handler answers with: status, `X-Reason`, and JSON `{error, code, hint?}` (or an HTML
 * page for a browser). The reason and hint are redacted when built, so no path can put a secret in
 * a response.
 */
export class HandlerError extends Error {
  override readonly name = "HandlerError";
  readonly status: number;
  readonly code: HandlerCode;
  readonly reason: string;
  readonly hint?: string;
  readonly retryAfterMs?: number;

  constructor(init: HandlerErrorInit) {
    const reason = oneLine(redact(init.reason));
    super(reason);
    this.status = init.status;
    this.code = init.code;
    this.reason = reason;
    if (init.hint !== undefined) this.hint = oneLine(redact(init.hint));
    if (init.retryAfterMs !== undefined) this.retryAfterMs = init.retryAfterMs;
    if (init.cause !== undefined) {
      Object.defineProperty(this, "cause", { value: init.cause, enumerable: false, writable: true });
    }
  }
}

// Header values cannot hold CR/LF, and Node rejects characters outside Latin-1 in headers.
function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, " ").trim();
}

/** `X-Reason` must be a valid header value: non-Latin-1 characters become `?`. */
export function headerSafe(text: string): string {
  return text.replace(/[^\t\x20-\x7e\x80-\xff]/g, "?");
}

function seconds(ms: number): string {
  const count = Math.max(1, Math.ceil(ms / 1000));
  return count === 1 ? "1 second" : `${count} seconds`;
}
const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);

/** The errors the endpoints answer with; each is tested for its status, code and message. */
export const failures = {
  noAuthId: () =>
    new HandlerError({
      status: 400,
      code: "missing_authid",
      reason: "No authid in query",
      hint: "send the AuthID in the X-AuthID header (or as the authid query or form field)",
    }),
  invalidAuthId: (why: string, loginUrl: string) =>
    new HandlerError({
      status: 400,
      code: "invalid_authid",
      reason: `Invalid authid in query: ${why}`,
      hint: `copy the whole AuthID again, or create a new one at ${loginUrl}`,
    }),
  noSuchKey: (purgeAfterDays: number, loginUrl: string, purgedAt?: number) =>
    new HandlerError({
      status: 404,
      code: "unknown_key",
      reason:
        purgedAt === undefined
          ? "No such key: this AuthID never existed here, or was purged long ago"
          : `No such key: this AuthID was purged on ${day(purgedAt)} after ${purgeAfterDays} days unused`,
      hint: `create a new AuthID at ${loginUrl}`,
    }),
  wrongPassword: (loginUrl: string) =>
    new HandlerError({
      status: 401,
      code: "wrong_password",
      reason: "Invalid authid password",
      hint: `check that the whole AuthID was copied, or create a new one at ${loginUrl}`,
    }),
  backoff: (retryAfterMs: number) =>
    new HandlerError({
      status: 429,
      code: "rate_limited",
      reason: `Too many wrong passwords for this key, wait ${seconds(retryAfterMs)}`,
      retryAfterMs,
    }),
  rateLimited: (what: string, retryAfterMs: number) =>
    new HandlerError({
      status: 429,
      code: "rate_limited",
      reason: `Too many requests ${what}, wait ${seconds(retryAfterMs)}`,
      retryAfterMs,
    }),
  badApiKey: () =>
    new HandlerError({
      status: 403,
      code: "invalid_api_key",
      reason: "Invalid API key",
      hint: "send the API key the handler's operator gave you in the X-API-Key header",
    }),
  revoked: (at: number, loginUrl: string) =>
    new HandlerError({
      status: 410,
      code: "revoked",
      reason: `This AuthID was revoked on ${day(at)}`,
      hint: `create a new AuthID at ${loginUrl}`,
    }),
  /** A v2 AuthID naming a service this handler does not have. */
  unsupportedService: (id: string, known: readonly string[]) =>
    new HandlerError({
      status: 400,
      code: "invalid_authid",
      reason: `Service not supported: '${id.slice(0, 40)}' is not a provider of this handler`,
      hint: `this handler serves ${known.join(", ")}`,
    }),
  unknownProvider: (id: string, known: readonly string[]) =>
    new HandlerError({
      status: 404,
      code: "unknown_provider",
      reason: `Unknown provider '${id.slice(0, 40)}'`,
      hint: known.length > 0 ? `this handler serves ${known.join(", ")}` : undefined,
    }),
  notFound: (path: string) =>
    new HandlerError({
      status: 404,
      code: "not_a_handler",
      reason: `Nothing at ${path.slice(0, 60)}`,
      hint: "the token endpoint is /refresh; sign-ins start at /",
    }),
  methodNotAllowed: (allowed: readonly string[]) =>
    new HandlerError({
      status: 405,
      code: "not_a_handler",
      reason: `Method not allowed; use ${allowed.join(" or ")}`,
    }),
  bodyTooLarge: (limit: number) =>
    new HandlerError({ status: 413, code: "bad_request", reason: `Request body larger than ${limit} bytes` }),
  unsupportedType: () =>
    new HandlerError({
      status: 415,
      code: "bad_request",
      reason: "Unsupported content type; send application/x-www-form-urlencoded",
    }),
  storeDown: (cause: unknown) =>
    new HandlerError({
      status: 503,
      code: "server_error",
      reason: "The handler's store is unavailable",
      hint: "try again shortly",
      retryAfterMs: 5_000,
      cause,
    }),
  server: (ref: string, cause: unknown) =>
    new HandlerError({ status: 500, code: "server_error", reason: `Server error (ref ${ref})`, cause }),
} as const;
