import { tmpdir } from "node:os";
import { isAbsolute } from "node:path";
import { authObjectOptions, authParams, tokenSourceFromConnection } from "@stowage/auth";
import {
  type HttpStorageOptions,
  httpStorageOptionsShape,
  isTokenSource,
  type Logger,
  normalizeRoot,
  type ProviderDescriptor,
  paramBoolean,
  paramInteger,
  registerProvider,
  StorageError,
  type TokenSource,
} from "@stowage/core";
import { z } from "zod";
import { encodeSegment } from "./api.js";
import { unusableFolderName } from "./names.js";
import { OneDriveStorage } from "./storage.js";

export { QuickXorHash, quickXorHash } from "@stowage/core";
export { classifyGraphResponse, type GraphErrorRow, graphErrorTable } from "./errors.js";
export { decodeName, decodePath, encodeName, encodePath, type NameCodecOptions } from "./names.js";
export { OneDriveStorage } from "./storage.js";

/** Fragments must be multiples of this (reference §A.5). */
export const FRAGMENT_MULTIPLE = 327_680;
/** Fragments must be under 60 MiB (reference §A.5): the largest multiple of 320 KiB below it. */
export const MAX_FRAGMENT_SIZE = 62_586_880;
/** rclone's default and the docs' recommendation (5–10 MiB): 32 × 320 KiB. */
export const DEFAULT_FRAGMENT_SIZE = 10 * 1024 * 1024;
/** The simple-upload limit of the OneDrive docs, kept for portability (reference §A.4). */
export const SIMPLE_UPLOAD_LIMIT = 4 * 1024 * 1024;
export const DEFAULT_GRAPH_URL = "https://graph.microsoft.com/v1.0";
/** The Microsoft identity platform's token endpoint (reference §A.12), for direct OAuth. */
export const MICROSOFT_TOKEN_URL = "https://login.microsoftonline.com/common/oauth2/v2.0/token";

/** Options of {@link createOneDriveStorage}. */
export interface OneDriveStorageOptions extends HttpStorageOptions {
  /**
   * Where bearer tokens come from: `personalAccessToken(token)`, `selfHostedHandler({ authId, url })`,
   * `hostedHandler({ authId, url })` or `oauthRefreshToken({ … })` from `@stowage/auth`.
   */
  auth: TokenSource;
  /** The folder to use, from the drive root (`Backups/pc1`); default the drive root. Not encoded. */
  root?: string;
  /** A drive other than the signed-in user's (`/drives/{driveId}`); default `/me/drive`. */
  driveId?: string;
  /**
   * The Graph API root; default `https://graph.microsoft.com/v1.0`. A URL without a path gets `/v1.0`
   * (`https://graph.microsoft.us` for US Government). Plain http only on loopback (an emulator).
   */
  graphUrl?: string | URL;
  /**
   * Bytes per upload-session fragment: a multiple of 327,680 (320 KiB), under 60 MiB. Default 10 MiB.
   * Each fragment is held in memory (two at a time while the next one is read).
   */
  fragmentSize?: number;
  /** Bodies up to this many bytes go in one PUT; larger ones in an upload session. At most 4 MiB (the default). */
  simpleUploadCutoff?: number;
  /** OneDrive for Business naming: `#`, `%` and a leading `~` are encoded too. Default false. */
  business?: boolean;
  /** Items per listing page (`$top`), 1 to 1000. Default 1000. */
  pageSize?: number;
  /** Create the root (and its parents) on first use instead of failing with `FolderMissing`. */
  createRoot?: boolean;
  /**
   * A folder where a streamed body above the cutoff is copied as it is read (mode 0600, removed when
   * the put ends), so that a lost upload session can be restarted, and any fragment sent again,
   * without the caller. Without it, a stream can only have its current fragment sent again, and a lost
   * session fails the put (`Unavailable`: put again). Bodies given as bytes, a string or a Blob (they
   * can be read again) need no copy.
   * A stream of unknown length above the cutoff is always copied, here or to the system's temporary
   * folder, since every fragment must state the total. Default: none.
   */
  spoolDir?: string;
  /** Requests in flight at once. Default 8. */
  concurrency?: number;
}

const MAX_SESSION_RESTARTS = 2;

