import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { isStorageError, type Logger, redactingLogger } from "@stowage/core";
import type { HandlerConfig } from "./config.js";
import { failures, HandlerError, headerSafe } from "./errors.js";
import { FailureBackoff, RateLimiter } from "./limits.js";
import { HandlerMetrics } from "./metrics.js";
import { describeRefusal, isTokenResponse, ProviderClient } from "./oauth.js";
import {
  chooserPage,
  errorPage,
  loggedInPage,
  type Page,
  privacyPage,
  revokedPage,
  revokeFormPage,
} from "./pages.js";
import { type PurgeResult, purgeStore } from "./purge.js";
import { newRecord } from "./records.js";
import { type RefreshAnswer, RefreshService } from "./refresh.js";
import { type RevokeResult, revokeAuthId } from "./revoke.js";
import type { VaultStore } from "./stores/types.js";
import {
  classifyAuthId,
  ephemeralKey,
  open,
  type PresentedAuthId,
  pkceChallenge,
  randomToken,
  sameSecret,
  seal,
  sha256Hex,
} from "./vault.js";

export interface HandlerOptions {
  /** pino-shaped; everything it receives is redacted first. Silent by default. */
  logger?: Logger;
  /** The clock, in milliseconds since the epoch; tests pass one they can move. */
  now?: () => number;
  /** Purge unused records and expired logins this often while listening (the `serve` command: 6 h). */
  purgeEveryMs?: number;
}

/** A running (or ready to run) handler. */
export interface Handler {
  /** The public URL (`publicUrl`, or the listening address once `listen` resolved). */
  readonly url: string;
  /** The underlying `node:http` (or `node:https`) server. */
  readonly server: Server;
  readonly store: VaultStore;
  readonly metrics: HandlerMetrics;
  readonly config: HandlerConfig;
  /** Starts listening; default: the configuration's `listen`. Resolves with the URL. */
  listen(port?: number, host?: string): Promise<string>;
  /** Deletes records unused for `purgeAfterDays`, expired logins and fetch tokens. */
  purge(): Promise<PurgeResult>;
  /** Revokes an AuthID as `POST /revoke` does; throws a {@link HandlerError} when it cannot. */
  revoke(authId: string): Promise<RevokeResult>;
  /** Stops listening, closes every connection and the store. */
  close(): Promise<void>;
}

const STATE_LIFETIME_MS = 10 * 60_000;
const FETCH_LIFETIME_MS = 5 * 60_000;
const MAX_FORM_BYTES = 16 * 1024;
const FETCH_TOKEN = /^[A-Za-z0-9._~-]{10,200}$/;
const JSONP_CALLBACK = /^[A-Za-z_$][\w$.]{0,63}$/;
const STATE_AAD = Buffer.from("stowage-handler login state");
const FETCH_AAD = Buffer.from("stowage-handler fetch token");

/** What one request carries through the routing, for the error page, the metrics and the log line. */
interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  ip: string;
  /** Answer errors as an HTML page (a browser route asked with Accept: text/html). */
  html: boolean;
  /** Where the error page's "Start again" link goes. */
  startOver?: string;
  /** The first 8 hex digits of the KEYID, for the log. */
  keyRef?: string;
}

const browserRoutes = new Set(["/", "/login", "/logged-in", "/revoke", "/privacy"]);
const knownRoutes = new Set([...browserRoutes, "/fetch", "/refresh", "/healthz", "/metrics"]);

/**
 * Creates the handler's HTTP server around a validated configuration and an open store. Use
 * `createHandler` from the package index, which validates and opens both.
 */
export function buildHandler(
  config: HandlerConfig,
  store: VaultStore,
  options: HandlerOptions = {},
): Handler {
  return new HandlerServer(config, store, options);
}

