import { randomUUID } from "node:crypto";
import type { FaultResponse } from "../faults.js";
import { HttpError } from "../http-server.js";

/**
 * The Graph error body (reference §A.9): `{"error": {"code", "message", "innererror"}}`. Errors the
 * OneDrive service raises carry their specific code as `innererror.code` (lower-case key, as in the
 * OneDrive docs); errors of the Graph front door (authentication, throttling) carry `innerError` with
 * `date` and `request-id` (camel case, as Graph sends them). Clients must read both spellings.
 */
export function graphErrorBody(code: string, message: string, innerCode?: string): object {
  if (innerCode !== undefined) return { error: { code, message, innererror: { code: innerCode } } };
  return {
    error: {
      code,
      message,
      innerError: { date: new Date().toISOString().replace(/\.\d+Z$/, ""), "request-id": randomUUID() },
    },
  };
}

/** An emulator handler's Graph-shaped failure. */
export class GraphError extends HttpError {
  readonly code: string;

  constructor(
    status: number,
    code: string,
    message: string,
    options: { innerCode?: string; headers?: Record<string, string> } = {},
  ) {
    super(status, graphErrorBody(code, message, options.innerCode), options.headers);
    this.code = code;
  }
}

/**
 * A canned Graph error for `faults.add({ respond })`.
 *
 * @example
 * graph.faults.add({ method: "GET", path: /\/children$/, respond: graphErrorResponse(403, "accessDenied", "Access denied") });
 */
export function graphErrorResponse(
  status: number,
  code: string,
  message: string,
  options: { innerCode?: string; headers?: Record<string, string> } = {},
): FaultResponse {
  return { status, headers: options.headers, body: graphErrorBody(code, message, options.innerCode) };
}

/**
 * A throttling answer as SharePoint and OneDrive send it (reference §A.10): 429 (too many requests)
 * or 503 (server too busy) with `Retry-After` in seconds, the `RateLimit-*` headers that appear once
 * an app has used its budget, and the `activityLimitReached` code.
 *
 * @example
 * graph.faults.add({ method: "PUT", path: /^\/up\//, times: 1, respond: graphThrottled(429, 1) });
 */
export function graphThrottled(status: 429 | 503, retryAfterSec: number): FaultResponse {
  return graphErrorResponse(status, "activityLimitReached", "The request has been throttled", {
    headers: {
      "retry-after": String(retryAfterSec),
      "ratelimit-limit": "1200",
      "ratelimit-remaining": "0",
      "ratelimit-reset": String(retryAfterSec),
    },
  });
}

/** The header Graph's front door adds to a 401 (reference §A.9). */
export const wwwAuthenticate =
  'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"';
