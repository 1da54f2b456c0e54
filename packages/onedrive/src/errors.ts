import type { ErrorCode, HttpErrorResponse, StorageErrorInit } from "@stowage/core";

/** What one kind of Graph failure means to a caller. */
export interface GraphErrorRow {
  /** The HTTP status, or any 5xx without a row of its own. */
  status: number | "5xx";
  /** The Graph error code this row is for (any code when absent). */
  code?: string;
  result: {
    code: ErrorCode;
    /** What happened, in words a user can act on; the service's code and text are appended. */
    what: string;
    hint?: string;
    /** Overrides the code's default retryability. */
    retryable?: boolean;
  };
}

const signInAgain =
  "sign in again: create a new AuthID at the handler's login page, or pass a new token (it may have expired or been revoked)";

/**
 * The OneDrive error table. A failure is looked up by HTTP status first, then by the innermost error
 * code Graph sent that has a row for that status (`innererror` chains nest, and the outer code of a
 * throttled request varies by workload: reference §A.9, §A.10), then by the status alone, then the
 * 5xx row. Every row has a test in test/errors.test.ts. Some answers are handled before this table by
 * the calls that expect them: 416 on a fragment (resume from the session's status), 404 or 401 on an
 * upload URL (the session is gone: restart), 409 on creating a folder (it exists).
 */
export const graphErrorTable: readonly GraphErrorRow[] = [
  {
    status: 400,
    code: "pathIsTooLong",
    result: {
      code: "InvalidKey",
      what: "the path is too long for OneDrive",
      hint: "use shorter keys or a shorter root: OneDrive paths must stay under 400 characters",
    },
  },
  { status: 400, result: { code: "Protocol", what: "OneDrive refused the request as invalid" } },
  {
    status: 401,
    code: "InvalidAuthenticationToken",
    result: { code: "Unauthenticated", what: "Microsoft Graph refused the access token", hint: signInAgain },
  },
  {
    status: 401,
    code: "unauthenticated",
    result: { code: "Unauthenticated", what: "OneDrive refused the credentials", hint: signInAgain },
  },
  {
    status: 401,
    result: { code: "Unauthenticated", what: "the request was not authenticated", hint: signInAgain },
  },
  {
    status: 403,
    code: "accessDenied",
    result: {
      code: "PermissionDenied",
      what: "access was denied",
      hint: "check that the app was granted Files.ReadWrite and that the account may write to this folder",
    },
  },
  {
    status: 403,
    result: {
      code: "PermissionDenied",
      what: "the request is forbidden",
      hint: "check that the account may access this drive and folder",
    },
  },
  { status: 404, code: "itemNotFound", result: { code: "NotFound", what: "no item has this path" } },
  { status: 404, result: { code: "NotFound", what: "not found" } },
  {
    status: 409,
    code: "nameAlreadyExists",
    result: {
      code: "AlreadyExists",
      what: "an item with this name already exists",
      hint: "delete it first or put without ifNotExists",
    },
  },
  {
    status: 409,
    result: {
      code: "Conflict",
      what: "the request conflicts with the drive's state; a parent of this key may be a file, not a folder",
      hint: "choose a key whose parents are folders",
    },
  },
  {
    status: 412,
    result: {
      code: "Conflict",
      what: "the item changed since it was read",
      hint: "try again; another client is changing the same key",
    },
  },
  {
    status: 413,
    result: {
      code: "Unsupported",
      what: "the request is too large for OneDrive",
      hint: "lower fragmentSize (a multiple of 327,680 bytes under 60 MiB)",
    },
  },
  {
    status: 416,
    code: "invalidRange",
    result: { code: "Protocol", what: "OneDrive refused the byte range" },
  },
  // A lock is usually brief (a sync client, Office co-authoring), so it is retried with backoff.
  {
    status: 423,
    result: {
      code: "Conflict",
      what: "the item is locked",
      hint: "try again once the lock is released (an Office app or sync client may hold it)",
      retryable: true,
    },
  },
  {
    status: 429,
    result: {
      code: "RateLimited",
      what: "OneDrive is throttling this app",
      hint: "make fewer requests at once (lower concurrency) and try again after the time Retry-After gives",
    },
  },
  {
    status: 503,
    result: {
      code: "Unavailable",
      what: "OneDrive is unavailable or too busy",
      hint: "try again after the time Retry-After gives",
    },
  },
  {
    status: 507,
    code: "quotaLimitReached",
    result: {
      code: "QuotaExceeded",
      what: "the OneDrive is full",
      hint: "free some space (deleted files count until the recycle bin is emptied) or buy more storage",
    },
  },
  {
    status: 507,
    result: { code: "QuotaExceeded", what: "OneDrive has no space for this object", hint: "free some space" },
  },
  // rclone retries 509 (bandwidth limit exceeded) like a throttle (reference §A.10).
  {
    status: 509,
    result: {
      code: "RateLimited",
      what: "the account's bandwidth limit was reached",
      hint: "try again later",
    },
  },
  {
    status: "5xx",
    result: {
      code: "Unavailable",
      what: "OneDrive failed to answer",
      hint: "try again later; if it persists, check https://status.cloud.microsoft",
    },
  },
];

