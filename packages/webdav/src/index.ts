import { basicCredentials, personalAccessToken } from "@stowage/auth";
import {
  type BasicCredentials,
  type HttpStorageOptions,
  httpStorageOptionsShape,
  type Logger,
  normalizeRoot,
  type ParsedConnection,
  type ProviderDescriptor,
  paramBoolean,
  paramInteger,
  type RetryOptions,
  registerProvider,
  StorageError,
  type TokenSource,
} from "@stowage/core";
import { z } from "zod";
import { pathFromSegments, urlSegments } from "./names.js";
import { WebDavStorage } from "./storage.js";

export { statusTable } from "./errors.js";
export { WebDavStorage } from "./storage.js";

/** Options of {@link createWebDavStorage}. */
export interface WebDavStorageOptions extends HttpStorageOptions {
  /**
   * The WebDAV endpoint: `https://dav.example.com/remote.php/dav/files/me`. `webdav://` (http) and
   * `webdavs://` (https) are accepted too. A user name and password in the URL are used as basic
   * credentials when `auth` is not given, and never appear in `location` or messages.
   */
  url: string | URL;
  /** A folder below the endpoint to use as the root (`backups/pc1`); leading/trailing slashes are fine. */
  root?: string;
  /**
   * `basicCredentials({ username, password })` (app passwords too) for `Authorization: Basic`, or any
   * `TokenSource` (e.g. `personalAccessToken(token)`) for `Authorization: Bearer`, invalidated and
   * fetched again once on a 401. None: anonymous.
   */
  auth?: BasicCredentials | TokenSource;
  /**
   * A failed or aborted put never leaves a partial object under the key: the body goes to a temporary
   * name beside the target and is MOVEd into place, or, on Apache mod_dav_fs (whose own PUT is
   * atomic), is sent in one PUT. Default true; false always sends one PUT to the key (what a failed
   * put leaves then depends on the server, see the README).
   */
  atomicPut?: boolean;
  /**
   * Declare that the server applies `ifNotExists` atomically: MOVE with `Overwrite: F` (atomicPut) or
   * PUT with `If-None-Match: *`. True for rclone serve with atomicPut (its per-request locks serialise
   * MOVEs); false for Apache mod_dav_fs and webdav-server, whose check and write can race. When false,
   * `ifNotExists` also checks first (the server-side condition is still sent). Default false.
   */
  conditionalPut?: boolean;
  /**
   * Characters the server cannot store in a name: each is stored as its full-width look-alike
   * (reversibly). `"\\"` for webdav-server, which splits names on backslashes. Default none.
   */
  reservedCharacters?: string;
  /** Create the root on first use instead of failing with `FolderMissing`. */
  createRoot?: boolean;
  /**
   * Bodies up to this many bytes are read into memory and sent as one replayable request (retried on
   * transient failures, sent again after creating a missing folder); larger bodies are streamed once.
   * Default 4 MiB.
   */
  bufferSize?: number;
  /** Requests in flight at once. Default 8. */
  concurrency?: number;
  /** Folders listed at once by a recursive list. Default 4. */
  listConcurrency?: number;
}

const MiB = 1024 * 1024;

function isAuth(value: unknown): value is BasicCredentials | TokenSource {
  if (typeof value !== "object" || value === null) return false;
  const candidate = value as { kind?: unknown; get?: unknown; getToken?: unknown; invalidate?: unknown };
  if (candidate.kind === "basic") return typeof candidate.get === "function";
  return typeof candidate.getToken === "function" && typeof candidate.invalidate === "function";
}

