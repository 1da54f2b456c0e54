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
import type { DuplicatesPolicy } from "./duplicates.js";
import { GoogleDriveStorage } from "./storage.js";
import { CHUNK_MULTIPLE } from "./upload.js";

export type { DuplicatesPolicy } from "./duplicates.js";
export { type DriveErrorRow, driveErrorTable } from "./errors.js";
export { GoogleDriveStorage } from "./storage.js";

/** Google's OAuth 2.0 token endpoint (reference §B.10), for direct OAuth with client-id + refresh-token. */
export const GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token";
/** Where Drive's API lives; both the metadata API (`/drive/v3`) and uploads (`/upload/drive/v3`). */
export const GOOGLE_DRIVE_URL = "https://www.googleapis.com";

const MiB = 1024 * 1024;

/** Options of {@link createGoogleDriveStorage}. */
export interface GoogleDriveStorageOptions extends HttpStorageOptions {
  /**
   * Where access tokens come from: `selfHostedHandler(…)`, `hostedHandler(…)`, `oauthRefreshToken(…)`
   * or `personalAccessToken(…)` from `@stowage/auth`. The token needs the `drive.file` scope (the app
   * then sees only what it created) or `drive`.
   */
  auth: TokenSource;
  /** The root folder's path in My Drive (or in the shared drive): `Backups/pc1`. Default: the top. */
  root?: string;
  /** Work in this shared drive (the id in its web address) instead of My Drive. */
  sharedDriveId?: string;
  /**
   * Bodies larger than one chunk go through a resumable session in chunks of this size: a multiple
   * of 262,144 bytes (256 KiB). Memory holds about two chunks per put. Default 8 MiB.
   */
  chunkSize?: number;
  /**
   * What to do with several files of one name in one folder, which Drive allows: `newest` (default)
   * uses the most recently modified and logs a warning; `error` fails with `Conflict`.
   */
  duplicates?: DuplicatesPolicy;
  /** Move deleted objects to the Drive trash instead of deleting them for good. Default false. */
  trash?: boolean;
  /** The API's base URL (an emulator's, say). https, or http on loopback. Default https://www.googleapis.com. */
  driveUrl?: string;
  /** The upload API's base URL when it differs from `driveUrl`. */
  uploadUrl?: string;
  /** Create the root on first use instead of failing with `FolderMissing`. */
  createRoot?: boolean;
  /** Entries asked for per list page, 1–1000. Default 1000. */
  pageSize?: number;
  /** Requests in flight at once. Default 8. */
  concurrency?: number;
}

const optionsSchema = z
  .object({
    auth: z.custom<TokenSource>(isTokenSource, {
      message:
        "expected a token source: selfHostedHandler(…), hostedHandler(…), oauthRefreshToken(…) or personalAccessToken(…) from @stowage/auth",
    }),
    root: z.string().optional(),
    sharedDriveId: z
      .string()
      .regex(/^[A-Za-z0-9_-]+$/, "must be a Drive id (letters, digits, '-' and '_')")
      .optional(),
    chunkSize: z.number().optional(),
    duplicates: z.enum(["newest", "error"]).optional(),
    trash: z.boolean().optional(),
    driveUrl: z.string().optional(),
    uploadUrl: z.string().optional(),
    createRoot: z.boolean().optional(),
    pageSize: z.number().int().min(1).max(1000).optional(),
    concurrency: z.number().int().min(1).max(64).optional(),
    ...httpStorageOptionsShape,
  })
  .strict();

function configError(message: string, hint?: string): StorageError {
  return new StorageError({ provider: "gdrive", operation: "open", code: "InvalidConfig", message, hint });
}

/**
 * Checks a chunk size: a positive multiple of 262,144 bytes (reference §B.3). `field` names the
 * option or URL parameter in the message.
 */
function checkChunkSize(value: number, field: string): number {
  if (!Number.isSafeInteger(value) || value <= 0 || value % CHUNK_MULTIPLE !== 0) {
    throw configError(
      `${field} must be a positive multiple of 262,144 bytes (256 KiB), not ${value}`,
      `Drive takes resumable chunks in multiples of 256 KiB; use e.g. ${8 * MiB} (8 MiB, the default) or ${CHUNK_MULTIPLE}`,
    );
  }
  return value;
}

function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "[::1]" || /^127\./.test(hostname);
}

/** An API base URL: https, or http on loopback (tokens must not cross a network in clear). */
function baseUrl(text: string, field: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw configError(`${field} is not a valid URL`, "pass the base URL, e.g. https://www.googleapis.com");
  }
  if (url.protocol !== "https:" && !(url.protocol === "http:" && isLoopback(url.hostname))) {
    throw configError(
      `${field} must be https (http is allowed only on loopback, for an emulator)`,
      "bearer tokens must not cross a network in clear text",
    );
  }
  if (url.search || url.hash || url.username || url.password) {
    throw configError(`${field} must be a plain base URL, without query, fragment or credentials`);
  }
  return url.href.replace(/\/+$/, "");
}

