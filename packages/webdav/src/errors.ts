import type { ErrorCode, HttpErrorResponse, StorageErrorInit } from "@stowage/core";

/** What one HTTP status from a WebDAV server means to a caller. */
export interface StatusRow {
  code: ErrorCode;
  /** What happened, in words a user can act on; the server's own text is appended when it sent some. */
  what: string;
  hint?: string;
  /** Overrides the code's default retryability. */
  retryable?: boolean;
}

/**
 * The WebDAV error table: each status a server answers with, as a `StorageError`. Every row has a
 * test in test/errors.test.ts. A few statuses mean something else for one method, and the calls that
 * expect them handle them before this table is reached: MKCOL's 405 (the folder exists) and 409
 * (its parent is missing), PUT's 400/404/409 (a parent folder is missing: made, then the put is
 * sent again; or the place is taken: explained as `Conflict`), PROPFIND's 405 (the URL leads to no
 * WebDAV folder: `Unsupported`), and MOVE's 412 (the key exists).
 */
export const statusTable: Readonly<Record<number, StatusRow>> = {
  401: {
    code: "Unauthenticated",
    what: "the server refused the credentials",
    hint: "check the user name and password (or app password), or pass a new token",
  },
  403: {
    code: "PermissionDenied",
    what: "the server forbids this operation here",
    hint: "check that the account may read and write this folder",
  },
  404: { code: "NotFound", what: "no object has this key" },
  // Not Unsupported: every WebDAV server allows these methods somewhere; a 405 on a resource says its
  // kind is wrong for the method (a PUT or GET on a folder, a MKCOL on an object).
  405: {
    code: "Conflict",
    what: "the server does not allow this method on this resource; a folder may have this object's name, or an object a folder's",
    hint: "choose a key that does not name both a folder and an object",
  },
  409: {
    code: "Conflict",
    what: "the request conflicts with the server's state; a parent of this key may be an object, not a folder",
    hint: "choose a key whose parents are folders",
  },
  412: {
    code: "AlreadyExists",
    what: "an object with this key already exists",
    hint: "delete it first or put without ifNotExists",
  },
  // A lock is usually brief (another client's upload, rclone serve's per-request locks), so it is
  // retried with backoff; one that outlives the retries is reported as Conflict.
  423: {
    code: "Conflict",
    what: "the resource is locked by another client",
    hint: "try again once the lock is released, or remove a stale lock on the server",
    retryable: true,
  },
  507: {
    code: "QuotaExceeded",
    what: "the server has no space left for this object",
    hint: "free some space or raise the account's quota",
  },
};

/** Any 5xx without a row of its own. */
export const serverErrorRow: StatusRow = {
  code: "Unavailable",
  what: "the server failed to answer",
  hint: "try again later; if it persists, check the server's error log",
};

const MAX_SERVER_TEXT = 200;

/**
 * The human part of an error body. Apache sends an HTML page, sabre/dav (Nextcloud) an XML
 * `<s:message>`, rclone and webdav-server a line of text or nothing.
 */
export function serverText(bodyText: string): string {
  let text = bodyText;
  const message = /<(?:[\w.-]+:)?message[^>]*>([\s\S]*?)<\/(?:[\w.-]+:)?message>/i.exec(text);
  const paragraph = /<p>([\s\S]*?)<\/p>/i.exec(text);
  if (message) text = message[1]!;
  else if (paragraph) text = paragraph[1]!;
  else if (/^\s*</.test(text)) text = text.replace(/<title>[\s\S]*?<\/title>/gi, " ");
  const clean = text
    .replace(/<[^>]*>/g, " ")
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&amp;/g, "&")
    .replace(/\s+/g, " ")
    .trim();
  return clean.length > MAX_SERVER_TEXT ? `${clean.slice(0, MAX_SERVER_TEXT - 1)}…` : clean;
}

/** The row for a status: its own, the 5xx row, or none (core's defaults then apply). */
export function rowFor(status: number): StatusRow | undefined {
  return statusTable[status] ?? (status >= 500 && status < 600 ? serverErrorRow : undefined);
}

/**
 * The `classify` hook given to core's HTTP client: applies {@link statusTable} to every failed
 * response. Core prefixes the message with `METHOD /path returned N Reason:`.
 */
export function classifyWebDavResponse(response: HttpErrorResponse): Partial<StorageErrorInit> | undefined {
  const row = rowFor(response.status);
  const said = serverText(response.bodyText);
  if (!row) return said ? { message: said } : undefined;
  return {
    code: row.code,
    hint: row.hint,
    retryable: row.retryable,
    message: said ? `${row.what} (the server said: ${said})` : row.what,
  };
}
