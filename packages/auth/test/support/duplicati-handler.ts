import { randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import {
  createFaults,
  type Faults,
  readForm,
  requestUrl,
  sendHtml,
  sendJson,
  startHttpServer,
} from "@stowage/emulators";

/** What a stored v1 key does when it is refreshed. */
export type KeyBehaviour =
  | "ok"
  /** The provider refused the refresh; `body` is its error body (OH main.py, step 9). */
  | { providerError: string }
  /** An exception Flask turns into its default HTML 500, with no X-Reason (OH main.py, the missing `return`). */
  | "crash";

export interface DuplicatiHandlerOptions {
  /** Serve https (a hosted handler must be reached over https). */
  tls?: { key: string; cert: string };
  /** Refreshes allowed per key before 503 "Too many requests…" (OH `RATE_LIMIT`); default unlimited. */
  rateLimit?: number;
  /** `expires` of issued tokens, in seconds. Default 3600. */
  expiresSec?: number;
  /** Behave as if a proxy in front of the handler dropped the X-AuthID header. */
  dropAuthIdHeader?: boolean;
}

export interface RecordedRefresh {
  authId?: string;
  apiKey?: string;
}

export interface DuplicatiHandler {
  /** The refresh endpoint, `<base>/refresh`. */
  readonly refreshUrl: string;
  readonly base: string;
  readonly faults: Faults;
  /** Every request that reached `/refresh` (faulted ones excluded). */
  readonly refreshes: RecordedRefresh[];
  /** Stores a v1 key for a service and returns its AuthID, `KEYID:PASSWORD`. */
  addKey(service: string, behaviour?: KeyBehaviour): string;
  /** Deletes a key, as `/revoked` does. */
  revoke(authId: string): void;
  close(): Promise<void>;
}

// OH settings.py: the services' ids (what the client sends as `type`) and display names.
const services: Record<string, string> = { onedrive: "OneDrive", googledrive: "Google Drive" };

const flaskError =
  "<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n<h1>Internal Server Error</h1>\n<p>The server encountered an internal error and was unable to complete your request.</p>\n";

/**
 * A local stand-in for Duplicati's GAE OAuth handler's `/refresh` (reference
 * duplicati-oauth-handler.md §2.4–2.5): the same processing order, statuses, `X-Reason` texts and
 * JSON bodies. One deliberate difference: a v2 AuthID for an unknown service gets GAE's
 * `400 Invalid authid in query` rather than an exception, as the C# server does (400).
 */
export async function startDuplicatiHandler(
  options: DuplicatiHandlerOptions = {},
): Promise<DuplicatiHandler> {
  const keys = new Map<
    string,
    { password: string; service: string; behaviour: KeyBehaviour; refreshToken: string }
  >();
  const counts = new Map<string, number>();
  const refreshes: RecordedRefresh[] = [];
  const faults = createFaults();
  const expires = options.expiresSec ?? 3600;

  const fail = (res: ServerResponse, status: number, reason: string, body = reason) =>
    sendJson(res, status, { error: body }, { "x-reason": reason });

  const refresh = async (req: IncomingMessage, res: ServerResponse) => {
    const query = requestUrl(req).searchParams;
    const form = req.method === "POST" ? await readForm(req) : undefined;
    const header = options.dropAuthIdHeader ? undefined : (req.headers["x-authid"] as string | undefined);
    const authId = query.get("authid") || form?.get("authid") || header;
    refreshes.push({ authId, apiKey: req.headers["x-api-key"] as string | undefined });
    if (!authId) return fail(res, 400, "No authid in query");
    if (authId.indexOf(":") <= 0) return fail(res, 400, "Invalid authid in query");
    const keyId = authId.slice(0, authId.indexOf(":"));
    const password = authId.slice(authId.indexOf(":") + 1);
    if (keyId === "v2") {
      const split = password.indexOf(":");
      const service = password.slice(0, Math.max(0, split));
      if (split <= 0 || !(service in services)) return fail(res, 400, "Invalid authid in query");
      return sendJson(res, 200, {
        access_token: `at-v2-${randomBytes(12).toString("hex")}`,
        expires,
        type: service,
      });
    }
    const count = (counts.get(keyId) ?? 0) + 1;
    counts.set(keyId, count);
    if (options.rateLimit !== undefined && count > options.rateLimit) {
      return fail(res, 503, "Too many requests for this key, wait 60 minutes");
    }
    const key = keys.get(keyId);
    if (!key) return fail(res, 404, "No such key");
    if (key.password !== password) return fail(res, 400, "Invalid authid password");
    if (key.behaviour === "crash") return sendHtml(res, 500, flaskError);
    if (typeof key.behaviour === "object") {
      const body = key.behaviour.providerError;
      return fail(
        res,
        500,
        `Authentication provider for ${services[key.service]} gave error: ${body.replace(/[\r\n]/g, "")}`,
        `Request error: ${body} (code: 400)`,
      );
    }
    sendJson(res, 200, {
      access_token: `at-${keyId.slice(0, 6)}-${randomBytes(12).toString("hex")}`,
      expires,
      type: key.service,
      // OH returns the refresh token in use before this refresh as a v2 AuthID.
      v2_authid: `v2:${key.service}:${key.refreshToken}`,
    });
  };

  const server = await startHttpServer(
    async (req, res) => {
      if (requestUrl(req).pathname === "/refresh") return refresh(req, res);
      // OH serves the provider chooser page for any other GET.
      sendHtml(res, 200, "<!doctype html><title>OAuth handler</title><p>Choose a provider</p>");
    },
    { faults, tls: options.tls },
  );

  return {
    base: server.url,
    refreshUrl: `${server.url}/refresh`,
    faults,
    refreshes,
    addKey(service, behaviour = "ok") {
      const keyId = randomBytes(16).toString("hex");
      const password = randomBytes(16).toString("base64url");
      keys.set(keyId, {
        password,
        service,
        behaviour,
        refreshToken: `rt-${randomBytes(16).toString("hex")}`,
      });
      return `${keyId}:${password}`;
    },
    revoke(authId) {
      keys.delete(authId.slice(0, authId.indexOf(":")));
    },
    close: () => server.close(),
  };
}