class HandlerServer implements Handler {
  readonly server: Server;
  readonly store: VaultStore;
  readonly metrics = new HandlerMetrics();
  readonly config: HandlerConfig;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly providers = new Map<string, ProviderClient>();
  private readonly refresher: RefreshService;
  private readonly backoff: FailureBackoff;
  private readonly limit: Record<
    "refreshIp" | "refreshKey" | "loginIp" | "revokeIp" | "revokeKey" | "fetchIp",
    RateLimiter
  >;
  private publicUrl?: string;
  private purgeTimer?: NodeJS.Timeout;
  private purging?: Promise<void>;
  private closing?: Promise<void>;

  constructor(
    config: HandlerConfig,
    store: VaultStore,
    private readonly options: HandlerOptions,
  ) {
    this.config = config;
    this.store = store;
    this.publicUrl = config.publicUrl;
    this.logger = redactingLogger(options.logger);
    this.now = options.now ?? Date.now;
    for (const provider of Object.values(config.providers)) {
      this.providers.set(
        provider.id,
        new ProviderClient(provider, () => `${this.url}/logged-in`, this.logger),
      );
    }
    const { limits } = config;
    this.limit = {
      refreshIp: new RateLimiter(limits.refresh.perIp, this.now),
      refreshKey: new RateLimiter(limits.refresh.perKey, this.now),
      loginIp: new RateLimiter(limits.login.perIp, this.now),
      revokeIp: new RateLimiter(limits.revoke.perIp, this.now),
      revokeKey: new RateLimiter(limits.revoke.perKey, this.now),
      fetchIp: new RateLimiter(limits.fetch.perIp, this.now),
    };
    this.backoff = new FailureBackoff(limits.failedPassword, this.now);
    this.refresher = new RefreshService({
      store,
      providers: this.providers,
      metrics: this.metrics,
      backoff: this.backoff,
      now: this.now,
      loginUrl: (provider) => this.loginUrl(provider),
      purgeAfterDays: config.purgeAfterDays,
      logger: this.logger,
    });
    const listener = (req: IncomingMessage, res: ServerResponse) => {
      void this.handle(req, res);
    };
    this.server = config.tls
      ? createHttpsServer(
          { cert: readFileSync(config.tls.certFile), key: readFileSync(config.tls.keyFile) },
          listener,
        )
      : createHttpServer(listener);
    // Slow-loris protection: a request must arrive whole within these.
    this.server.headersTimeout = 10_000;
    this.server.requestTimeout = 30_000;
  }

  get url(): string {
    if (this.publicUrl === undefined) {
      throw new HandlerError({
        status: 500,
        code: "server_error",
        reason: "the handler has no publicUrl and is not listening yet",
      });
    }
    return this.publicUrl;
  }