const optionsSchema = z
  .object({
    url: z.union([z.string().min(1), z.instanceof(URL)]),
    root: z.string().optional(),
    auth: z
      .custom<BasicCredentials | TokenSource>(isAuth, {
        message: "expected basicCredentials(…) or a TokenSource such as personalAccessToken(…)",
      })
      .optional(),
    atomicPut: z.boolean().optional(),
    conditionalPut: z.boolean().optional(),
    reservedCharacters: z.string().optional(),
    createRoot: z.boolean().optional(),
    bufferSize: z
      .number()
      .int()
      .min(0)
      .max(1024 * MiB)
      .optional(),
    concurrency: z.number().int().min(1).max(256).optional(),
    listConcurrency: z.number().int().min(1).max(64).optional(),
    ...httpStorageOptionsShape,
  })
  .strict();

function configError(message: string, hint?: string): StorageError {
  return new StorageError({ provider: "webdav", operation: "open", code: "InvalidConfig", message, hint });
}

function parseOptions(options: WebDavStorageOptions): z.infer<typeof optionsSchema> {
  const parsed = optionsSchema.safeParse(options);
  if (parsed.success) return parsed.data;
  // Issues name the option and what is wrong, never the value (a URL may hold a password).
  const issue = parsed.error.issues[0]!;
  const name = issue.path.join(".") || "options";
  throw configError(
    issue.code === "unrecognized_keys"
      ? `unknown option ${issue.keys.map((k) => `'${k}'`).join(", ")}`
      : `option '${name}': ${issue.message}`,
    "see the @stowage/webdav README for the options",
  );
}

const schemes: Record<string, string> = {
  "http:": "http:",
  "https:": "https:",
  "webdav:": "http:",
  "webdavs:": "https:",
};

/**
 * A storage on a WebDAV server (Apache mod_dav, Nextcloud/ownCloud, rclone serve, webdav-server, …).
 *
 * @example
 * import { basicCredentials } from "@stowage/auth";
 * const storage = createWebDavStorage({
 *   url: "https://cloud.example.com/remote.php/dav/files/me",
 *   root: "backups/pc1",
 *   auth: basicCredentials({ username: "me", password: process.env.DAV_APP_PASSWORD! }),
 *   createRoot: true,
 * });
 * await storage.put("vol/0001.zip", fs.createReadStream("0001.zip"));
 */
export function createWebDavStorage(options: WebDavStorageOptions): WebDavStorage {
  const valid = parseOptions(options);
  let url: URL;
  try {
    url = new URL(typeof valid.url === "string" ? valid.url : valid.url.href);
  } catch {
    throw configError("option 'url' is not a valid URL", "pass the endpoint as https://host/path");
  }
  const protocol = schemes[url.protocol];
  if (!protocol) {
    throw configError(
      `option 'url' must be an http(s):// or webdav(s):// URL, not ${url.protocol}//`,
      "pass the endpoint as https://host/path",
    );
  }
  if (url.search || url.hash) {
    throw configError(
      "option 'url' has a query or fragment; a WebDAV endpoint has neither",
      "pass the endpoint as https://host/path",
    );
  }
  let auth = valid.auth;
  if (url.username || url.password) {
    if (auth) throw configError("credentials are given both in the URL and in 'auth'", "keep one of them");
    auth = basicCredentials({
      username: decodeURIComponent(url.username),
      password: decodeURIComponent(url.password),
    });
  }
  const origin = `${protocol}//${url.host}`;
  const basePath = urlSegments(url);
  const rootPath = normalizeRoot(valid.root, { provider: "webdav", operation: "open" })
    .split("/")
    .filter((segment) => segment !== "");
  const logger = valid.logger;
  if (protocol === "http:" && auth && !isLoopback(url.hostname)) {
    logger?.warn(
      { provider: "webdav", host: url.host },
      "credentials are sent over plain http; use https (webdavs://)",
    );
  }
  return new WebDavStorage({
    origin,
    basePath,
    rootPath,
    location: `${protocol === "https:" ? "webdavs" : "webdav"}://${url.host}${pathFromSegments([...basePath, ...rootPath], false)}`,
    auth,
    atomicPut: valid.atomicPut ?? true,
    conditionalPut: valid.conditionalPut ?? false,
    reservedCharacters: valid.reservedCharacters ?? "",
    createRoot: valid.createRoot ?? false,
    bufferSize: valid.bufferSize ?? 4 * MiB,
    concurrency: valid.concurrency ?? 8,
    listConcurrency: valid.listConcurrency ?? 4,
    retry: valid.retry,
    connectTimeoutMs: valid.connectTimeoutMs,
    headersTimeoutMs: valid.headersTimeoutMs,
    bodyTimeoutMs: valid.bodyTimeoutMs,
    logger,
  });
}