const optionsSchema = z
  .object({
    auth: z.custom<TokenSource>(isTokenSource, {
      message:
        "expected a token source: personalAccessToken(…), selfHostedHandler(…), hostedHandler(…) or oauthRefreshToken(…)",
    }),
    root: z.string().optional(),
    driveId: z.string().min(1).optional(),
    graphUrl: z.union([z.string().min(1), z.instanceof(URL)]).optional(),
    fragmentSize: z
      .number()
      .int()
      .positive()
      .refine((value) => value % FRAGMENT_MULTIPLE === 0 && value <= MAX_FRAGMENT_SIZE, {
        message: `must be a multiple of 327,680 bytes (320 KiB) and under 60 MiB (at most ${MAX_FRAGMENT_SIZE}); the default is ${DEFAULT_FRAGMENT_SIZE} (10 MiB)`,
      })
      .optional(),
    simpleUploadCutoff: z.number().int().min(0).max(SIMPLE_UPLOAD_LIMIT).optional(),
    business: z.boolean().optional(),
    pageSize: z.number().int().min(1).max(1000).optional(),
    createRoot: z.boolean().optional(),
    spoolDir: z.string().refine(isAbsolute, { message: "must be an absolute path" }).optional(),
    concurrency: z.number().int().min(1).max(256).optional(),
    ...httpStorageOptionsShape,
  })
  .strict();

function configError(message: string, hint?: string, operation = "open"): StorageError {
  return new StorageError({ provider: "onedrive", operation, code: "InvalidConfig", message, hint });
}

function parseOptions(options: OneDriveStorageOptions): z.infer<typeof optionsSchema> {
  const parsed = optionsSchema.safeParse(options);
  if (parsed.success) return parsed.data;
  // Issues name the option and what is wrong, never the value (it may be a credential).
  const issue = parsed.error.issues[0]!;
  const name = issue.path.join(".") || "options";
  throw configError(
    issue.code === "unrecognized_keys"
      ? `unknown option ${issue.keys.map((key) => `'${key}'`).join(", ")}`
      : `option '${name}': ${issue.message}`,
    "see the @stowage/onedrive README for the options",
  );
}

function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "[::1]" || /^127\./.test(hostname);
}

/** The API root from `graphUrl`: https (http on loopback only), `/v1.0` added to a bare origin. */
function graphRoot(value: string | URL | undefined): string {
  if (value === undefined) return DEFAULT_GRAPH_URL;
  const text = typeof value === "string" ? value : value.href;
  if (!URL.canParse(text))
    throw configError("option 'graphUrl' is not a valid URL", `pass e.g. ${DEFAULT_GRAPH_URL}`);
  const url = new URL(text);
  if (url.protocol !== "https:" && !(url.protocol === "http:" && isLoopback(url.hostname))) {
    throw configError(
      "option 'graphUrl' must be an https:// URL (http:// only on this machine): it receives the access token",
      `pass e.g. ${DEFAULT_GRAPH_URL}`,
    );
  }
  if (url.username || url.password || url.search || url.hash) {
    throw configError(
      "option 'graphUrl' must not carry credentials, a query or a fragment",
      `pass e.g. ${DEFAULT_GRAPH_URL}`,
    );
  }
  const path = url.pathname.replace(/\/+$/, "");
  return `${url.origin}${path === "" ? "/v1.0" : path}`;
}

/**
 * A storage in a OneDrive folder, through Microsoft Graph.
 *
 * @example
 * import { selfHostedHandler } from "@stowage/auth";
 * const storage = createOneDriveStorage({
 *   auth: selfHostedHandler({ authId: process.env.ONEDRIVE_AUTHID!, url: "https://handler.example.com/refresh" }),
 *   root: "Backups/pc1",
 *   createRoot: true,
 * });
 * await storage.put("vol/0001.zip", await fs.openAsBlob("0001.zip"));
 */
