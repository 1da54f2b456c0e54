import { registerProvider } from "./connection.js";
import { fsProvider, memoryProvider } from "./providers/builtin.js";

export {
  BaseStorage,
  type BaseStorageInit,
  type GetRequest,
  type GetResult,
  makeDownload,
  type PutRequest,
} from "./base-storage.js";
export {
  bodyToIterable,
  chunked,
  concatBytes,
  iterableToStream,
  knownSize,
  readAll,
  streamPieces,
} from "./body.js";
export {
  type ConnectOptions,
  closestName,
  connect,
  type Diagnostic,
  type ParamSpec,
  type ParsedConnection,
  type ParseOptions,
  type ProviderDescriptor,
  paramBoolean,
  paramInteger,
  parseConnectionUrl,
  providerForScheme,
  registerProvider,
  toKebab,
} from "./connection.js";
export {
  abortedError,
  type ErrorCode,
  errorCodes,
  isAbortError,
  isRetryableCode,
  isStorageError,
  StorageError,
  type StorageErrorInit,
  throwIfAborted,
  toStorageError,
} from "./errors.js";
export { isTokenSource } from "./guards.js";
export {
  createHasher,
  type Hasher,
  hashBytes,
  pickHashAlgorithm,
  registerHasher,
  sameHash,
} from "./hashes.js";
export {
  createHttpClient,
  type HttpBody,
  type HttpClient,
  type HttpClientOptions,
  type HttpErrorResponse,
  type HttpRequest,
  type HttpResponse,
  parseRetryAfter,
} from "./http.js";
export { type HttpStorageOptions, httpStorageOptionsShape } from "./http-options.js";
export {
  baseName,
  joinKey,
  MAX_KEY_BYTES,
  MAX_SEGMENT_BYTES,
  normalizeRoot,
  parentOf,
  validateFolder,
  validateKey,
} from "./keys.js";
export { createLimiter, type Limiter } from "./limiter.js";
export { channels, publish, redactingLogger, silentLogger } from "./observe.js";
export { fsProvider, memoryProvider } from "./providers/builtin.js";
export { createFsStorage, FsStorage, type FsStorageOptions } from "./providers/fs.js";
export {
  createMemoryStorage,
  MemoryStorage,
  type MemoryStorageOptions,
  MemoryVolume,
} from "./providers/memory.js";
export { QuickXorHash, quickXorHash } from "./quickxor.js";
export { isSecretName, isSecretParam, REDACTED, redact, redactUrl, registerSecret } from "./redact.js";
export {
  defaultRetryOptions,
  type RetryContext,
  type RetryInfo,
  type RetryOptions,
  retry,
  sleep,
} from "./retry.js";
export {
  type CopyAllOptions,
  type CopyProgress,
  type CopyResult,
  copyAll,
  getFile,
  putFile,
} from "./transfer.js";
export type * from "./types.js";

registerProvider(memoryProvider);
registerProvider(fsProvider);
