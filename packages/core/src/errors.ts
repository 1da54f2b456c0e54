import { redact } from "./redact.js";

/** Every code a {@link StorageError} can carry. */
export const errorCodes = [
  "NotFound",
  "FolderMissing",
  "AlreadyExists",
  "InvalidKey",
  "InvalidConfig",
  "Unauthenticated",
  "PermissionDenied",
  "RateLimited",
  "QuotaExceeded",
  "Unavailable",
  "Timeout",
  "Integrity",
  "Conflict",
  "Unsupported",
  "Aborted",
  "Protocol",
] as const;

export type ErrorCode = (typeof errorCodes)[number];

const retryableCodes: ReadonlySet<ErrorCode> = new Set(["RateLimited", "Unavailable", "Timeout"]);

/** Whether errors with this code are worth retrying: `RateLimited`, `Unavailable` and `Timeout`. */
export function isRetryableCode(code: ErrorCode): boolean {
  return retryableCodes.has(code);
}

export interface StorageErrorInit {
  code: ErrorCode;
  /** What happened, in words a user can act on. The provider, operation and key are prefixed for you. */
  message: string;
  provider?: string;
  operation?: string;
  key?: string;
  status?: number;
  retryAfterMs?: number;
  hint?: string;
  cause?: unknown;
  /** Overrides the code's default retryability (rarely right; e.g. a 409 that a retry resolves). */
  retryable?: boolean;
}

/**
 * The one error type that leaves the SDK. Match on `code` (stable across versions, processes and
 * bundles), not on the message.
 *
 * The message names the provider, the operation and the key: `onedrive put 'vol/0001.zip': …`.
 * Messages, hints, `toString()` and `toJSON()` are passed through {@link redact}, so no secret leaves
 * through an error.
 *
 * @example
 * try { await storage.stat("a.txt"); }
 * catch (err) { if (isStorageError(err, "NotFound")) { … } else throw err; }
 */
export class StorageError extends Error {
  override readonly name = "StorageError";
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly provider: string;
  readonly operation: string;
  readonly key?: string;
  readonly status?: number;
  readonly retryAfterMs?: number;
  readonly hint?: string;
  /** What happened, without the provider/operation/key prefix. */
  readonly detail: string;

  constructor(init: StorageErrorInit) {
    const provider = init.provider ?? "stowage";
    const operation = init.operation ?? "call";
    const detail = redact(init.message);
    const hint = init.hint === undefined ? undefined : redact(init.hint);
    const where = init.key === undefined ? "" : ` '${redact(init.key)}'`;
    super(`${provider} ${operation}${where}: ${detail}${hint ? ` (${hint})` : ""}`);
    if (init.cause !== undefined) {
      Object.defineProperty(this, "cause", { value: init.cause, enumerable: false, writable: true });
    }
    this.code = init.code;
    this.retryable = init.retryable ?? isRetryableCode(init.code);
    this.provider = provider;
    this.operation = operation;
    if (init.key !== undefined) this.key = init.key;
    if (init.status !== undefined) this.status = init.status;
    if (init.retryAfterMs !== undefined) this.retryAfterMs = init.retryAfterMs;
    if (hint !== undefined) this.hint = hint;
    this.detail = detail;
  }

  /** The same error placed in another operation's context (provider, operation, key), keeping the rest. */
  withContext(context: { provider?: string; operation?: string; key?: string }): StorageError {
    return new StorageError({
      code: this.code,
      message: this.detail,
      provider: context.provider ?? this.provider,
      operation: context.operation ?? this.operation,
      key: context.key ?? this.key,
      status: this.status,
      retryAfterMs: this.retryAfterMs,
      hint: this.hint,
      cause: this.cause,
      retryable: this.retryable,
    });
  }

  /** `util.inspect` (and so `console.log`) shows the cause too: redact it there as well. */
  [Symbol.for("nodejs.util.inspect.custom")](): string {
    const cause = this.cause;
    const causeText =
      cause === undefined
        ? ""
        : `\n  [cause]: ${redact(cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause))}`;
    return `${redact(this.stack ?? `${this.name}: ${this.message}`)}${causeText}`;
  }

  toJSON(): Record<string, unknown> {
    return {
      name: this.name,
      code: this.code,
      message: this.message,
      retryable: this.retryable,
      provider: this.provider,
      operation: this.operation,
      key: this.key,
      status: this.status,
      retryAfterMs: this.retryAfterMs,
      hint: this.hint,
    };
  }
}

/**
 * Whether `err` is a {@link StorageError}, optionally with the given code. Works across bundles and
 * realms (it checks the shape, not the prototype).
 */
export function isStorageError(err: unknown, code?: ErrorCode): err is StorageError {
  if (typeof err !== "object" || err === null) return false;
  const candidate = err as { name?: unknown; code?: unknown; retryable?: unknown };
  if (candidate.name !== "StorageError" || typeof candidate.code !== "string") return false;
  if (typeof candidate.retryable !== "boolean") return false;
  return code === undefined || candidate.code === code;
}