  async listen(port = this.config.listen.port, host = this.config.listen.host): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, host, () => {
        this.server.off("error", reject);
        resolve();
      });
    });
    const address = this.server.address() as AddressInfo;
    if (this.publicUrl === undefined) {
      const shownHost =
        address.address === "0.0.0.0" || address.address === "::" ? "127.0.0.1" : address.address;
      const hostPart = shownHost.includes(":") ? `[${shownHost}]` : shownHost;
      this.publicUrl = `${this.config.tls ? "https" : "http"}://${hostPart}:${address.port}`;
    }
    if (this.options.purgeEveryMs !== undefined) this.startPurgeTimer(this.options.purgeEveryMs);
    this.logger.info({ url: this.publicUrl, store: this.store.location }, "stowage-handler listening");
    return this.publicUrl;
  }

  purge(): Promise<PurgeResult> {
    return purgeStore(this.store, this.config.purgeAfterDays, this.now());
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      clearInterval(this.purgeTimer);
      await this.purging;
      if (this.server.listening) {
        const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
        this.server.closeAllConnections();
        await closed;
      }
      await Promise.all([...this.providers.values()].map((client) => client.close()));
      await this.store.close();
    })();
    return this.closing;
  }

  private startPurgeTimer(everyMs: number): void {
    const run = () => {
      this.purging = this.purge().then(
        (result) => this.logger.info({ ...result }, "purge"),
        (err: unknown) => this.logger.error({ err }, "purge failed"),
      );
    };
    // Once at start as well: an instance restarted more often than `everyMs` would never purge.
    run();
    this.purgeTimer = setInterval(run, everyMs);
    // The timer must not keep a process alive that is otherwise done.
    this.purgeTimer.unref();
  }

  private loginUrl(provider?: string): string {
    const base = this.publicUrl ?? "";
    return provider === undefined ? `${base}/` : `${base}/?type=${encodeURIComponent(provider)}`;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const url = new URL(req.url ?? "/", "http://handler.invalid");
    const path = url.pathname;
    const exchange: Exchange = {
      req,
      res,
      url,
      ip: this.clientIp(req),
      html: browserRoutes.has(path) && (req.headers.accept ?? "").includes("text/html"),
    };
    res.on("finish", () => {
      const route = knownRoutes.has(path) ? path : "other";
      this.metrics.requests.inc({ route, status: String(res.statusCode) });
      const line = {
        method: req.method,
        path: route === "other" ? "(other)" : path,
        status: res.statusCode,
        ms: Math.round(performance.now() - started),
        ip: exchange.ip,
        ...(exchange.keyRef === undefined ? {} : { key: exchange.keyRef }),
      };
      this.logger.info(line, "request");
    });
    setCommonHeaders(res);
    try {
      await this.route(exchange);
    } catch (err) {
      this.fail(exchange, err);
    }
  }

  private async route(ex: Exchange): Promise<void> {
    const method = ex.req.method === "HEAD" ? "GET" : ex.req.method;
    const path = ex.url.pathname;
    const only = (...allowed: string[]) => {
      if (!allowed.includes(method ?? "")) {
        ex.res.setHeader(
          "allow",
          allowed.includes("GET") ? [...allowed, "HEAD"].join(", ") : allowed.join(", "),
        );
        throw failures.methodNotAllowed(allowed);
      }
    };
    switch (path) {
      case "/":
        only("GET");
        return this.chooser(ex);
      case "/login":
        only("GET");
        return this.login(ex);
      case "/logged-in":
        only("GET");
        return this.loggedIn(ex);
      case "/fetch":
        only("GET");
        return this.fetch(ex);
      case "/refresh":
        only("GET", "POST");
        return this.refresh(ex, method === "POST");
      case "/revoke":
        only("GET", "POST");
        return method === "GET"
          ? this.sendPage(ex, 200, revokeFormPage(this.pageBase()))
          : this.revokeRequest(ex);
      case "/privacy":
        only("GET");
        return this.sendPage(
          ex,
          200,
          privacyPage({
            ...this.pageBase(),
            storeKind: { sqlite: "SQLite", postgres: "PostgreSQL", memory: "in-memory" }[this.store.kind],
            purgeAfterDays: this.config.purgeAfterDays,
            contact: this.config.contact,
          }),
        );
      case "/healthz":
        only("GET");
        return this.healthz(ex);
      case "/metrics":
        only("GET");
        return this.sendMetrics(ex);
      default:
        throw failures.notFound(path);
    }
  }

  private pageBase() {
    return { appName: this.config.appName, nonce: randomBytes(16).toString("base64") };
  }

  private async chooser(ex: Exchange): Promise<void> {
    const type = ex.url.searchParams.get("type");
    const fetchToken = this.fetchTokenParam(ex);
    const all = [...this.providers.values()].map((client) => client.config);
    const shown =
      type === null ? all.filter((provider) => !provider.hidden) : all.filter((p) => p.id === type);
    if (type !== null && shown.length === 0) throw failures.unknownProvider(type, this.visibleIds());
    if (fetchToken !== undefined)
      await this.store.registerFetch(sha256Hex(fetchToken), this.now() + FETCH_LIFETIME_MS);
    this.sendPage(ex, 200, chooserPage({ ...this.pageBase(), providers: shown, fetchToken }));
  }

  private fetchTokenParam(ex: Exchange): string | undefined {
    const token = ex.url.searchParams.get("token");
    if (token === null || token === "") return undefined;
    if (!FETCH_TOKEN.test(token)) {
      throw new HandlerError({
        status: 400,
        code: "invalid_fetch_token",
        reason: "Invalid fetch token: it must be 10 to 200 letters, digits, '.', '_', '~' or '-'",
        hint: "the application that opened this page sent a malformed token; start again from it",
      });
    }
    return token;
  }

  private visibleIds(): string[] {
    return [...this.providers.values()].filter((c) => !c.config.hidden).map((c) => c.config.id);
  }

  private async login(ex: Exchange): Promise<void> {
    ex.startOver = this.loginUrl();
    this.limitOrThrow(this.limit.loginIp, ex.ip, "/login", "ip", "from this address");
    const id = ex.url.searchParams.get("id") ?? "";
    const client = this.providers.get(id);
    if (client === undefined) throw failures.unknownProvider(id, this.visibleIds());
    ex.startOver = this.loginUrl(id);
    const fetchToken = this.fetchTokenParam(ex);
    const state = randomToken(32);
    const verifier = client.config.pkce ? randomToken(32) : undefined;
    const now = this.now();
    await this.store.saveLoginState(sha256Hex(state), {
      provider: id,
      sealed: seal(ephemeralKey(state, "state"), STATE_AAD, JSON.stringify({ verifier, fetchToken })),
      expiresAt: now + STATE_LIFETIME_MS,
    });
    if (fetchToken !== undefined)
      await this.store.registerFetch(sha256Hex(fetchToken), now + FETCH_LIFETIME_MS);
    const location = client.authorizeUrl(state, verifier === undefined ? undefined : pkceChallenge(verifier));
    ex.res.writeHead(302, { location });
    ex.res.end();
  }

  private async loggedIn(ex: Exchange): Promise<void> {
    const params = ex.url.searchParams;
    ex.startOver = this.loginUrl();
    const state = params.get("state");
    if (!state) {
      throw new HandlerError({
        status: 400,
        code: "invalid_state",
        reason: "This sign-in link is incomplete: it has no state",
        hint: "start the sign-in again from the beginning",
      });
    }
    const taken = await this.store.takeLoginState(sha256Hex(state), this.now());
    const opened = taken && open(ephemeralKey(state, "state"), STATE_AAD, taken.sealed);
    if (taken === undefined || opened === undefined) {
      this.metrics.logins.inc({ provider: taken?.provider ?? "unknown", outcome: "bad-state" });
      throw new HandlerError({
        status: 400,
        code: "invalid_state",
        reason: "This sign-in link has expired or was already used",
        hint: "a sign-in must finish within 10 minutes and each link works once; start again",
      });
    }
    const provider = taken.provider;
    ex.startOver = this.loginUrl(provider);
    const { verifier, fetchToken } = JSON.parse(opened) as { verifier?: string; fetchToken?: string };
    const providerError = params.get("error");
    if (providerError !== null) {
      this.metrics.logins.inc({ provider, outcome: "provider-error" });
      const description = params.get("error_description");
      throw new HandlerError({
        status: 400,
        code: "login_refused",
        reason: `Authentication provider for ${provider} did not sign you in: ${describeRefusal({
          error: providerError.slice(0, 60),
          description: description?.slice(0, 200),
        })}`,
        hint: "start again, and approve the access when the provider asks",
      });
    }
    const code = params.get("code");
    const client = this.providers.get(provider);
    if (!code || client === undefined) {
      this.metrics.logins.inc({ provider, outcome: "no-code" });
      throw new HandlerError({
        status: 400,
        code: "no_code",
        reason:
          client === undefined
            ? `The provider '${provider}' is no longer configured`
            : "The provider sent no authorization code",
        hint: "start the sign-in again",
      });
    }
    const exchanged = await client.exchangeCode(code, verifier);
    if (!isTokenResponse(exchanged)) {
      this.metrics.logins.inc({ provider, outcome: exchanged.error });
      throw new HandlerError({
        status: 400,
        code: "login_refused",
        reason: `Authentication provider for ${provider} refused the sign-in (${describeRefusal(exchanged)})`,
        hint: "start again; if it keeps failing, the handler's operator should check the app registration and redirect URI",
      });
    }
    if (exchanged.refreshToken === undefined) {
      this.metrics.logins.inc({ provider, outcome: "no-refresh-token" });
      const deauthorize = client.config.deauthorizeUrl;
      throw new HandlerError({
        status: 502,
        code: "no_refresh_token",
        reason: `Authentication provider for ${provider} issued no refresh token`,
        hint: deauthorize
          ? `remove this app's access at ${deauthorize}, then sign in again`
          : "the provider may need offline access enabled; the handler's operator should check the scopes",
      });
    }
    const now = this.now();
    const { authId, record } = newRecord(
      provider,
      { refreshToken: exchanged.refreshToken, scope: exchanged.scope },
      exchanged,
      now,
    );
    await this.store.insert(record);
    ex.keyRef = record.keyId.slice(0, 8);
    let fetchRegistered = false;
    if (fetchToken !== undefined) {
      const sealed = seal(ephemeralKey(fetchToken, "fetch"), FETCH_AAD, authId);
      fetchRegistered = await this.store.completeFetch(
        sha256Hex(fetchToken),
        sealed,
        now + FETCH_LIFETIME_MS,
        now,
      );
    }
    this.metrics.logins.inc({ provider, outcome: "ok" });
    this.sendPage(
      ex,
      200,
      loggedInPage({
        ...this.pageBase(),
        authId,
        provider: client.config,
        allowedOrigins: this.config.allowedOrigins,
        fetchRegistered,
      }),
    );
  }

  private async fetch(ex: Exchange): Promise<void> {
    const callback = ex.url.searchParams.get("callback") ?? ex.url.searchParams.get("jsonp");
    if (callback !== null && !JSONP_CALLBACK.test(callback)) {
      throw new HandlerError({
        status: 400,
        code: "invalid_callback",
        reason: "Invalid callback: it must be a JavaScript identifier path",
      });
    }
    const origin = ex.req.headers.origin;
    if (origin !== undefined && this.config.allowedOrigins.includes(origin)) {
      ex.res.setHeader("access-control-allow-origin", origin);
      ex.res.setHeader("vary", "Origin");
    }
    const reply = (status: number, body: Record<string, string>) => {
      // A JSONP script element ignores the body of a non-2xx answer, so JSONP always answers 200.
      if (callback !== null) return sendJsonp(ex.res, callback, body);
      if (status !== 200) ex.res.setHeader("x-reason", headerSafe(body.error ?? ""));
      sendJson(ex.res, status, body);
    };
    const decision = this.limit.fetchIp.take(ex.ip);
    if (!decision.ok) {
      this.metrics.rateLimited.inc({ route: "/fetch", scope: "ip" });
      ex.res.setHeader("retry-after", String(Math.ceil(decision.retryAfterMs / 1000)));
      return reply(429, failureBody(failures.rateLimited("from this address", decision.retryAfterMs)));
    }
    const token = ex.url.searchParams.get("token");
    if (!token) return reply(400, { error: "Missing token", code: "missing_token" });
    const entry = FETCH_TOKEN.test(token)
      ? await this.store.takeFetch(sha256Hex(token), this.now())
      : undefined;
    if (entry === undefined) return reply(404, { error: "No such entry", code: "no_such_entry" });
    if (entry.status === "wait") return reply(200, { wait: "Not ready" });
    const authId = open(ephemeralKey(token, "fetch"), FETCH_AAD, entry.sealed);
    if (authId === undefined) return reply(404, { error: "No such entry", code: "no_such_entry" });
    reply(200, { authid: authId });
  }

  private async refresh(ex: Exchange, post: boolean): Promise<void> {
    const started = performance.now();
    // First, so that every request from an address counts, whatever is wrong with it.
    this.limitOrThrow(this.limit.refreshIp, ex.ip, "/refresh", "ip", "from this address");
    const form = post ? await readForm(ex.req) : undefined;
    const raw = form?.get("authid") || ex.url.searchParams.get("authid") || headerValue(ex.req, "x-authid");
    if (this.config.apiKeys.length > 0) {
      const given = headerValue(ex.req, "x-api-key") ?? "";
      // Every key is compared, so the time taken does not say which one nearly matched.
      const matches = this.config.apiKeys.map((key) => sameSecret(given, key));
      if (!matches.includes(true)) throw failures.badApiKey();
    }
    if (!raw) throw failures.noAuthId();
    const authId = this.presented(ex, raw);
    this.limitOrThrow(this.limit.refreshKey, limitKey(authId), "/refresh", "key", "for this AuthID");
    const answer: RefreshAnswer =
      authId.kind === "v1"
        ? await this.refresher.refreshV1(authId.keyId, authId.secret)
        : await this.refresher.refreshV2(authId.service, authId.refreshToken);
    const body: Record<string, string | number> = {
      access_token: answer.accessToken,
      expires: answer.expires,
      type: answer.type,
    };
    if (answer.v2AuthId !== undefined) body.v2_authid = answer.v2AuthId;
    sendJson(ex.res, 200, body);
    this.metrics.refreshSeconds.observe({ source: answer.source }, (performance.now() - started) / 1000);
  }

  revoke(raw: string): Promise<RevokeResult> {
    const authId = classifyAuthId(raw);
    if (authId.kind === "invalid") throw failures.invalidAuthId(authId.why, this.loginUrl());
    return this.revokePresented(authId);
  }

  private revokePresented(authId: PresentedAuthId & { kind: "v1" | "v2" }): Promise<RevokeResult> {
    return revokeAuthId(authId, {
      store: this.store,
      providers: this.providers,
      refresher: this.refresher,
      metrics: this.metrics,
      backoff: this.backoff,
      loginUrl: (provider) => this.loginUrl(provider),
      purgeAfterDays: this.config.purgeAfterDays,
      logger: this.logger,
      now: this.now,
    });
  }

  private async revokeRequest(ex: Exchange): Promise<void> {
    this.limitOrThrow(this.limit.revokeIp, ex.ip, "/revoke", "ip", "from this address");
    const form = await readForm(ex.req);
    const raw = form.get("authid") || headerValue(ex.req, "x-authid");
    if (!raw) throw failures.noAuthId();
    const authId = this.presented(ex, raw);
    this.limitOrThrow(this.limit.revokeKey, limitKey(authId), "/revoke", "key", "for this AuthID");
    const result = await this.revokePresented(authId);
    if (ex.html) return this.sendPage(ex, 200, revokedPage({ ...this.pageBase(), result }));
    sendJson(ex.res, 200, { ...result });
  }

  private presented(ex: Exchange, raw: string): PresentedAuthId & { kind: "v1" | "v2" } {
    const authId = classifyAuthId(raw);
    if (authId.kind === "invalid") throw failures.invalidAuthId(authId.why, this.loginUrl());
    if (authId.kind === "v1") ex.keyRef = authId.keyId.slice(0, 8);
    return authId;
  }

  private async healthz(ex: Exchange): Promise<void> {
    try {
      await this.store.ping();
    } catch (err) {
      throw failures.storeDown(err);
    }
    sendJson(ex.res, 200, { status: "ok", store: this.store.kind });
  }

  private async sendMetrics(ex: Exchange): Promise<void> {
    let records: number | undefined;
    let storeUp = true;
    try {
      records = await this.store.countRecords();
    } catch {
      storeUp = false;
    }
    const text = this.metrics.render({ records, storeUp });
    ex.res.writeHead(200, {
      "content-type": "text/plain; version=0.0.4; charset=utf-8",
      "content-length": String(Buffer.byteLength(text)),
    });
    ex.res.end(text);
  }

  private limitOrThrow(limiter: RateLimiter, key: string, route: string, scope: string, what: string): void {
    const decision = limiter.take(key);
    if (decision.ok) return;
    this.metrics.rateLimited.inc({ route, scope });
    throw failures.rateLimited(what, decision.retryAfterMs);
  }

  private clientIp(req: IncomingMessage): string {
    const peer = req.socket.remoteAddress ?? "unknown";
    const hops = this.config.trustProxy;
    if (hops === 0) return peer;
    const forwarded = headerValue(req, "x-forwarded-for");
    if (forwarded === undefined) return peer;
    // Each trusted proxy appended the address it saw: the client is `hops` entries from the right.
    const entries = forwarded
      .split(",")
      .map((entry) => entry.trim())
      .filter(Boolean);
    return entries[entries.length - hops] ?? entries[0] ?? peer;
  }

  private sendPage(ex: Exchange, status: number, page: Page): void {
    const body = page.html;
    ex.res.writeHead(status, {
      "content-type": "text/html; charset=utf-8",
      "content-length": String(Buffer.byteLength(body)),
      "content-security-policy": [
        "default-src 'none'",
        `script-src 'nonce-${page.nonce}'`,
        `style-src 'nonce-${page.nonce}'`,
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
      ].join("; "),
      "x-frame-options": "DENY",
    });
    ex.res.end(body);
  }

  private fail(ex: Exchange, err: unknown): void {
    let error: HandlerError;
    if (err instanceof HandlerError) error = err;
    else if (
      isStorageError(err) &&
      err.provider === "handler" &&
      err.operation === "store" &&
      err.code === "Unavailable"
    ) {
      error = failures.storeDown(err);
    } else error = failures.server(randomBytes(4).toString("hex"), err);
    if (error.status >= 500)
      this.logger.error({ err: error.cause ?? err, reason: error.reason }, "request failed");
    if (ex.res.headersSent) {
      ex.res.destroy();
      return;
    }
    ex.res.setHeader("x-reason", headerSafe(error.reason));
    if (error.retryAfterMs !== undefined)
      ex.res.setHeader("retry-after", String(Math.ceil(error.retryAfterMs / 1000)));
    if (ex.html) {
      this.sendPage(
        ex,
        error.status,
        errorPage({
          ...this.pageBase(),
          status: error.status,
          reason: error.reason,
          hint: error.hint,
          startOver: ex.startOver,
        }),
      );
      return;
    }
    sendJson(ex.res, error.status, failureBody(error));
  }
}

