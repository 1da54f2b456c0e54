import { staticCredentials } from "@stowage/auth";
import {
  type Logger,
  normalizeRoot,
  type ParsedConnection,
  type ProviderDescriptor,
  paramBoolean,
  paramInteger,
  type RetryOptions,
  registerProvider,
  type StaticCredentials,
  StorageError,
} from "@stowage/core";
import { z } from "zod";
import {
  presetSettings,
  regionFromEndpoint,
  type S3ChecksumMode,
  type S3Preset,
  s3Presets,
} from "./presets.js";
import { S3Storage } from "./storage.js";
import { MAX_PART_SIZE, MIN_PART_SIZE } from "./upload.js";

export { md5FromEtag } from "./api.js";
export { type S3ErrorContext, type S3ErrorRule, s3ErrorTable, toS3StorageError } from "./errors.js";
export {
  presetSettings,
  type S3ChecksumMode,
  type S3Preset,
  type S3PresetSettings,
  s3Presets,
} from "./presets.js";
export { S3Storage } from "./storage.js";

const MiB = 1024 * 1024;

/** Options of {@link createS3Storage}. Each has a kebab-case URL parameter (see the README). */
export interface S3StorageOptions {
  /** The bucket: the root of the storage, with `prefix`. */
  bucket: string;
  /** A key prefix inside the bucket (`"backups/pc1"`); leading, trailing and doubled slashes are dropped. */
  prefix?: string;
  /** Signing region. Default: the preset's; for `aws`, the AWS default chain (AWS_REGION, profile). */
  region?: string;
  /** The server's URL, for S3-compatible stores (`http://127.0.0.1:9000`). Required unless `preset` is `aws`. */
  endpoint?: string;
  /** Path-style URLs (`host/bucket/key`). Default: the preset's. */
  forcePathStyle?: boolean;
  /** Access keys (`staticCredentials` from @stowage/auth). Without them the AWS default provider chain is used. */
  credentials?: StaticCredentials;
  /** Server family: sets path style, checksum mode and conditional puts. Default `aws`, or `other` with an `endpoint`. */
  preset?: S3Preset;
  /** Bytes per multipart part and the largest single PUT; at least 5 MiB. Default 8 MiB. */
  partSize?: number;
  /** Parts uploaded at once per put; memory is about `partSize × queueSize`. Default 4. */
  queueSize?: number;
  /** Keys per listing request (MaxKeys), 1 to 1,000. Default 1,000. */
  pageSize?: number;
  /** Create the bucket on first use instead of failing with `FolderMissing`. */
  createRoot?: boolean;
  /** Whether the server honours `If-None-Match: *` (atomic `ifNotExists`). Default: the preset's. */
  conditionalPut?: boolean;
  /** When the SDK sends `x-amz-checksum-*` headers. Default: the preset's. */
  checksums?: S3ChecksumMode;
  /** Requests in flight at once for this storage. Default 8. */
  concurrency?: number;
  /** Retry settings for failed requests (core's `retry`), or `false` to never retry. */
  retry?: RetryOptions | false;
  logger?: Logger;
}

/** The options after validation and defaults, as the storage uses them. */
export interface ResolvedS3Options {
  bucket: string;
  prefix: string;
  region?: string;
  endpoint?: string;
  forcePathStyle: boolean;
  credentials?: StaticCredentials;
  preset: S3Preset;
  partSize: number;
  queueSize: number;
  pageSize: number;
  createRoot: boolean;
  conditionalPut: boolean;
  checksums: S3ChecksumMode;
  followRegionRedirects: boolean;
  concurrency: number;
  retry: RetryOptions | false;
  logger?: Logger;
  /** `s3://bucket/prefix?…` without secrets. */
  location: string;
}

const isStaticCredentials = (value: unknown): value is StaticCredentials =>
  typeof value === "object" &&
  value !== null &&
  (value as StaticCredentials).kind === "static" &&
  typeof (value as StaticCredentials).get === "function";

const isLogger = (value: unknown): value is Logger =>
  typeof value === "object" &&
  value !== null &&
  ["debug", "info", "warn", "error"].every(
    (m) => typeof (value as Record<string, unknown>)[m] === "function",
  );

