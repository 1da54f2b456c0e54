import { Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import { S3Client, type S3ClientConfig } from "@aws-sdk/client-s3";
import type { StaticCredentials } from "@stowage/core";
import type { S3ChecksumMode } from "./presets.js";

/**
 * How a command carries its AbortSignal down to the HTTP handler. `send(command, { abortSignal })`
 * would do, but any options argument disables the SDK's middleware cache (`cacheMiddleware`), which
 * saves a stack resolution per request; so the signal rides in the command input under this symbol
 * (an enumerable symbol: the SDK copies inputs by spreading, and serialisers only read modelled
 * members), and a last middleware hands it to the handler.
 */
export const abortSignalKey: unique symbol = Symbol("stowage.abortSignal");

/** A command input that may carry an abort signal. */
export type WithSignal<T> = T & { [abortSignalKey]?: AbortSignal };

/** Attaches `signal` to a command input (see {@link abortSignalKey}). */
export function withSignal<T extends object>(input: T, signal: AbortSignal | undefined): WithSignal<T> {
  return signal === undefined ? input : { ...input, [abortSignalKey]: signal };
}

export interface S3ClientSettings {
  region?: string;
  endpoint?: string;
  forcePathStyle: boolean;
  credentials?: StaticCredentials;
  checksums: S3ChecksumMode;
  followRegionRedirects: boolean;
  /** Default 10 s. */
  connectTimeoutMs?: number;
  /** A socket idle this long (no byte either way) fails the request with `Timeout`. Default 60 s. */
  idleTimeoutMs?: number;
}

/**
 * Middleware that costs time on every request and does nothing Stowage needs. Measured in
 * the s3 section of docs/benchmarks.md; each name is the SDK's.
 * - loggerMiddleware: with no SDK logger it still walks the input and output schemas to filter
 *   sensitive fields for a log line nobody reads (Stowage logs through its own logger).
 * - recursionDetectionMiddleware: adds an X-Amzn-Trace-Id header inside AWS Lambda only.
 * - validateBucketNameMiddleware: the options schema already checks the bucket name.
 * - addExpectContinueMiddleware: adds `Expect: 100-continue` to bodies of 2 MiB and more, but the
 *   SDK's handler only waits for the 100 with its own agent (with ours it sends the body at once),
 *   and with its own agent it opens a new connection for each such request.
 */
export const removedMiddleware = [
  "loggerMiddleware",
  "recursionDetectionMiddleware",
  "validateBucketNameMiddleware",
  "addExpectContinueMiddleware",
] as const;

type RequestHandler = S3Client["config"]["requestHandler"];
type HandlerRequest = Parameters<RequestHandler["handle"]>[0];

/** Wraps the SDK's HTTP handler so that a signal attached by the middleware aborts the request. */
function signalAwareHandler(inner: RequestHandler): RequestHandler {
  const handler: RequestHandler = {
    handle(request, options) {
      const signal = (request as HandlerRequest & { [abortSignalKey]?: AbortSignal })[abortSignalKey];
      return inner.handle(request, signal === undefined ? options : { ...options, abortSignal: signal });
    },
    destroy: () => inner.destroy?.(),
  };
  // The SDK configures its handler through these two (timeouts, logger); forward them when present.
  const forwarded = inner as RequestHandler & {
    updateHttpClientConfig?: (key: never, value: never) => void;
    httpHandlerConfigs?: () => unknown;
    metadata?: unknown;
  };
  return Object.assign(handler, {
    metadata: forwarded.metadata,
    updateHttpClientConfig: (key: never, value: never) => forwarded.updateHttpClientConfig?.(key, value),
    httpHandlerConfigs: () => forwarded.httpHandlerConfigs?.() ?? {},
  });
}

/** Moves the signal from the command input onto the HTTP request, just before the handler runs. */
function attachSignal<A extends { input: object; request: unknown }, R>(
  next: (args: A) => R,
): (args: A) => R {
  return (args) => {
    const signal = (args.input as { [abortSignalKey]?: AbortSignal })[abortSignalKey];
    if (signal !== undefined && typeof args.request === "object" && args.request !== null) {
      (args.request as { [abortSignalKey]?: AbortSignal })[abortSignalKey] = signal;
    }
    return next(args);
  };
}

/**
 * Adapts core's `StaticCredentials` to the SDK's credential provider. `get()` may rotate keys, so the
 * identity carries an expiration the SDK treats as "refresh in a minute" (it refreshes 5 minutes
 * before expiry): rotated keys are picked up within a minute without a `get()` per request.
 */
function credentialProvider(credentials: StaticCredentials): NonNullable<S3ClientConfig["credentials"]> {
  return async () => {
    const value = await credentials.get();
    return {
      accessKeyId: value.accessKeyId,
      secretAccessKey: value.secretAccessKey,
      ...(value.sessionToken ? { sessionToken: value.sessionToken } : {}),
      expiration: new Date(Date.now() + 6 * 60_000),
    };
  };
}

/**
 * The S3 client behind one storage, tuned for Stowage (every choice is measured in
 * the s3 section of docs/benchmarks.md):
 * - `maxAttempts: 1`: core's `retry` retries instead, so a request is never retried by both (the
 *   SDK's 3 attempts × core's 5 would make 15), backoff honours Retry-After, and retries show on the
 *   `stowage:retry` channel like every other provider's.
 * - `cacheMiddleware`: the middleware stack is resolved once per command type instead of per request.
 *   The SDK then shares one handler context between concurrent calls of a command; that is safe here
 *   because a storage addresses one bucket, so every call resolves the same endpoint.
 * - own keep-alive agents without a socket cap: Stowage's limiter caps requests in flight, and a cap
 *   on sockets could deadlock a caller holding unread downloads (each keeps its socket).
 * - checksum mode from the preset.
 */
export function createS3Client(settings: S3ClientSettings): S3Client {
  const agentOptions = { keepAlive: true, maxSockets: Number.POSITIVE_INFINITY, scheduling: "lifo" as const };
  const checksumMode = settings.checksums === "when-supported" ? "WHEN_SUPPORTED" : "WHEN_REQUIRED";
  const config: S3ClientConfig = {
    forcePathStyle: settings.forcePathStyle,
    followRegionRedirects: settings.followRegionRedirects,
    requestChecksumCalculation: checksumMode,
    responseChecksumValidation: checksumMode,
    maxAttempts: 1,
    cacheMiddleware: true,
    requestHandler: {
      httpAgent: new HttpAgent(agentOptions),
      httpsAgent: new HttpsAgent(agentOptions),
      connectionTimeout: settings.connectTimeoutMs ?? 10_000,
      socketTimeout: settings.idleTimeoutMs ?? 60_000,
    },
    ...(settings.region === undefined ? {} : { region: settings.region }),
    ...(settings.endpoint === undefined ? {} : { endpoint: settings.endpoint }),
    ...(settings.credentials === undefined ? {} : { credentials: credentialProvider(settings.credentials) }),
  };
  const client = new S3Client(config);
  client.config.requestHandler = signalAwareHandler(client.config.requestHandler);
  for (const name of removedMiddleware) client.middlewareStack.remove(name);
  client.middlewareStack.add(attachSignal, {
    step: "deserialize",
    priority: "low",
    name: "stowageAbortSignal",
  });
  return client;
}
