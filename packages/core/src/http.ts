import { channel } from "node:diagnostics_channel";
import { STATUS_CODES } from "node:http";
import { Readable } from "node:stream";
import { Agent, type Dispatcher, interceptors, request } from "undici";
import type { z } from "zod";
import {
  abortedError,
  type ErrorCode,
  StorageError,
  type StorageErrorInit,
  toStorageError,
} from "./errors.js";
import { createLimiter, type Limiter } from "./limiter.js";
import { REDACTED, redact, redactUrl, registerSecret } from "./redact.js";
import { type RetryOptions, retry } from "./retry.js";
import type { Logger, TokenSource } from "./types.js";

/** What a `classify` hook sees of a failed response. */
export interface HttpErrorResponse {
  status: number;
  /** Lower-case names. */
  headers: Record<string, string>;
  /** The start of the body (at most 64 KiB), as text. */
  bodyText: string;
}

export interface HttpClientOptions {
  /** Names the provider in errors, logs and events. */
  provider: string;
  /** Relative request URLs are appended to this one (`baseUrl` + `/` + `url`). */
  baseUrl?: string;
  /** Sends `Authorization: Bearer <token>` on every request unless the request sets `auth: false`. */
  tokenSource?: TokenSource;
  /** Sent on every request; a request's own headers win. */
  headers?: Record<string, string>;
  /** Default 10 s. */
  connectTimeoutMs?: number;
  /** How long to wait for the response headers once the request is sent. Default 60 s. */
  headersTimeoutMs?: number;
  /** How long the body may stall between two chunks; there is no limit on a whole transfer. Default 60 s. */
  bodyTimeoutMs?: number;
  /**
   * Requests in flight at once; a request holds its slot until its response headers arrive (or, for a
   * failure, until its error body is read). Default 8.
   */
  concurrency?: number;
  /** Retry settings for replayable requests, or `false` to never retry. Default: `retry`'s defaults. */
  retry?: RetryOptions | false;
  /** Receives one redacted `debug` line per request. Silent by default. */
  logger?: Logger;
  /**
   * An undici dispatcher to send through (a proxy agent, a mock). The client does not close it.
   * By default the client creates an `Agent` with the timeouts above.
   */
  dispatcher?: Dispatcher;
  /**
   * Provider-specific error mapping: fields returned here override the status table (code, hint,
   * retryable, …). A returned `message` replaces the server's text after `METHOD path returned N`.
   */
  classify?: (response: HttpErrorResponse) => Partial<StorageErrorInit> | undefined;
}

/** A body that can be sent again as it is (string, bytes), or a one-shot stream. */
export type HttpBody = string | Uint8Array | Readable;

export interface HttpRequest {
  method: string;
  /** Absolute, or relative to `baseUrl`. */
  url: string;
  /** Names the operation in errors, logs and events (`stat`, `put`, `createUploadSession`, …). */
  operation: string;
  key?: string;
  headers?: Record<string, string>;
  /** Added to the URL's query; `undefined` values are skipped. */
  query?: Record<string, string | number | undefined>;
  /** A stream body is never retried, not even after a 401 (the token is still invalidated). */
  body?: HttpBody;
  /** Sent as the JSON body, with `content-type: application/json` unless a header sets another. */
  json?: unknown;
  /** Default: true when the client has a `tokenSource`. False e.g. for pre-authenticated upload URLs. */
  auth?: boolean;
  /**
   * The URL itself grants access (a pre-authenticated upload or download URL): errors, logs and events
   * show only its origin. Default: true when `auth` is false on a client that has a `tokenSource`.
   */
  secretUrl?: boolean;
  /** Statuses that are a success. Default: any 2xx. */
  expect?: number[];
  signal?: AbortSignal;
  /**
   * Whether retryable failures are retried. Default true; only requests without a stream body are
   * ever retried, so a `POST` of a string is retried and an upload stream is not.
   */
  retry?: boolean;
  /** Follow up to 5 redirects; `Authorization` is dropped when one leaves the origin. Default false. */
  followRedirects?: boolean;
}

/**
 * A response whose status was expected. The body is read once: through `body`, or through one of
 * `text()`, `json()`, `arrayBuffer()` or `dump()`. Read errors are {@link StorageError}s.
 *
 * `body` is a web `ReadableStream` so that it can be handed on as a `Download.body` unchanged.
 */