const optionsSchema = z
  .object({
    bucket: z.string({ error: "bucket is required" }).regex(/^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$/, {
      error: "bucket must be 3 to 255 letters, digits, '.', '_' or '-' (no '/'; put folders in prefix)",
    }),
    prefix: z.string().optional(),
    region: z.string().min(1, { error: "region must not be empty" }).optional(),
    endpoint: z
      .url({
        protocol: /^https?$/,
        error: "endpoint must be an http:// or https:// URL, e.g. http://127.0.0.1:9000",
      })
      .optional(),
    forcePathStyle: z.boolean().optional(),
    credentials: z
      .custom<StaticCredentials>(isStaticCredentials, {
        error: "credentials must come from staticCredentials() (@stowage/auth)",
      })
      .optional(),
    preset: z.enum(s3Presets, { error: `preset must be one of ${s3Presets.join(", ")}` }).optional(),
    partSize: z
      .number()
      .int()
      .min(MIN_PART_SIZE, {
        error: `partSize must be at least ${MIN_PART_SIZE} (5 MiB), the smallest part S3 accepts`,
      })
      .max(MAX_PART_SIZE, {
        error: `partSize must be at most ${MAX_PART_SIZE} (5 GiB), the largest part S3 accepts`,
      })
      .optional(),
    queueSize: z.number().int().min(1).max(64, { error: "queueSize must be 1 to 64" }).optional(),
    pageSize: z
      .number()
      .int()
      .min(1)
      .max(1000, { error: "pageSize must be 1 to 1000 (S3 returns at most 1000 keys a page)" })
      .optional(),
    createRoot: z.boolean().optional(),
    conditionalPut: z.boolean().optional(),
    checksums: z
      .enum(["when-supported", "when-required"], {
        error: "checksums must be when-supported or when-required",
      })
      .optional(),
    concurrency: z.number().int().min(1).max(1024, { error: "concurrency must be 1 to 1024" }).optional(),
    retry: z
      .custom<RetryOptions | false>((v) => v === false || (typeof v === "object" && v !== null))
      .optional(),
    logger: z
      .custom<Logger>(isLogger, { error: "logger must have debug, info, warn and error methods" })
      .optional(),
  })
  .strict();

function invalidConfig(message: string, hint?: string): StorageError {
  return new StorageError({ provider: "s3", operation: "open", code: "InvalidConfig", message, hint });
}

function locationOf(options: Omit<ResolvedS3Options, "location">): string {
  const path = options.prefix === "" ? "" : `/${options.prefix.split("/").map(encodeURIComponent).join("/")}`;
  const query = new URLSearchParams();
  if (options.endpoint !== undefined) query.set("endpoint", options.endpoint);
  if (options.region !== undefined) query.set("region", options.region);
  if (options.preset !== "aws") query.set("preset", options.preset);
  const search = query.toString();
  return `s3://${options.bucket}${path}${search === "" ? "" : `?${search}`}`;
}

/** Validates options and fills in the preset's defaults. Throws `InvalidConfig` naming the option. */
export function resolveS3Options(input: S3StorageOptions): ResolvedS3Options {
  const parsed = optionsSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const name = issue.path.join(".");
    const message =
      issue.code === "unrecognized_keys"
        ? `unknown option ${issue.keys.map((k) => `'${k}'`).join(", ")}`
        : issue.message;
    throw invalidConfig(
      name && !message.includes(name) ? `${name}: ${message}` : message,
      issue.code === "unrecognized_keys" ? "see the @stowage/s3 README for the options" : undefined,
    );
  }
  const options = parsed.data;
  const preset: S3Preset = options.preset ?? (options.endpoint === undefined ? "aws" : "other");
  if (preset !== "aws" && options.endpoint === undefined) {
    throw invalidConfig(
      `the ${preset} preset needs an endpoint`,
      "pass the server's URL as endpoint, e.g. https://s3.example.com",
    );
  }
  const settings = presetSettings[preset];
  const endpoint = options.endpoint?.replace(/\/+$/, "");
  const resolved: Omit<ResolvedS3Options, "location"> = {
    bucket: options.bucket,
    prefix: normalizeRoot(options.prefix, { provider: "s3", operation: "open" }),
    region: options.region ?? regionFromEndpoint(preset, endpoint) ?? settings.region,
    endpoint,
    forcePathStyle: options.forcePathStyle ?? settings.forcePathStyle,
    credentials: options.credentials,
    preset,
    partSize: options.partSize ?? 8 * MiB,
    queueSize: options.queueSize ?? 4,
    pageSize: options.pageSize ?? 1000,
    createRoot: options.createRoot ?? false,
    conditionalPut: options.conditionalPut ?? settings.conditionalPut,
    checksums: options.checksums ?? settings.checksums,
    followRegionRedirects: settings.followRegionRedirects,
    concurrency: options.concurrency ?? 8,
    retry: options.retry ?? {},
    logger: options.logger,
  };
  return { ...resolved, location: locationOf(resolved) };
}

/**
 * A storage on an S3 bucket (or an S3-compatible server), rooted at `bucket/prefix`.
 *
 * The bucket must exist (`FolderMissing` otherwise) unless `createRoot` is set; the prefix needs no
 * creating. Keys are object keys below the prefix; folders are virtual.
 *
 * @example
 * import { staticCredentials } from "@stowage/auth";
 * const storage = createS3Storage({
 *   bucket: "backups",
 *   prefix: "pc1",
 *   endpoint: "http://127.0.0.1:9000",
 *   preset: "minio",
 *   credentials: staticCredentials({ accessKeyId: "minio", secretAccessKey: process.env.MINIO_SECRET! }),
 * });
 * await storage.put("vol/0001.zip", fs.createReadStream("0001.zip"));
 */