/** The `Aborted` error for a signal, carrying the signal's reason as the cause. */
export function abortedError(
  context: { provider?: string; operation?: string; key?: string },
  reason?: unknown,
) {
  return new StorageError({
    ...context,
    code: "Aborted",
    message: "the operation was aborted",
    cause: reason,
  });
}

/** Throws `Aborted` if the signal has fired. */
export function throwIfAborted(
  signal: AbortSignal | undefined,
  context: { provider?: string; operation?: string; key?: string },
): void {
  if (signal?.aborted) throw abortedError(context, signal.reason);
}

const networkCodes: Record<string, { code: ErrorCode; what: string }> = {
  ECONNRESET: { code: "Unavailable", what: "the connection was reset" },
  ECONNREFUSED: { code: "Unavailable", what: "the connection was refused" },
  ECONNABORTED: { code: "Unavailable", what: "the connection was aborted" },
  EPIPE: { code: "Unavailable", what: "the connection was closed while sending" },
  ENOTFOUND: { code: "Unavailable", what: "the host name could not be resolved" },
  EAI_AGAIN: { code: "Unavailable", what: "the host name could not be resolved (temporary DNS failure)" },
  EHOSTUNREACH: { code: "Unavailable", what: "the host is unreachable" },
  ENETUNREACH: { code: "Unavailable", what: "the network is unreachable" },
  ETIMEDOUT: { code: "Timeout", what: "the connection timed out" },
  UND_ERR_SOCKET: { code: "Unavailable", what: "the connection was closed by the server" },
  UND_ERR_CLOSED: { code: "Unavailable", what: "the connection was closed" },
  UND_ERR_CONNECT_TIMEOUT: { code: "Timeout", what: "connecting timed out" },
  UND_ERR_HEADERS_TIMEOUT: { code: "Timeout", what: "the server sent no response headers in time" },
  UND_ERR_BODY_TIMEOUT: { code: "Timeout", what: "the server stopped sending the body" },
  UND_ERR_RESPONSE_STATUS_CODE: { code: "Protocol", what: "unexpected response status" },
  ERR_STREAM_PREMATURE_CLOSE: { code: "Unavailable", what: "the connection closed before the body ended" },
};

const tlsCodes = new Set([
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

function errorCodeOf(err: unknown): string | undefined {
  let current: unknown = err;
  for (let depth = 0; depth < 5 && typeof current === "object" && current !== null; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string" && code in networkCodes) return code;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/** Whether `err` is an abort (DOMException `AbortError`, Node's `ABORT_ERR`, or our `Aborted`). */
export function isAbortError(err: unknown): boolean {
  if (typeof err !== "object" || err === null) return false;
  const e = err as { name?: unknown; code?: unknown };
  return e.name === "AbortError" || e.code === "ABORT_ERR" || isStorageError(err, "Aborted");
}

/**
 * Turns anything thrown into a {@link StorageError} in the given context: network error codes become
 * `Unavailable` or `Timeout`, aborts become `Aborted`, and anything unknown becomes `Protocol` (with
 * the original as `cause`, never in the message, since it may carry a secret).
 */
export function toStorageError(
  err: unknown,
  context: { provider?: string; operation?: string; key?: string },
): StorageError {
  if (err instanceof StorageError) {
    const same =
      (context.provider === undefined || context.provider === err.provider) &&
      (context.operation === undefined || context.operation === err.operation) &&
      (context.key === undefined || context.key === err.key);
    return same ? err : err.withContext(context);
  }
  if (isStorageError(err)) {
    const e = err as StorageError;
    return new StorageError({
      ...context,
      code: e.code,
      message: e.detail ?? e.message,
      hint: e.hint,
      cause: err,
    });
  }
  if (isAbortError(err)) return abortedError(context, err);
  const netCode = errorCodeOf(err);
  if (netCode) {
    const mapped = networkCodes[netCode]!;
    return new StorageError({
      ...context,
      code: mapped.code,
      message: `${mapped.what} (${netCode})`,
      cause: err,
    });
  }
  const fsCode = (err as { code?: unknown } | null)?.code;
  if (typeof fsCode === "string" && tlsCodes.has(fsCode)) {
    return new StorageError({
      ...context,
      code: "Unavailable",
      retryable: false,
      message: `the server's TLS certificate is not trusted (${fsCode})`,
      hint: "check the URL's host name, and that the certificate is valid and issued by a trusted authority (NODE_EXTRA_CA_CERTS adds one)",
      cause: err,
    });
  }
  if (fsCode === "ENOSPC" || fsCode === "EDQUOT") {
    return new StorageError({
      ...context,
      code: "QuotaExceeded",
      message: "no space left on the device",
      cause: err,
    });
  }
  if (fsCode === "EACCES" || fsCode === "EPERM") {
    return new StorageError({
      ...context,
      code: "PermissionDenied",
      message: "permission denied",
      cause: err,
    });
  }
  const what = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  return new StorageError({
    ...context,
    code: "Protocol",
    message: `unexpected failure: ${what}`,
    cause: err,
  });
}