export interface HttpResponse {
  readonly status: number;
  /** Lower-case names; repeated headers are joined with `, `. */
  readonly headers: Record<string, string>;
  readonly body: ReadableStream<Uint8Array>;
  text(): Promise<string>;
  /** Parses the body as JSON; with a schema, a mismatch is `Protocol` naming the field and the issue. */
  json(): Promise<unknown>;
  json<T>(schema: z.ZodType<T>): Promise<T>;
  arrayBuffer(): Promise<ArrayBuffer>;
  /** Discards the body, letting the connection be reused. */
  dump(): Promise<void>;
}

const requestChannel = channel("stowage:request");
const tokenChannel = channel("stowage:token");

const MAX_ERROR_BODY_BYTES = 65_536;
const MAX_EXCERPT_CHARS = 300;
const MAX_REDIRECTIONS = 5;
const MAX_LISTED_ISSUES = 3;
const ASCTIME = /^[A-Za-z]{3} [A-Za-z]{3} [ \d]\d \d{2}:\d{2}:\d{2} \d{4}$/;

const statusErrors: Record<number, { code: ErrorCode; hint?: string }> = {
  400: { code: "Protocol" },
  401: { code: "Unauthenticated", hint: "check the credentials, or create a new token" },
  403: { code: "PermissionDenied", hint: "check that the account may access this location" },
  404: { code: "NotFound" },
  408: { code: "Timeout" },
  409: { code: "Conflict" },
  412: { code: "Conflict" },
  413: { code: "Unsupported", hint: "the request is too large for this server; use a smaller chunk size" },
  416: { code: "Protocol" },
  423: { code: "Conflict", hint: "the item is locked; try again once the lock is released" },
  429: { code: "RateLimited" },
  500: { code: "Unavailable" },
  502: { code: "Unavailable" },
  503: { code: "Unavailable" },
  504: { code: "Unavailable" },
  507: { code: "QuotaExceeded", hint: "free some space or raise the storage quota" },
};

/** How one request is named in errors, logs and events; every field is safe to show. */
interface Call {
  context: { provider: string; operation: string; key?: string };
  method: string;
  /** The redacted path and query, for messages. */
  path: string;
  /** The redacted absolute URL, for logs and events. */
  url: string;
  signal?: AbortSignal;
}

/**
 * Creates the HTTP client a provider sends its remote calls through.
 *
 * @example
 * const http = createHttpClient({ provider: "onedrive", baseUrl: "https://graph.microsoft.com/v1.0", tokenSource });
 * const item = await http.requestJson({ method: "GET", url: "/me/drive/root:/a.txt", operation: "stat", key: "a.txt" }, itemSchema);
 */
export function createHttpClient(options: HttpClientOptions): HttpClient {
  return new HttpClient(options);
}

/**
 * One place for request building, timeouts, bearer auth, error classification, `Retry-After`,
 * retries, response validation and redaction. Create it with {@link createHttpClient}.
 *
 * On a 401 the token that was used goes to `tokenSource.invalidate(token)` and the request is sent
 * once more with a fresh token; a second 401 is `Unauthenticated`. Each request is published on
 * `node:diagnostics_channel` as `stowage:request`, each invalidation as `stowage:token`.
 */
export class HttpClient {
  readonly provider: string;
  private readonly options: HttpClientOptions;
  private readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;
  private redirecting?: Dispatcher;
  private readonly limiter: Limiter;
  private closed = false;

  constructor(options: HttpClientOptions) {
    this.provider = options.provider;
    this.options = options;
    this.ownsDispatcher = options.dispatcher === undefined;
    this.dispatcher =
      options.dispatcher ??
      new Agent({
        connectTimeout: options.connectTimeoutMs ?? 10_000,
        headersTimeout: options.headersTimeoutMs ?? 60_000,
        bodyTimeout: options.bodyTimeoutMs ?? 60_000,
      });
    this.limiter = createLimiter(options.concurrency ?? 8);
  }