export function createOneDriveStorage(options: OneDriveStorageOptions): OneDriveStorage {
  const valid = parseOptions(options);
  const business = valid.business ?? false;
  const graphUrl = graphRoot(valid.graphUrl);
  const root = normalizeRoot(valid.root, { provider: "onedrive", operation: "open" });
  const segments = root === "" ? [] : root.split("/");
  for (const segment of segments) {
    const why = unusableFolderName(segment, { business });
    if (why !== undefined) {
      throw configError(
        `the root '${root}' cannot exist on OneDrive: ${why} ('${segment}')`,
        "choose another root folder",
      );
    }
  }
  const query = new URLSearchParams();
  if (valid.driveId !== undefined) query.set("drive-id", valid.driveId);
  if (graphUrl !== DEFAULT_GRAPH_URL) query.set("graph-url", graphUrl);
  const location = `onedrive://${segments.map(encodeSegment).join("/")}${query.size > 0 ? `?${query}` : ""}`;
  return new OneDriveStorage({
    graphUrl,
    driveId: valid.driveId,
    auth: valid.auth,
    root: segments,
    location,
    business,
    fragmentSize: valid.fragmentSize ?? DEFAULT_FRAGMENT_SIZE,
    simpleUploadCutoff: valid.simpleUploadCutoff ?? SIMPLE_UPLOAD_LIMIT,
    pageSize: valid.pageSize ?? 1000,
    createRoot: valid.createRoot ?? false,
    spoolDir: valid.spoolDir,
    tempDir: tmpdir(),
    maxSessionRestarts: MAX_SESSION_RESTARTS,
    concurrency: valid.concurrency,
    retry: valid.retry,
    connectTimeoutMs: valid.connectTimeoutMs,
    headersTimeoutMs: valid.headersTimeoutMs,
    bodyTimeoutMs: valid.bodyTimeoutMs,
    logger: valid.logger,
  });
}

/**
 * `onedrive://Backups/pc1?authid=KEYID:SECRET&oauth-url=https://handler.example.com/refresh`: the host
 * and path are the root folder. Credentials: `authid` (+ `oauth-url`, `api-key`), `token` (a personal
 * access token), or `client-id` + `refresh-token` (+ `client-secret`, `token-url`) for direct OAuth;
 * the `auth` option (any token source) wins over them. Other parameters: see the README.
 */
export const onedriveProvider: ProviderDescriptor = {
  provider: "onedrive",
  schemes: ["onedrive"],
  params: {
    ...authParams,
    "drive-id": { description: "a drive other than the signed-in user's (default: /me/drive)" },
    "graph-url": {
      description: "the Microsoft Graph API root (default https://graph.microsoft.com/v1.0)",
    },
    "fragment-size": {
      description: "bytes per upload fragment: a multiple of 327,680, under 60 MiB (default 10 MiB)",
      type: "integer",
    },
    "simple-upload-cutoff": {
      description: "bodies up to this many bytes go in one PUT (at most and by default 4 MiB)",
      type: "integer",
    },
    "create-root": {
      description: "create the root folder on first use instead of failing with FolderMissing",
      type: "boolean",
    },
    business: {
      description: "OneDrive for Business naming rules: also encode '#', '%' and a leading '~'",
      type: "boolean",
    },
    "page-size": { description: "items per listing page, 1 to 1000 (default 1000)", type: "integer" },
    "spool-dir": {
      description:
        "copy streamed uploads here as they are read, so that a lost upload session restarts by itself",
    },
  },
  objectOptions: [...authObjectOptions, "logger"],
  open(connection) {
    const auth = tokenSourceFromConnection(connection, {
      provider: "onedrive",
      tokenUrl: MICROSOFT_TOKEN_URL,
    });
    if (auth === undefined) {
      throw configError(
        "onedrive needs credentials",
        "give an AuthID (parameters authid and oauth-url, your handler's /refresh URL), a personal access token (parameter token), or direct OAuth (client-id and refresh-token)",
        "connect",
      );
    }
    return createOneDriveStorage({
      auth,
      root: [connection.host, connection.path].filter((part) => part !== "").join("/"),
      driveId: connection.params["drive-id"],
      graphUrl: connection.params["graph-url"],
      fragmentSize: paramInteger(connection, "fragment-size"),
      simpleUploadCutoff: paramInteger(connection, "simple-upload-cutoff"),
      createRoot: paramBoolean(connection, "create-root"),
      business: paramBoolean(connection, "business"),
      pageSize: paramInteger(connection, "page-size"),
      spoolDir: connection.params["spool-dir"],
      logger: connection.objects.logger as Logger | undefined,
    });
  },
};

registerProvider(onedriveProvider);