function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "[::1]" || /^127\./.test(hostname);
}

function authFrom(connection: ParsedConnection): BasicCredentials | TokenSource | undefined {
  const { username, password, token } = connection.params;
  const object = connection.objects.auth as BasicCredentials | TokenSource | undefined;
  const given = [
    object && "auth",
    (username ?? password) !== undefined && "username/password",
    token !== undefined && "token",
  ].filter(Boolean);
  if (given.length > 1) {
    throw new StorageError({
      provider: "webdav",
      operation: "connect",
      code: "InvalidConfig",
      message: `credentials are given more than once (${given.join(", ")})`,
      hint: "pass either username and password, or token, or an auth object",
    });
  }
  if (token !== undefined) return personalAccessToken(token);
  if (username !== undefined || password !== undefined) {
    if (username === undefined || password === undefined) {
      throw new StorageError({
        provider: "webdav",
        operation: "connect",
        code: "InvalidConfig",
        message: `'${username === undefined ? "password" : "username"}' is set without '${username === undefined ? "username" : "password"}'`,
        hint: "pass both username and password (e.g. webdavs://me@host/path with password=… in options or STOWAGE_PASSWORD)",
      });
    }
    return basicCredentials({ username, password });
  }
  return object;
}

/**
 * `webdav://host[:port]/path` (http) and `webdavs://host[:port]/path` (https); the whole path is the
 * root. Parameters: see the README.
 */
export const webdavProvider: ProviderDescriptor = {
  provider: "webdav",
  schemes: ["webdav", "webdavs"],
  params: {
    username: { description: "user name for basic authentication" },
    password: { description: "password or app password for basic authentication", secret: true },
    token: { description: "a bearer token (personal access token) instead of a password", secret: true },
    "atomic-put": {
      description: "upload to a temporary name, then MOVE into place (default true)",
      type: "boolean",
    },
    "conditional-put": {
      description: "the server applies ifNotExists atomically (rclone serve with atomic-put); default false",
      type: "boolean",
    },
    "reserved-characters": {
      description: "characters the server cannot store in names, stored as full-width look-alikes",
    },
    "create-root": {
      description: "create the root folder on first use instead of failing with FolderMissing",
      type: "boolean",
    },
    "buffer-size": {
      description: "bodies up to this many bytes are sent from memory, replayable (default 4 MiB)",
      type: "integer",
    },
    concurrency: { description: "requests in flight at once (default 8)", type: "integer" },
    "list-concurrency": {
      description: "folders listed at once by a recursive list (default 4)",
      type: "integer",
    },
  },
  objectOptions: ["auth", "logger", "retry"],
  open(connection) {
    const scheme = connection.scheme === "webdavs" ? "https" : "http";
    return createWebDavStorage({
      url: `${scheme}://${connection.host}`,
      root: connection.path,
      auth: authFrom(connection),
      atomicPut: paramBoolean(connection, "atomic-put"),
      conditionalPut: paramBoolean(connection, "conditional-put"),
      reservedCharacters: connection.params["reserved-characters"],
      createRoot: paramBoolean(connection, "create-root"),
      bufferSize: paramInteger(connection, "buffer-size"),
      concurrency: paramInteger(connection, "concurrency"),
      listConcurrency: paramInteger(connection, "list-concurrency"),
      retry: connection.objects.retry as RetryOptions | false | undefined,
      logger: connection.objects.logger as Logger | undefined,
    });
  },
};

registerProvider(webdavProvider);