  /**
   * Sends a request and resolves once its headers arrive with an expected status; any other status
   * becomes a {@link StorageError} classified by status (and `classify`), carrying `retryAfterMs`.
   */
  async request(req: HttpRequest): Promise<HttpResponse> {
    const context = { provider: this.provider, operation: req.operation, key: req.key };
    if (this.closed) {
      throw new StorageError({ ...context, code: "InvalidConfig", message: "the HTTP client was closed" });
    }
    const url = this.resolveUrl(req, context);
    const method = req.method.toUpperCase();
    const useAuth = (req.auth ?? true) && this.options.tokenSource !== undefined;
    const secretUrl = req.secretUrl ?? (req.auth === false && this.options.tokenSource !== undefined);
    const call: Call = { context, method, ...displayUrl(url, secretUrl), signal: req.signal };
    const body = req.json === undefined ? req.body : JSON.stringify(req.json);
    const headers = lowerCaseKeys({ ...this.options.headers, ...req.headers });
    if (req.json !== undefined) headers["content-type"] ??= "application/json";
    const replayable = !(body instanceof Readable);
    const expected = (status: number) =>
      req.expect ? req.expect.includes(status) : status >= 200 && status < 300;
    const dispatcher = req.followRedirects ? this.redirectingDispatcher() : this.dispatcher;
    let refreshed = false;

    const attemptOnce = (attempt: number): Promise<HttpResponse> =>
      this.limiter.run(async () => {
        const send = async (token: string | undefined) => {
          const sent = token === undefined ? headers : { ...headers, authorization: `Bearer ${token}` };
          return this.send(call, attempt, url, { method, headers: sent, body, dispatcher });
        };
        let token = useAuth ? await this.token(req.signal) : undefined;
        let response = await send(token);
        if (response.statusCode === 401 && token !== undefined) {
          this.invalidate(token);
          if (replayable && !refreshed) {
            refreshed = true;
            await response.body.dump();
            token = await this.token(req.signal);
            response = await send(token);
            if (response.statusCode === 401) this.invalidate(token);
          }
        }
        if (expected(response.statusCode)) return new UndiciResponse(response, call);
        throw await this.failure(response, call);
      }, req.signal);

    const normalised = async (attempt: number) => {
      try {
        return await attemptOnce(attempt);
      } catch (err) {
        throw failure(err, call);
      }
    };

    const retryOptions = this.options.retry;
    if (!replayable || req.retry === false || retryOptions === false) return normalised(1);
    return retry(normalised, { ...retryOptions, signal: req.signal, context });
  }

  /**
   * Sends a request and validates its JSON body with `schema`. A body that is not JSON, or does not
   * match, is `Protocol` naming the field path and the issue, never the body itself.
   */
  async requestJson<T>(req: HttpRequest, schema: z.ZodType<T>): Promise<T> {
    const response = await this.request({ ...req, headers: { accept: "application/json", ...req.headers } });
    return response.json(schema);
  }