function failureBody(error: HandlerError): Record<string, string> {
  const body: Record<string, string> = { error: error.reason, code: error.code };
  if (error.hint !== undefined) body.hint = error.hint;
  return body;
}

function limitKey(authId: PresentedAuthId & { kind: "v1" | "v2" }): string {
  return authId.kind === "v1" ? authId.keyId : `v2:${sha256Hex(authId.refreshToken)}`;
}

function setCommonHeaders(res: ServerResponse): void {
  // Every answer may carry a token, an AuthID or a one-time page: nothing is cached anywhere.
  res.setHeader("cache-control", "no-store");
  res.setHeader("x-content-type-options", "nosniff");
  // The /logged-in URL carries the authorization code: it must not leak through Referer.
  res.setHeader("referrer-policy", "no-referrer");
  // Duplicati's web UI reads X-Reason from cross-origin answers.
  res.setHeader("access-control-expose-headers", "X-Reason");
}

function headerValue(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  const text = Array.isArray(value) ? value[0] : value;
  return text === undefined || text === "" ? undefined : text;
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": String(Buffer.byteLength(text)),
  });
  res.end(text);
}

function sendJsonp(res: ServerResponse, callback: string, body: unknown): void {
  const text = `/**/${callback}(${JSON.stringify(body)});`;
  res.writeHead(200, {
    "content-type": "application/javascript; charset=utf-8",
    "content-length": String(Buffer.byteLength(text)),
  });
  res.end(text);
}

/** Reads an `application/x-www-form-urlencoded` body of at most 16 KiB (an empty body is an empty form). */
async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const type = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
  const declared = Number(req.headers["content-length"] ?? "0");
  if (declared > MAX_FORM_BYTES) {
    req.resume();
    throw failures.bodyTooLarge(MAX_FORM_BYTES);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_FORM_BYTES) {
      req.resume();
      throw failures.bodyTooLarge(MAX_FORM_BYTES);
    }
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return new URLSearchParams();
  if (type !== "application/x-www-form-urlencoded") throw failures.unsupportedType();
  return new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
}
