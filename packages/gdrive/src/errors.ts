import type { ErrorCode, HttpErrorResponse, StorageErrorInit } from "@stowage/core";

/** What one Drive failure means to a caller. */
export interface DriveErrorRow {
  code: ErrorCode;
  /** What happened, in words a user can act on; Drive's own reason and message are appended. */
  what: string;
  hint?: string;
}

/**
 * The Drive error table (reference §B.8, §B.9, §C.3): rows keyed by `status` and, where Drive's
 * answer depends on it, `status:reason` (the `errors[0].reason` of the body). Every row has a test
 * in test/errors.test.ts. Drive seldom sends `Retry-After`, so the rate-limit rows are `RateLimited`
 * (retryable): core's backoff with full jitter then spaces the attempts.
 */
export const driveErrorTable: Readonly<Record<string, DriveErrorRow>> = {
  "401": {
    code: "Unauthenticated",
    what: "Google refused the access token",
    hint: "sign in again (create a new AuthID, or a new refresh token) if this persists",
  },
  "404": { code: "NotFound", what: "Drive has no such file, or this app may not see it" },
  "403:userRateLimitExceeded": {
    code: "RateLimited",
    what: "Drive's per-user rate limit was exceeded",
    hint: "slow down (lower the concurrency); Drive also caps uploads at about 750 GB a day",
  },
  "403:rateLimitExceeded": {
    code: "RateLimited",
    what: "Drive's rate limit was exceeded",
    hint: "slow down (lower the concurrency) and try again",
  },
  "403:storageQuotaExceeded": {
    code: "QuotaExceeded",
    what: "the Google account's storage is full",
    hint: "free some space in Google Drive (empty the trash too) or buy more storage",
  },
  "403": {
    code: "PermissionDenied",
    what: "Drive refused the request",
    hint: "check that the account (and, with the drive.file scope, this app) may access this folder",
  },
  "429": {
    code: "RateLimited",
    what: "Drive is receiving too many requests",
    hint: "slow down (lower the concurrency) and try again",
  },
  "5xx": { code: "Unavailable", what: "Drive failed to answer", hint: "try again later" },
};

/** Drive's `errors[0].reason` and `message` from a failure body, when it is in Drive's shape. */
function driveReason(bodyText: string): { reason?: string; message?: string } {
  try {
    const body = JSON.parse(bodyText) as {
      error?: { message?: unknown; errors?: Array<{ reason?: unknown; message?: unknown }> };
    };
    const first = body.error?.errors?.[0];
    const reason = typeof first?.reason === "string" ? first.reason : undefined;
    const message =
      typeof body.error?.message === "string"
        ? body.error.message
        : typeof first?.message === "string"
          ? first.message
          : undefined;
    return { ...(reason === undefined ? {} : { reason }), ...(message === undefined ? {} : { message }) };
  } catch {
    return {};
  }
}

/** The row for a status and reason: the reason's own, the status's, or the 5xx row. */
function driveErrorRow(status: number, reason: string | undefined): DriveErrorRow | undefined {
  return (
    (reason === undefined ? undefined : driveErrorTable[`${status}:${reason}`]) ??
    driveErrorTable[String(status)] ??
    (status >= 500 && status < 600 ? driveErrorTable["5xx"] : undefined)
  );
}

const MAX_DRIVE_TEXT = 200;

/**
 * The `classify` hook given to core's HTTP client: applies {@link driveErrorTable}. Core prefixes
 * the message with `METHOD /path returned N Reason:`; Drive's reason and message follow ours.
 */
export function classifyDriveResponse(response: HttpErrorResponse): Partial<StorageErrorInit> | undefined {
  const { reason, message } = driveReason(response.bodyText);
  const row = driveErrorRow(response.status, reason);
  const said = [reason, message].filter((part) => part !== undefined).join(": ");
  const quoted = said.length > MAX_DRIVE_TEXT ? `${said.slice(0, MAX_DRIVE_TEXT - 1)}…` : said;
  if (!row) return said ? { message: `Drive said ${quoted}` } : undefined;
  return {
    code: row.code,
    hint: row.hint,
    message: said ? `${row.what} (Drive said ${quoted})` : row.what,
  };
}