  /** Closes the connections of the dispatcher the client created (not one passed in options). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.ownsDispatcher) await this.dispatcher.close();
  }

  private resolveUrl(req: HttpRequest, context: Call["context"]): URL {
    const absolute = /^[a-z][a-z0-9+.-]*:/i.test(req.url);
    const base = this.options.baseUrl;
    if (!absolute && base === undefined) {
      throw new StorageError({
        ...context,
        code: "InvalidConfig",
        message: `the request URL '${req.url}' is relative and the client has no baseUrl`,
      });
    }
    const text = absolute ? req.url : `${base?.replace(/\/+$/, "")}/${req.url.replace(/^\/+/, "")}`;
    let url: URL;
    try {
      url = new URL(text);
    } catch (err) {
      throw new StorageError({
        ...context,
        code: "InvalidConfig",
        message: `'${text}' is not a valid URL`,
        cause: err,
      });
    }
    for (const [name, value] of Object.entries(req.query ?? {})) {
      if (value !== undefined) url.searchParams.set(name, String(value));
    }
    return url;
  }

  private redirectingDispatcher(): Dispatcher {
    this.redirecting ??= this.dispatcher.compose(
      interceptors.redirect({ maxRedirections: MAX_REDIRECTIONS }),
    );
    return this.redirecting;
  }

  private async token(signal: AbortSignal | undefined): Promise<string> {
    let token: string;
    try {
      ({ token } = await this.options.tokenSource!.getToken({ signal }));
    } catch (err) {
      // The token source retries its own transient failures; retrying the request around it as well
      // would multiply the calls to a handler that is down (5 × 5), so its failure is final here.
      const error = toStorageError(err, { provider: this.provider, operation: "token" });
      if (!error.retryable) throw error;
      throw new StorageError({
        provider: error.provider,
        operation: error.operation,
        code: error.code,
        message: error.detail,
        hint: error.hint,
        status: error.status,
        retryAfterMs: error.retryAfterMs,
        retryable: false,
        cause: error,
      });
    }
    // Defence in depth: a server may echo the token in an error body; redaction then removes it.
    registerSecret(token);
    return token;
  }

  private invalidate(token: string): void {
    const source = this.options.tokenSource!;
    source.invalidate(token);
    if (tokenChannel.hasSubscribers) {
      tokenChannel.publish({ provider: this.provider, kind: source.kind, event: "invalidate" });
    }
  }

  private async send(
    call: Call,
    attempt: number,
    url: URL,
    init: {
      method: string;
      headers: Record<string, string>;
      body: HttpBody | undefined;
      dispatcher: Dispatcher;
    },
  ): Promise<Dispatcher.ResponseData> {
    const started = performance.now();
    const report = (status: number | undefined, code?: ErrorCode) => {
      const event = {
        provider: this.provider,
        operation: call.context.operation,
        method: call.method,
        url: call.url,
        status,
        ms: Math.round(performance.now() - started),
        attempt,
        ...(code === undefined ? {} : { code }),
      };
      if (requestChannel.hasSubscribers) requestChannel.publish(event);
      this.options.logger?.debug(event, "http request");
    };
    try {
      const response = await request(url, {
        method: init.method as Dispatcher.HttpMethod,
        headers: init.headers,
        body: init.body,
        signal: call.signal,
        dispatcher: init.dispatcher,
        headersTimeout: this.options.headersTimeoutMs ?? 60_000,
        bodyTimeout: this.options.bodyTimeoutMs ?? 60_000,
      });
      report(response.statusCode);
      return response;
    } catch (err) {
      const error = failure(err, call);
      report(undefined, error.code);
      throw error;
    }
  }

  private async failure(response: Dispatcher.ResponseData, call: Call): Promise<StorageError> {
    const status = response.statusCode;
    const headers = flattenHeaders(response.headers);
    const bodyText = await readStart(response.body, MAX_ERROR_BODY_BYTES);
    const { message: classified, ...override } = definedFields(
      this.options.classify?.({ status, headers, bodyText }) ?? {},
    );
    const row = statusErrors[status] ?? { code: "Protocol" };
    const what = classified ?? excerpt(bodyText);
    const statusText = STATUS_CODES[status] ? ` ${STATUS_CODES[status]}` : "";
    return new StorageError({
      ...call.context,
      code: row.code,
      // The table's hint belongs to the table's code; a hook that changes the code brings its own.
      hint: override.code === undefined || override.code === row.code ? row.hint : undefined,
      status,
      retryAfterMs: parseRetryAfter(headers["retry-after"]),
      ...override,
      message: `${call.method} ${call.path} returned ${status}${statusText}${what ? `: ${what}` : ""}`,
    });
  }
}

class UndiciResponse implements HttpResponse {
  readonly status: number;
  readonly headers: Record<string, string>;
  private readonly raw: Dispatcher.ResponseData["body"];
  private readonly call: Call;
  private stream?: ReadableStream<Uint8Array>;

  constructor(response: Dispatcher.ResponseData, call: Call) {
    this.status = response.statusCode;
    this.headers = flattenHeaders(response.headers);
    this.raw = response.body;
    this.call = call;
  }

  get body(): ReadableStream<Uint8Array> {
    this.stream ??= toWebStream(this.raw, (err) => failure(err, this.call));
    return this.stream;
  }

  text(): Promise<string> {
    return this.read(() => this.raw.text());
  }

  arrayBuffer(): Promise<ArrayBuffer> {
    return this.read(() => this.raw.arrayBuffer());
  }

  dump(): Promise<void> {
    return this.read(() => this.raw.dump());
  }

  json(): Promise<unknown>;
  json<T>(schema: z.ZodType<T>): Promise<T>;
  async json<T>(schema?: z.ZodType<T>): Promise<unknown> {
    const text = await this.text();
    const protocol = (what: string, hint?: string) =>
      new StorageError({
        ...this.call.context,
        code: "Protocol",
        status: this.status,
        message: `${this.call.method} ${this.call.path}: ${what}`,
        hint,
      });
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch {
      // The parser's message quotes the body, which may hold anything; it is not kept.
      throw protocol(
        `the response is not valid JSON (${text.length} characters)`,
        "check that the URL points at the service's API",
      );
    }
    if (schema === undefined) return data;
    const parsed = schema.safeParse(data);
    if (parsed.success) return parsed.data;
    throw protocol(`the response does not have the expected shape: ${describeIssues(parsed.error.issues)}`);
  }

  private async read<T>(consume: () => Promise<T>): Promise<T> {
    try {
      return await consume();
    } catch (err) {
      throw failure(err, this.call);
    }
  }
}

/**
 * Parses a `Retry-After` header, in delta-seconds (`120`) or as an HTTP date (all three RFC 9110
 * forms), into milliseconds from `now`. A date in the past gives 0; anything unparsable, `undefined`.
 *
 * @example
 * parseRetryAfter("120") // 120000
 * parseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT", Date.parse("Wed, 21 Oct 2015 07:27:00 GMT")) // 60000
 */
export function parseRetryAfter(value: string | undefined, now: number = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  // asctime carries no zone and means GMT; Date.parse alone would read it as local time.
  const date = / GMT$/.test(text)
    ? Date.parse(text)
    : ASCTIME.test(text)
      ? Date.parse(`${text} GMT`)
      : Number.NaN;
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

function failure(err: unknown, call: Call): StorageError {
  if (call.signal?.aborted) return abortedError(call.context, call.signal.reason);
  if (err instanceof StorageError) return toStorageError(err, call.context);
  const mapped = toStorageError(err, call.context);
  return new StorageError({
    ...call.context,
    code: mapped.code,
    retryable: mapped.retryable,
    message: `${call.method} ${call.path}: ${mapped.detail}`,
    cause: err,
  });
}

function displayUrl(url: URL, secret: boolean): { path: string; url: string } {
  if (secret) return { path: `/${REDACTED}`, url: `${url.origin}/${REDACTED}` };
  const bare = new URL(url.href);
  bare.username = "";
  bare.password = "";
  const shown = redactUrl(bare);
  return { path: shown.startsWith(bare.origin) ? shown.slice(bare.origin.length) : shown, url: shown };
}

function lowerCaseKeys(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).map(([name, value]) => [name.toLowerCase(), value]));
}

function flattenHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined) out[name.toLowerCase()] = Array.isArray(value) ? value.join(", ") : value;
  }
  return out;
}

function definedFields<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, field]) => field !== undefined)) as Partial<T>;
}

async function readStart(body: Readable, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body) {
      chunks.push(chunk as Buffer);
      size += (chunk as Buffer).length;
      if (size >= limit) break;
    }
  } catch {
    // The status already says what failed; a broken error body adds nothing to it.
  }
  return Buffer.concat(chunks).subarray(0, limit).toString("utf8");
}

// Graph and Drive wrap their text as {"error": {"code", "message"}}, OAuth servers as
// {"error", "error_description"}; anything else is shown as sent.
function excerpt(bodyText: string): string {
  let text = bodyText;
  try {
    text = messageOf(JSON.parse(bodyText)) ?? bodyText;
  } catch {
    // Not JSON: the raw text is the message.
  }
  // Redacted before it is cut, so that a secret cut in half cannot escape the redaction.
  const clean = redact(text.replace(/\s+/g, " ").trim());
  return clean.length > MAX_EXCERPT_CHARS ? `${clean.slice(0, MAX_EXCERPT_CHARS - 1)}…` : clean;
}

function messageOf(data: unknown): string | undefined {
  if (typeof data !== "object" || data === null) return undefined;
  const { error, error_description, message } = data as Record<string, unknown>;
  if (typeof error === "object" && error !== null) {
    const inner = error as Record<string, unknown>;
    const parts = [inner.code, inner.message].filter((part) => typeof part === "string");
    if (parts.length > 0) return parts.join(": ");
  }
  const parts = [error, error_description ?? message].filter((part) => typeof part === "string");
  return parts.length > 0 ? parts.join(": ") : undefined;
}

function describeIssues(issues: readonly { path: readonly PropertyKey[]; message: string }[]): string {
  const listed = issues
    .slice(0, MAX_LISTED_ISSUES)
    .map((issue) => `at ${fieldPath(issue.path)}: ${issue.message}`);
  const more = issues.length > MAX_LISTED_ISSUES ? `; and ${issues.length - MAX_LISTED_ISSUES} more` : "";
  return `${listed.join("; ")}${more}`;
}

function fieldPath(path: readonly PropertyKey[]): string {
  if (path.length === 0) return "the top level";
  return path
    .map((part, index) =>
      typeof part === "number" ? `[${part}]` : `${index === 0 ? "" : "."}${String(part)}`,
    )
    .join("");
}

function toWebStream(source: Readable, fail: (err: unknown) => StorageError): ReadableStream<Uint8Array> {
  const chunks = source[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const next = await chunks.next();
          if (next.done) controller.close();
          else controller.enqueue(next.value as Uint8Array);
        } catch (err) {
          controller.error(fail(err));
        }
      },
      async cancel() {
        await chunks.return?.();
      },
    },
    // Reading up to 2 MiB ahead lets the network overlap the consumer's work (hashing, writing).
    new ByteLengthQueuingStrategy({ highWaterMark: 2 * 1024 * 1024 }),
  );
}
