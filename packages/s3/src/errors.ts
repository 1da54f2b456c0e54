import { type ErrorCode, isStorageError, parseRetryAfter, StorageError, toStorageError } from "@stowage/core";

/** Where an S3 failure happened, for the message and for telling a missing object from a missing bucket. */
export interface S3ErrorContext {
  provider: string;
  operation: string;
  key?: string;
  bucket: string;
  /** What the request addressed: a HEAD 404 carries no error code, so only this tells the two apart. */
  target?: "object" | "bucket";
}

/** One row of the table: the S3 error codes (and statuses) it covers and what they become. */
export interface S3ErrorRule {
  codes: readonly string[];
  /** Matches when the response had this status and no code the table knows (HEAD responses have no body). */
  statuses?: readonly number[];
  code: ErrorCode;
  message: string | ((bucket: string) => string);
  hint?: string;
  /** Overrides the code's default retryability. */
  retryable?: boolean;
}

/**
 * S3 error code → StorageError, first match wins. Codes come from the S3 error-code list
 * (https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html) plus what compatible servers
 * send; statuses cover responses without a body (HEAD) and servers that send no code. Each row has a
 * test in test/errors.test.ts.
 */
export const s3ErrorTable: readonly S3ErrorRule[] = [
  {
    codes: ["NoSuchBucket"],
    code: "FolderMissing",
    message: (bucket) => `the bucket '${bucket}' does not exist`,
    hint: "check the bucket name for a typo, then call createRoot() or pass createRoot: true (create-root=true in a URL) to create it",
  },
  { codes: ["NoSuchKey"], code: "NotFound", message: "no object has this key" },
  {
    codes: ["NoSuchUpload"],
    code: "Conflict",
    message: "the multipart upload no longer exists (it was completed or aborted meanwhile)",
    hint: "put the object again",
  },
  {
    codes: ["InvalidAccessKeyId"],
    code: "Unauthenticated",
    message: "the server does not know this access key id",
    hint: "check the access key id (access-key-id), and that the endpoint and region belong to the account that issued it",
  },
  {
    codes: ["SignatureDoesNotMatch"],
    code: "Unauthenticated",
    message: "the request signature does not match: the secret access key is wrong for this access key id",
    hint: "check the secret access key (secret-access-key); a region that differs from the bucket's also breaks signatures",
  },
  {
    codes: ["ExpiredToken", "TokenRefreshRequired", "InvalidToken"],
    code: "Unauthenticated",
    message: "the session token has expired or is not valid",
    hint: "fetch fresh temporary credentials (session-token) and open the storage again",
  },
  {
    // The SDK moves its clock by the server's Date header after this error, so the next attempt is
    // signed with the corrected time: worth one retry even though it is an authentication failure.
    codes: ["RequestTimeTooSkewed"],
    code: "Unauthenticated",
    message: "the computer's clock differs from the server's by more than 15 minutes",
    hint: "set this computer's clock (enable NTP)",
    retryable: true,
  },
  {
    codes: [
      "AccessDenied",
      "AllAccessDisabled",
      "AccountProblem",
      "KMS.AccessDeniedException",
      "KMS.DisabledException",
    ],
    statuses: [403],
    code: "PermissionDenied",
    message: "access denied",
    hint: "check that the key's policy allows this action on the bucket and prefix",
  },
  {
    codes: [
      "SlowDown",
      "TooManyRequests",
      "TooManyRequestsException",
      "Throttling",
      "ThrottlingException",
      "RequestLimitExceeded",
    ],
    statuses: [429],
    code: "RateLimited",
    message: "the server asks to slow down",
    hint: "lower concurrency or retry later",
  },
  {
    codes: ["RequestTimeout"],
    code: "Timeout",
    message: "the server closed the request because the body did not arrive in time",
  },
  {
    codes: [
      "InternalError",
      "ServiceUnavailable",
      "ServerBusy",
      "BadGateway",
      "GatewayTimeout",
      "XMinioServerNotInitialized",
    ],
    statuses: [500, 502, 503, 504],
    code: "Unavailable",
    message: "the server failed the request",
  },
  {
    codes: ["PreconditionFailed"],
    statuses: [412],
    code: "AlreadyExists",
    message: "an object with this key already exists",
    hint: "delete it first or put without ifNotExists",
  },
  {
    // AWS: another conditional write on this key is in flight; its documented remedy is to retry.
    codes: ["ConditionalRequestConflict"],
    code: "Conflict",
    message: "another conditional write on this key is in progress",
    retryable: true,
  },
  {
    codes: ["InvalidObjectState"],
    code: "Unsupported",
    message: "the object is archived (Glacier or Deep Archive) and cannot be read until it is restored",
    hint: "restore the object (RestoreObject) and read it when the restore has finished",
  },
  {
    codes: ["EntityTooLarge", "MaxMessageLengthExceeded"],
    code: "Unsupported",
    message: "the object or part is larger than the server accepts",
    hint: "S3 accepts objects up to 5 TiB and parts up to 5 GiB; lower part-size or split the object",
  },
  {
    codes: ["EntityTooSmall"],
    code: "InvalidConfig",
    message: "a part is smaller than the server's minimum part size",
    hint: "raise part-size (AWS and most compatible servers need at least 5 MiB)",
  },
  {
    codes: [
      "QuotaExceeded",
      "XMinioStorageFull",
      "StorageFull",
      "InsufficientStorage",
      "ServiceQuotaExceeded",
      "TooManyBuckets",
    ],
    statuses: [507],
    code: "QuotaExceeded",
    message: "the storage quota is used up",
    hint: "free space or raise the quota",
  },
  {
    codes: ["BadDigest", "XAmzContentSHA256Mismatch", "InvalidDigest", "InvalidChecksum"],
    code: "Integrity",
    message: "the server received different bytes than were sent",
    hint: "put the object again; if it persists, something between here and the server alters data",
  },
  {
    codes: [
      "PermanentRedirect",
      "AuthorizationHeaderMalformed",
      "IllegalLocationConstraintException",
      "IncorrectEndpoint",
    ],
    statuses: [301],
    code: "InvalidConfig",
    message: "the bucket is in another region or behind another endpoint",
    hint: "set region (and endpoint) to the bucket's",
  },
  {
    codes: ["InvalidBucketName"],
    code: "InvalidConfig",
    message: (bucket) => `'${bucket}' is not a valid bucket name`,
    hint: "bucket names are 3 to 63 characters: lower-case letters, digits, '.' and '-'",
  },
  {
    codes: ["BucketAlreadyOwnedByYou"],
    code: "Conflict",
    message: (bucket) => `the bucket '${bucket}' already exists and is yours`,
  },
  {
    codes: ["BucketAlreadyExists"],
    code: "Conflict",
    message: (bucket) => `the bucket name '${bucket}' is taken by another account`,
    hint: "bucket names are global on AWS: choose another",
  },
  {
    codes: ["NotImplemented", "MethodNotAllowed", "XNotImplemented"],
    statuses: [405, 501],
    code: "Unsupported",
    message: "the server does not implement this request",
    hint: "this S3-compatible server lacks the feature; try another preset",
  },
  {
    codes: ["InvalidRange"],
    statuses: [416],
    code: "InvalidConfig",
    message: "the range starts past the end of the object",
  },
];

