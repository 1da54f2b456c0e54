import {
  isStorageError,
  redact,
  type StorageError,
  type StorageErrorInit,
  toStorageError,
} from "@stowage/core";

/**
 * A copy of an error thrown by user code (an `onRotate`, a token function) with its message and stack
 * redacted. `console.error(err)` and `util.inspect` print an error's `cause` in full, and user code may
 * well say "could not write rt_…" — so the original is never kept as a cause.
 */
export function redactedCause(err: unknown): unknown {
  if (isStorageError(err)) return err;
  if (!(err instanceof Error)) return redact(String(err));
  const copy = new Error(redact(err.message));
  copy.name = err.name;
  copy.stack = err.stack === undefined ? undefined : redact(err.stack);
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string") Object.assign(copy, { code });
  return copy;
}

/** An error from a user callback, as a {@link StorageError} whose cause is redacted. */
export function callbackError(
  err: unknown,
  context: Pick<StorageErrorInit, "provider" | "operation">,
): StorageError {
  return toStorageError(redactedCause(err), context);
}