function parseOptions(options: GoogleDriveStorageOptions): z.infer<typeof optionsSchema> {
  const parsed = optionsSchema.safeParse(options);
  if (parsed.success) return parsed.data;
  // Issues name the option and what is wrong, never the value (a token source holds secrets).
  const issue = parsed.error.issues[0]!;
  const name = issue.path.join(".") || "options";
  throw configError(
    issue.code === "unrecognized_keys"
      ? `unknown option ${issue.keys.map((k) => `'${k}'`).join(", ")}`
      : `option '${name}': ${issue.message}`,
    "see the @stowage/gdrive README for the options",
  );
}

/**
 * A storage in a Google Drive folder, over the Drive v3 API.
 *
 * @example
 * import { selfHostedHandler } from "@stowage/auth";
 * const storage = createGoogleDriveStorage({
 *   auth: selfHostedHandler({ authId: process.env.STOWAGE_AUTHID!, url: "https://handler.example.com/refresh" }),
 *   root: "Backups/pc1",
 *   createRoot: true,
 * });
 * await storage.put("vol/0001.zip", fs.createReadStream("0001.zip"));
 */
export function createGoogleDriveStorage(options: GoogleDriveStorageOptions): GoogleDriveStorage {
  const valid = parseOptions(options);
  const root = normalizeRoot(valid.root, { provider: "gdrive", operation: "open" });
  const segments = root === "" ? [] : root.split("/");
  const driveUrl = baseUrl(valid.driveUrl ?? GOOGLE_DRIVE_URL, "option 'driveUrl'");
  const uploadUrl = valid.uploadUrl === undefined ? driveUrl : baseUrl(valid.uploadUrl, "option 'uploadUrl'");
  const chunkSize = checkChunkSize(valid.chunkSize ?? 8 * MiB, "option 'chunkSize'");
  const path = segments.map(encodeURIComponent).join("/");
  const shared = valid.sharedDriveId === undefined ? "" : `?shared-drive-id=${valid.sharedDriveId}`;
  return new GoogleDriveStorage({
    auth: valid.auth,
    root: segments,
    sharedDriveId: valid.sharedDriveId,
    chunkSize,
    duplicates: valid.duplicates ?? "newest",
    trash: valid.trash ?? false,
    driveUrl,
    uploadUrl,
    createRoot: valid.createRoot ?? false,
    pageSize: valid.pageSize ?? 1000,
    concurrency: valid.concurrency ?? 8,
    retry: valid.retry,
    connectTimeoutMs: valid.connectTimeoutMs,
    headersTimeoutMs: valid.headersTimeoutMs,
    bodyTimeoutMs: valid.bodyTimeoutMs,
    location: `gdrive://${path}${shared}`,
    logger: valid.logger,
  });
}

/**
 * `gdrive://Backups/pc1?authid=…&oauth-url=…`: the URL's host and path are the root folder's path
 * in My Drive (`gdrive:///Backups/pc1` is the same). Parameters: see the README.
 */
export const gdriveProvider: ProviderDescriptor = {
  provider: "gdrive",
  schemes: ["gdrive"],
  params: {
    ...authParams,
    "shared-drive-id": { description: "work in this shared drive (its id) instead of My Drive" },
    "chunk-size": {
      description: "resumable upload chunk size in bytes, a multiple of 262144 (default 8388608)",
      type: "integer",
    },
    duplicates: {
      description: "several files of one name in a folder: 'newest' (default, with a warning) or 'error'",
    },
    trash: {
      description: "move deleted objects to the Drive trash (default false: delete)",
      type: "boolean",
    },
    "drive-url": {
      description: "the API's base URL, e.g. an emulator's (default https://www.googleapis.com)",
    },
    "create-root": {
      description: "create the root folder on first use instead of failing with FolderMissing",
      type: "boolean",
    },
    "page-size": { description: "entries per list page, 1–1000 (default 1000)", type: "integer" },
  },
  objectOptions: [...authObjectOptions, "logger"],
  open(connection) {
    const auth = tokenSourceFromConnection(connection, { provider: "gdrive", tokenUrl: GOOGLE_TOKEN_URL });
    if (!auth) {
      throw new StorageError({
        provider: "gdrive",
        operation: "connect",
        code: "InvalidConfig",
        message: "gdrive needs credentials: authid (with oauth-url), token, or client-id with refresh-token",
        hint: "add authid=KEYID:SECRET&oauth-url=https://your-handler/refresh, or pass an auth option",
      });
    }
    const duplicates = connection.params.duplicates;
    if (duplicates !== undefined && duplicates !== "newest" && duplicates !== "error") {
      throw new StorageError({
        provider: "gdrive",
        operation: "connect",
        code: "InvalidConfig",
        message: `parameter 'duplicates' must be 'newest' or 'error', not '${duplicates}'`,
      });
    }
    const chunkSize = paramInteger(connection, "chunk-size");
    if (chunkSize !== undefined) checkChunkSize(chunkSize, "parameter 'chunk-size'");
    return createGoogleDriveStorage({
      auth,
      root: [connection.host, connection.path].filter((part) => part !== "").join("/"),
      sharedDriveId: connection.params["shared-drive-id"],
      chunkSize,
      duplicates,
      trash: paramBoolean(connection, "trash"),
      driveUrl: connection.params["drive-url"],
      createRoot: paramBoolean(connection, "create-root"),
      pageSize: paramInteger(connection, "page-size"),
      logger: connection.objects.logger as Logger | undefined,
    });
  },
};

registerProvider(gdriveProvider);