export function createS3Storage(options: S3StorageOptions): S3Storage {
  return new S3Storage(resolveS3Options(options));
}

/** Parses `8388608`, `8MiB`, `8M`, `512KiB`, `1GiB` into bytes. */
export function parseByteSize(text: string, name: string): number {
  const match = /^\s*(\d+)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?\s*$/i.exec(text);
  if (!match) throw invalidConfig(`${name} must be a size in bytes such as 8388608 or 8MiB, not '${text}'`);
  const unit = (match[2] ?? "b").toLowerCase()[0]!;
  const factor = unit === "k" ? 1024 : unit === "m" ? MiB : unit === "g" ? 1024 * MiB : 1;
  return Number(match[1]) * factor;
}

function credentialsFrom(connection: ParsedConnection): StaticCredentials | undefined {
  const fromObject = connection.objects.credentials;
  if (fromObject !== undefined) return fromObject as StaticCredentials;
  const accessKeyId = connection.params["access-key-id"];
  const secretAccessKey = connection.params["secret-access-key"];
  const sessionToken = connection.params["session-token"];
  if (accessKeyId === undefined && secretAccessKey === undefined) {
    if (sessionToken !== undefined)
      throw invalidConfig("session-token needs access-key-id and secret-access-key");
    return undefined;
  }
  if (accessKeyId === undefined || secretAccessKey === undefined) {
    throw invalidConfig(
      `${accessKeyId === undefined ? "access-key-id" : "secret-access-key"} is missing`,
      "pass both access-key-id and secret-access-key, or neither to use the AWS default chain",
    );
  }
  return staticCredentials({
    accessKeyId,
    secretAccessKey,
    ...(sessionToken === undefined ? {} : { sessionToken }),
  });
}

/**
 * `s3://bucket/prefix?region=…&endpoint=…`: registered with core's `connect` when this package is
 * imported.
 */
export const s3Provider: ProviderDescriptor = {
  provider: "s3",
  schemes: ["s3"],
  params: {
    region: { description: "signing region, e.g. eu-west-1 (default: the preset's; for aws, the AWS chain)" },
    endpoint: { description: "the server's URL for S3-compatible stores, e.g. http://127.0.0.1:9000" },
    "force-path-style": {
      description: "path-style URLs (host/bucket/key); default: the preset's",
      type: "boolean",
    },
    "access-key-id": {
      description: "access key id (with secret-access-key); default: the AWS default chain",
    },
    "secret-access-key": { description: "secret access key", secret: true },
    "session-token": { description: "session token of temporary credentials", secret: true },
    preset: { description: `server family: ${s3Presets.join(", ")}` },
    "part-size": {
      description: "bytes per multipart part and largest single PUT (default 8MiB, at least 5MiB)",
    },
    "queue-size": { description: "parts uploaded at once per put (default 4)", type: "integer" },
    "create-root": {
      description: "create the bucket on first use instead of failing with FolderMissing",
      type: "boolean",
    },
    "page-size": { description: "keys per listing request, 1 to 1000 (default 1000)", type: "integer" },
    "conditional-put": {
      description: "the server honours If-None-Match (atomic ifNotExists); default: the preset's",
      type: "boolean",
    },
    checksums: {
      description: "when-supported or when-required: when to send x-amz-checksum-* (default: the preset's)",
    },
    concurrency: { description: "requests in flight at once (default 8)", type: "integer" },
  },
  objectOptions: ["credentials", "logger", "retry"],
  open(connection) {
    if (connection.host === "") {
      throw invalidConfig(
        "an s3 URL names the bucket as its host, and this one has none",
        "write s3://bucket/prefix",
      );
    }
    const params = connection.params;
    const partSize = params["part-size"];
    return createS3Storage({
      bucket: connection.host,
      prefix: connection.path,
      region: params.region,
      endpoint: params.endpoint,
      forcePathStyle: paramBoolean(connection, "force-path-style"),
      credentials: credentialsFrom(connection),
      preset: params.preset as S3Preset | undefined,
      partSize: partSize === undefined ? undefined : parseByteSize(partSize, "part-size"),
      queueSize: paramInteger(connection, "queue-size"),
      pageSize: paramInteger(connection, "page-size"),
      createRoot: paramBoolean(connection, "create-root"),
      conditionalPut: paramBoolean(connection, "conditional-put"),
      checksums: params.checksums as S3ChecksumMode | undefined,
      concurrency: paramInteger(connection, "concurrency"),
      retry: connection.objects.retry as RetryOptions | undefined,
      logger: connection.objects.logger as Logger | undefined,
    });
  },
};

registerProvider(s3Provider);
