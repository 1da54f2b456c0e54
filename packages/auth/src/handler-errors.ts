import { type ErrorCode, redact, type StorageErrorInit } from "@stowage/core";

/**
 * The machine-readable `code` of a self-hosted handler's JSON error body, `{ "error": reason, "code": … }`,
 * and the {@link ErrorCode} each one means to a client. `@stowage/handler` answers with these; a
 * Duplicati handler sends none, so its failures are classified by status and `X-Reason` instead.
 */
export const handlerErrorCodes = {
  /** No AuthID reached the handler (400). */
  missing_authid: "InvalidConfig",
  /** The AuthID's shape is not one the handler accepts (400). */
  invalid_authid: "InvalidConfig",
  /** No record for the KEYID (404): revoked, purged, or made on another handler. */
  unknown_key: "Unauthenticated",
  /** The SECRET does not decrypt the record (400/401). */
  wrong_password: "Unauthenticated",
  /** The AuthID was revoked (410). */
  revoked: "Unauthenticated",
  /** The storage provider refused the stored refresh token (`invalid_grant`): sign in again. */
  provider_refused: "Unauthenticated",
  /** The `X-API-Key` is missing or wrong (401/403). */
  invalid_api_key: "InvalidConfig",
  /** The handler does not serve this client (403). */
  forbidden: "PermissionDenied",
  /** Nothing at this URL speaks the handler protocol (404 without a reason, 405). */
  not_a_handler: "InvalidConfig",
  /** Too many refreshes for this AuthID or address (429, or 503 "Too many requests…"). */
  rate_limited: "RateLimited",
  /** The storage provider's token endpoint failed (500 "Authentication provider … gave error"). */
  provider_unavailable: "Unavailable",
  /** The handler is overloaded or over quota (503). */
  overloaded: "Unavailable",
  /** The handler failed (5xx). */
  server_error: "Unavailable",
} as const satisfies Record<string, ErrorCode>;

export type HandlerErrorCode = keyof typeof handlerErrorCodes;

/** One failed handler response, as the HTTP client hands it to `classify`. */
export interface HandlerFailure {
  status: number;
  /** Lower-case names. */
  headers: Record<string, string>;
  bodyText: string;
}

export interface HandlerFailureContext {
  /** Where a new AuthID is made; every hint names it. */
  loginUrl: string;
  /** Read the `{error, code}` JSON body of `@stowage/handler` (self-hosted handlers). */
  jsonErrors: boolean;
}

const MAX_REASON_CHARS = 300;

/**
 * Maps a failed handler response to the fields of a {@link StorageError}: code, retryability, a hint
 * naming the login URL, and the reason as the message. Used as the HTTP client's `classify` hook, so
 * that retries see the right `retryable` (4xx are final; 429, 503 and 5xx are retried).
 */
export function classifyHandlerFailure(
  failure: HandlerFailure,
  context: HandlerFailureContext,
): Partial<StorageErrorInit> {
  const json = context.jsonErrors ? jsonError(failure.bodyText) : undefined;
  const headerReason = failure.headers["x-reason"]?.trim() || undefined;
  const reason = json?.error ?? headerReason;
  const kind = json?.code ?? kindOf(failure.status, reason);
  const text = reason === undefined ? "no reason given (no X-Reason header)" : clip(reason);
  return {
    code: handlerErrorCodes[kind],
    hint: hints[kind](context.loginUrl),
    message: text,
  };
}

function kindOf(status: number, reason: string | undefined): HandlerErrorCode {
  const said = (pattern: RegExp) => reason !== undefined && pattern.test(reason);
  // The provider's own refusal reaches the client inside a 500's reason (OH main.py refresh_handler).
  if (said(/invalid_grant/)) return "provider_refused";
  switch (status) {
    case 400:
      if (said(/no authid|missing authid/i)) return "missing_authid";
      return said(/password/i) ? "wrong_password" : "invalid_authid";
    case 401:
      return said(/api.?key/i) ? "invalid_api_key" : "wrong_password";
    case 403:
      return said(/api.?key/i) ? "invalid_api_key" : "forbidden";
    case 404:
      // A handler says which key is missing; a bare 404 means the URL is not a handler's endpoint.
      return reason === undefined ? "not_a_handler" : "unknown_key";
    case 405:
      return "not_a_handler";
    case 410:
      return "revoked";
    case 429:
      return "rate_limited";
    case 503:
      return said(/too many requests/i) ? "rate_limited" : "overloaded";
  }
  if (status >= 500) return said(/authentication provider/i) ? "provider_unavailable" : "server_error";
  return "invalid_authid";
}

const newAuthId = (login: string) => `create a new AuthID at ${login}`;

const hints: Record<HandlerErrorCode, (login: string) => string> = {
  missing_authid: (login) =>
    `the handler received no AuthID; a proxy in between may drop the X-AuthID header, otherwise ${newAuthId(login)}`,
  invalid_authid: (login) => `the handler does not accept this AuthID; ${newAuthId(login)}`,
  unknown_key: (login) =>
    `the handler has no record of this AuthID (revoked, unused for a long time, or made on another handler); ${newAuthId(login)}`,
  wrong_password: (login) =>
    `the AuthID's secret does not match (it may have been mistyped or cut); ${newAuthId(login)}`,
  revoked: (login) => `the AuthID was revoked; ${newAuthId(login)}`,
  provider_refused: (login) =>
    `the storage provider no longer accepts this sign-in (access was revoked or has expired); ${newAuthId(login)}`,
  invalid_api_key: (login) =>
    `check the API key given for this handler (apiKey, api-key); AuthIDs are made at ${login}`,
  forbidden: (login) => `the handler refuses this client; ask its operator (AuthIDs are made at ${login})`,
  not_a_handler: (login) =>
    `check that the URL is the handler's refresh endpoint (it usually ends in /refresh); AuthIDs are made at ${login}`,
  rate_limited: (login) =>
    `the handler limits how often an AuthID may refresh; wait and try again, and if it persists ${newAuthId(login)}`,
  provider_unavailable: (login) =>
    `the storage provider's sign-in service failed; try again later, and if it persists ${newAuthId(login)}`,
  overloaded: (login) =>
    `the handler is overloaded or over quota; try again later, and if it persists ${newAuthId(login)}`,
  server_error: (login) => `the handler failed; try again later, and if it persists ${newAuthId(login)}`,
};

/** The hint for a failure that never got a response (network) or got an unreadable one. */
export function unreachableHint(loginUrl: string, received: boolean): string {
  return received
    ? hints.not_a_handler(loginUrl)
    : `check the handler URL and the network; if it persists, ${newAuthId(loginUrl)}`;
}

function jsonError(bodyText: string): { error?: string; code?: HandlerErrorCode } | undefined {
  let data: unknown;
  try {
    data = JSON.parse(bodyText);
  } catch {
    return undefined;
  }
  if (typeof data !== "object" || data === null) return undefined;
  const { error, code } = data as Record<string, unknown>;
  return {
    error: typeof error === "string" && error.trim() !== "" ? error.trim() : undefined,
    code:
      typeof code === "string" && Object.hasOwn(handlerErrorCodes, code)
        ? (code as HandlerErrorCode)
        : undefined,
  };
}

// Redacted before it is cut, so that a secret cut in half cannot slip past the redaction.
function clip(text: string): string {
  const flat = redact(text.replace(/\s+/g, " "));
  return flat.length > MAX_REASON_CHARS ? `${flat.slice(0, MAX_REASON_CHARS - 1)}…` : flat;
}
