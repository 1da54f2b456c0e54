import { StorageError } from "@stowage/core";

/** Bumped when a table changes; a store refuses a database written by a newer handler. */
export const SCHEMA_VERSION = 1;

/** The error when a database holds a newer schema than this handler knows. */
export function newerSchema(found: number, location: string): StorageError {
  return new StorageError({
    provider: "handler",
    operation: "store",
    code: "InvalidConfig",
    message: `the store ${location} has schema version ${found}; this handler knows up to ${SCHEMA_VERSION}`,
    hint: "upgrade @stowage/handler on every instance before pointing it at this store",
  });
}

/** Turns a driver error into `Unavailable`, naming what failed but not the driver's text (it may quote SQL values). */
export function storeError(err: unknown, kind: string, operation: string): StorageError {
  if (err instanceof StorageError) return err;
  const code = (err as { code?: unknown }).code;
  return new StorageError({
    provider: "handler",
    operation: "store",
    code: "Unavailable",
    message: `the ${kind} store failed during ${operation}${typeof code === "string" ? ` (${code})` : ""}`,
    hint: "check that the database is reachable and writable; /healthz reports the same",
    cause: err,
  });
}

/** The error every store raises when a KEYID already exists. */
export function duplicate(keyId: string): StorageError {
  return new StorageError({
    provider: "handler",
    operation: "store",
    code: "AlreadyExists",
    message: `a record named ${keyId.slice(0, 8)}… already exists`,
  });
}