const byCode = new Map<string, S3ErrorRule>();
const byStatus = new Map<number, S3ErrorRule>();
for (const rule of s3ErrorTable) {
  for (const code of rule.codes) byCode.set(code, rule);
  for (const status of rule.statuses ?? []) if (!byStatus.has(status)) byStatus.set(status, rule);
}

/** The parts of an SDK error this mapping reads; everything is optional since anything can be thrown. */
interface SdkErrorShape {
  name?: unknown;
  Code?: unknown;
  code?: unknown;
  message?: unknown;
  $metadata?: { httpStatusCode?: unknown };
  $response?: { headers?: Record<string, string | undefined> };
}

const sdkStatusNames = new Set(["Error", "Unknown", "NotFound", "Forbidden"]);

/** The S3 error code of an SDK error (`name` for modeled and unmodeled errors, `Code` from the XML body). */
export function s3ErrorCode(err: unknown): string | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const shape = err as SdkErrorShape;
  if (typeof shape.Code === "string" && shape.Code !== "") return shape.Code;
  // A response without a body (HEAD) has no code: the SDK then names the error "NotFound" (404) or
  // "Unknown", which are not S3 codes.
  if (typeof shape.name === "string" && shape.$metadata && !sdkStatusNames.has(shape.name)) return shape.name;
  return undefined;
}

