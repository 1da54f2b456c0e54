import {
  abortedError,
  type CallOptions,
  type Logger,
  publish,
  redactingLogger,
  registerSecret,
  type TokenSource,
  throwIfAborted,
  toStorageError,
} from "@stowage/core";
import { opaque } from "./opaque.js";

/** A token as a strategy fetched it. */
export interface FetchedToken {
  token: string;
  /** When the token stops working; without it the token is kept until `invalidate`. */
  expiresAt?: Date;
}

export interface CachedTokenSourceOptions {
  /** `TokenSource.kind`. */
  kind: string;
  /** Names the strategy in errors (`hostedHandler`, …). Default: `kind`. */
  operation?: string;
  /**
   * Gets a new token. It runs for one caller at a time (single flight), so it never sees a caller's
   * `AbortSignal`: one caller giving up must not cancel the refresh the others wait for. It should
   * retry transient failures itself (the HTTP client does).
   */
  fetch: () => Promise<FetchedToken>;
  /** What `String()` and `util.inspect` show; never a secret. */
  description: string;
  /** What `JSON.stringify` shows besides `kind`; never a secret. */
  summary?: Record<string, unknown>;
  /** Told (redacted, at `warn`) when a failed refresh falls back to the cached token. */
  logger?: Logger;
  /** The clock, in milliseconds since the epoch. Default `Date.now`; tests pass one they move. */
  now?: () => number;
}

/** Refresh this long before a token expires (DESIGN §4)… */
const REFRESH_MARGIN_MS = 60_000;
/**
 * …after a failed refresh, keep serving the still-valid cached token this long before trying again:
 * otherwise, while a handler is down, every call in the last minute of a token's life would wait for
 * a whole retried refresh before getting the cached token anyway.
 */
const QUIET_AFTER_FAILURE_MS = 10_000;

interface CachedToken {
  token: string;
  expiresAt?: number;
  refreshAt?: number;
}

/**
 * The token discipline every refreshing strategy shares (DESIGN §4), in one place:
 *
 * - the token is cached until 60 s before it expires, or until half its life has passed when it
 *   lives less than two minutes (a handler may hand out a cached token with 40 s left; refreshing it
 *   on every call would make a request per call);
 * - **single flight**: however many callers find the cache cold at once, one `fetch` runs;
 * - a failed refresh while the cached token is still valid (not past `expiresAt`) returns the cached
 *   token, logs a warning, and waits 10 s before trying again;
 * - `invalidate(token)` drops the cache only when `token` is the cached one, so a late 401 for an old
 *   token does not throw away a fresh one;
 * - a caller's `signal` aborts only that caller's wait.
 *
 * Each refresh is published on `stowage:token` (`event: "refresh"` or `"refresh-failed"`).
 *
 * @example
 * const source = cachedTokenSource({
 *   kind: "my-sts",
 *   description: "[MyStsToken]",
 *   fetch: async () => {
 *     const { token, expiresIn } = await sts.getToken();
 *     return { token, expiresAt: new Date(Date.now() + expiresIn * 1000) };
 *   },
 * });
 */
export function cachedTokenSource(options: CachedTokenSourceOptions): TokenSource {
  const { kind } = options;
  const now = options.now ?? Date.now;
  const logger = redactingLogger(options.logger);
  const context = { provider: "auth", operation: options.operation ?? kind };
  let cached: CachedToken | undefined;
  let flight: Promise<CachedToken> | undefined;
  let quietUntil = 0;

  const valid = (entry: CachedToken, at: number) => entry.expiresAt === undefined || at < entry.expiresAt;
  const fresh = (entry: CachedToken, at: number) => entry.refreshAt === undefined || at < entry.refreshAt;

  const refresh = async (): Promise<CachedToken> => {
    try {
      const fetched = await options.fetch();
      // The strategies register their tokens already; a custom `fetch` may not.
      registerSecret(fetched.token);
      const fetchedAt = now();
      const expiresAt = fetched.expiresAt?.getTime();
      const margin = expiresAt === undefined ? 0 : Math.min(REFRESH_MARGIN_MS, (expiresAt - fetchedAt) / 2);
      const entry: CachedToken = {
        token: fetched.token,
        expiresAt,
        refreshAt: expiresAt === undefined ? undefined : expiresAt - margin,
      };
      cached = entry;
      quietUntil = 0;
      publish("token", { kind, event: "refresh", expiresAt: fetched.expiresAt?.toISOString() });
      return entry;
    } catch (err) {
      const error = toStorageError(err, context);
      const previous = cached;
      const at = now();
      const fallback = previous !== undefined && valid(previous, at);
      publish("token", { kind, event: "refresh-failed", code: error.code, usingCachedToken: fallback });
      if (!fallback) throw error;
      quietUntil = at + QUIET_AFTER_FAILURE_MS;
      logger.warn(
        { kind, code: error.code, expiresAt: new Date(previous.expiresAt ?? at).toISOString() },
        `token refresh failed; using the cached token until it expires: ${error.message}`,
      );
      return previous;
    }
  };

  const source: TokenSource = {
    kind,
    async getToken(callOptions: CallOptions = {}) {
      const { signal } = callOptions;
      throwIfAborted(signal, context);
      const at = now();
      if (cached && (fresh(cached, at) || (valid(cached, at) && at < quietUntil))) return view(cached);
      // The promise's own settlement clears the slot, never a synchronous throw inside `refresh`, so a
      // rejected flight cannot stay in the slot.
      flight ??= refresh().finally(() => {
        flight = undefined;
      });
      return view(await untilAborted(flight, signal, context));
    },
    invalidate(token: string) {
      if (cached?.token !== token) return;
      cached = undefined;
      quietUntil = 0;
    },
  };
  return opaque(source, options.description, { kind, ...options.summary });
}

function view(entry: CachedToken): { token: string; expiresAt?: Date } {
  return entry.expiresAt === undefined
    ? { token: entry.token }
    : { token: entry.token, expiresAt: new Date(entry.expiresAt) };
}

function untilAborted<T>(
  promise: Promise<T>,
  signal: AbortSignal | undefined,
  context: { provider: string; operation: string },
): Promise<T> {
  if (!signal) return promise;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortedError(context, signal.reason));
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
