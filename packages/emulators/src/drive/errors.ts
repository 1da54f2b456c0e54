import { HttpError } from "../http-server.js";

/** One entry of a Drive error's `errors[]` (reference §B.8). */
export interface DriveErrorDetail {
  domain: string;
  reason: string;
  message: string;
  locationType?: string;
  location?: string;
}

/** The body Drive answers every failure with: `{"error":{"code","message","errors":[…]}}`. */
export interface DriveErrorBody {
  error: { code: number; message: string; errors: DriveErrorDetail[] };
}

/** A Drive-shaped error body, as a fault's `respond.body` or an emulator answer. */
export function driveErrorBody(
  status: number,
  reason: string,
  message: string,
  where: { domain?: string; locationType?: string; location?: string } = {},
): DriveErrorBody {
  const detail: DriveErrorDetail = { domain: where.domain ?? "global", reason, message };
  if (where.locationType !== undefined) detail.locationType = where.locationType;
  if (where.location !== undefined) detail.location = where.location;
  return { error: { code: status, message, errors: [detail] } };
}

/** The {@link HttpError} a route throws to answer in Drive's shape. */
export function driveError(
  status: number,
  reason: string,
  message: string,
  where: { domain?: string; locationType?: string; location?: string } = {},
  headers: Record<string, string> = {},
): HttpError {
  return new HttpError(status, driveErrorBody(status, reason, message, where), headers);
}

/** 400 for a bad query parameter, naming it as Drive does (`locationType: parameter`). */
export function invalidParameter(parameter: string, message: string): HttpError {
  return driveError(400, "invalidParameter", message, { locationType: "parameter", location: parameter });
}

/** 404 for an id the caller cannot see (missing, deleted, or hidden by the `drive.file` scope). */
export function fileNotFound(id: string): HttpError {
  return driveError(404, "notFound", `File not found: ${id}.`, {
    locationType: "parameter",
    location: "fileId",
  });
}

/** 401 for a missing, unknown, expired or revoked bearer token. */
export function authError(): HttpError {
  return driveError(401, "authError", "Invalid Credentials", {
    locationType: "header",
    location: "Authorization",
  });
}

/**
 * Canned bodies for fault injection, in the shapes of reference §B.8, so that a test can make the
 * emulator (or any server) answer exactly as Drive does:
 *
 * @example
 * drive.faults.add({ path: "/drive/v3/files", respond: { status: 403, body: driveErrors.userRateLimitExceeded } });
 */
export const driveErrors = Object.freeze({
  authError: driveErrorBody(401, "authError", "Invalid Credentials", {
    locationType: "header",
    location: "Authorization",
  }),
  notFound: driveErrorBody(404, "notFound", "File not found: 0.", {
    locationType: "parameter",
    location: "fileId",
  }),
  userRateLimitExceeded: driveErrorBody(403, "userRateLimitExceeded", "User rate limit exceeded.", {
    domain: "usageLimits",
    locationType: "other",
    location: "user",
  }),
  rateLimitExceeded: driveErrorBody(403, "rateLimitExceeded", "Rate limit exceeded.", {
    domain: "usageLimits",
  }),
  tooManyRequests: driveErrorBody(429, "rateLimitExceeded", "Rate limit exceeded.", {
    domain: "usageLimits",
  }),
  storageQuotaExceeded: driveErrorBody(
    403,
    "storageQuotaExceeded",
    "The user's Drive storage quota has been exceeded.",
    { domain: "usageLimits" },
  ),
  backendError: driveErrorBody(500, "backendError", "Backend Error"),
  serviceUnavailable: driveErrorBody(503, "backendError", "Backend Error"),
});