/** A Graph error body taken apart: the codes from outermost to innermost, and the message. */
export interface GraphErrorBody {
  codes: string[];
  message?: string;
}

const MAX_SERVICE_TEXT = 200;

/**
 * Reads `{"error": {"code", "message", "innererror": {"code", "innererror": …}}}`, whose inner key is
 * spelled `innererror` by OneDrive and `innerError` by Graph (reference §A.9).
 */
export function parseGraphError(bodyText: string): GraphErrorBody {
  let data: unknown;
  try {
    data = JSON.parse(bodyText);
  } catch {
    return { codes: [] };
  }
  const error = (data as { error?: unknown } | null)?.error;
  if (typeof error !== "object" || error === null) return { codes: [] };
  const codes: string[] = [];
  let current: unknown = error;
  for (let depth = 0; depth < 8 && typeof current === "object" && current !== null; depth++) {
    const fields = current as Record<string, unknown>;
    if (typeof fields.code === "string" && fields.code !== "") codes.push(fields.code);
    const innerKey = Object.keys(fields).find((key) => key.toLowerCase() === "innererror");
    current = innerKey === undefined ? undefined : fields[innerKey];
  }
  const message = (error as { message?: unknown }).message;
  return { codes, message: typeof message === "string" && message !== "" ? message : undefined };
}

/** The row for a status and the codes Graph sent (innermost known first), if any. */
export function rowFor(status: number, codes: readonly string[]): GraphErrorRow | undefined {
  for (const code of [...codes].reverse()) {
    const row = graphErrorTable.find((candidate) => candidate.status === status && candidate.code === code);
    if (row) return row;
  }
  return (
    graphErrorTable.find((candidate) => candidate.status === status && candidate.code === undefined) ??
    (status >= 500 && status < 600
      ? graphErrorTable.find((candidate) => candidate.status === "5xx")
      : undefined)
  );
}

/**
 * The `classify` hook given to core's HTTP client. Core prefixes the message with
 * `METHOD /path returned N Reason:` and takes `Retry-After` from the headers.
 */
export function classifyGraphResponse(response: HttpErrorResponse): Partial<StorageErrorInit> | undefined {
  const body = parseGraphError(response.bodyText);
  const row = rowFor(response.status, body.codes);
  const said = serviceText(body);
  if (!row) return said ? { message: said } : undefined;
  return {
    code: row.result.code,
    hint: row.result.hint,
    retryable: row.result.retryable,
    message: said ? `${row.result.what} (${said})` : row.result.what,
  };
}

/** `code/innerCode: message`, as the service sent them, kept short. */
function serviceText(body: GraphErrorBody): string {
  const codes = body.codes.length > 0 ? body.codes.join("/") : undefined;
  const text = [codes, body.message].filter((part) => part !== undefined).join(": ");
  const clean = text.replace(/\s+/g, " ").trim();
  return clean.length > MAX_SERVICE_TEXT ? `${clean.slice(0, MAX_SERVICE_TEXT - 1)}…` : clean;
}
