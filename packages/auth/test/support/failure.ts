import { isStorageError, type StorageError } from "@stowage/core";
import { expect } from "vitest";

/** The StorageError a call throws or rejects with; fails the test if it succeeds or throws something else. */
export async function failure(call: () => unknown): Promise<StorageError> {
  try {
    await call();
  } catch (err) {
    expect(isStorageError(err), String(err)).toBe(true);
    return err as StorageError;
  }
  throw new Error("expected a StorageError");
}