function statusOf(err: unknown): number | undefined {
  const status = (err as SdkErrorShape | null)?.$metadata?.httpStatusCode;
  return typeof status === "number" ? status : undefined;
}

function retryAfterOf(err: unknown): number | undefined {
  const headers = (err as SdkErrorShape | null)?.$response?.headers;
  if (!headers) return undefined;
  const value = Object.entries(headers).find(([name]) => name.toLowerCase() === "retry-after")?.[1];
  return parseRetryAfter(value);
}

function describe(code: string | undefined, status: number | undefined): string {
  const parts = [code, status === undefined ? undefined : `HTTP ${status}`].filter((p) => p !== undefined);
  return parts.length === 0 ? "" : ` (${parts.join(", ")})`;
}

/**
 * Turns anything an S3 call throws into a {@link StorageError} in context, through {@link s3ErrorTable}.
 * Network failures (ECONNRESET, ECONNREFUSED, …) and aborts go through core's `toStorageError`; SDK
 * timeouts become `Timeout`; an S3 error the table does not know becomes `Unavailable` for 5xx and
 * `Protocol` otherwise, with the server's code and message (servers never see the secret key, only
 * signatures, and messages are redacted anyway).
 *
 * @example
 * try { await client.send(command) } catch (err) { throw toS3StorageError(err, { provider: "s3", operation: "stat", key, bucket }) }
 */
export function toS3StorageError(err: unknown, context: S3ErrorContext): StorageError {
  const where =
    context.key === undefined
      ? { provider: context.provider, operation: context.operation }
      : { provider: context.provider, operation: context.operation, key: context.key };
  if (isStorageError(err)) return toStorageError(err, where);
  const status = statusOf(err);
  const code = s3ErrorCode(err);
  const name = (err as SdkErrorShape | null)?.name;

  if (status === undefined) {
    // Network codes first: the SDK names ECONNRESET and EPIPE "TimeoutError" too.
    const network = toStorageError(err, where);
    if (network.code !== "Protocol") return network;
    if (name === "TimeoutError") {
      return new StorageError({
        ...where,
        code: "Timeout",
        message: "the server did not answer in time",
        cause: err,
      });
    }
    if (name === "CredentialsProviderError") {
      return new StorageError({
        ...where,
        code: "Unauthenticated",
        message: "no credentials were found",
        hint: "pass credentials (or access-key-id and secret-access-key), or set up the AWS default chain (AWS_ACCESS_KEY_ID, a profile, an instance role)",
        cause: err,
      });
    }
    const text =
      typeof (err as SdkErrorShape | null)?.message === "string"
        ? String((err as SdkErrorShape).message)
        : "";
    if (/region is missing/i.test(text)) {
      return new StorageError({
        ...where,
        code: "InvalidConfig",
        message: "no region is set",
        hint: "pass region (or set AWS_REGION)",
        cause: err,
      });
    }
    return network;
  }

  // A 404 without a code comes from a HEAD; only the request tells a missing object from a missing bucket.
  const rule =
    code === undefined && status === 404
      ? byCode.get(context.target === "bucket" ? "NoSuchBucket" : "NoSuchKey")
      : ((code === undefined ? undefined : byCode.get(code)) ?? byStatus.get(status));
  const retryAfterMs = retryAfterOf(err);
  if (rule) {
    const message = typeof rule.message === "function" ? rule.message(context.bucket) : rule.message;
    return new StorageError({
      ...where,
      code: rule.code,
      message: `${message}${describe(code, status)}`,
      hint: rule.hint,
      status,
      retryAfterMs,
      retryable: rule.retryable,
      cause: err,
    });
  }
  const serverMessage =
    typeof (err as SdkErrorShape).message === "string" ? String((err as SdkErrorShape).message) : "";
  const said = serverMessage && serverMessage !== "UnknownError" ? `: ${serverMessage}` : "";
  return new StorageError({
    ...where,
    code: status >= 500 ? "Unavailable" : "Protocol",
    message: `the server refused the request${describe(code, status)}${said}`,
    status,
    retryAfterMs,
    cause: err,
  });
}
