import { randomUUID } from "node:crypto";
import { staticCredentials } from "@stowage/auth";
import { createS3Storage, type S3StorageOptions } from "../../src/index.js";
import type { S3Storage } from "../../src/storage.js";
import { S3RVER_ACCESS_KEY_ID, S3RVER_SECRET_ACCESS_KEY } from "./s3rver.js";

export const MiB = 1024 * 1024;

export const s3rverCredentials = () =>
  staticCredentials({ accessKeyId: S3RVER_ACCESS_KEY_ID, secretAccessKey: S3RVER_SECRET_ACCESS_KEY });

/**
 * A storage on `endpoint` (s3rver or a fault proxy in front of it) under a fresh prefix, with the
 * `other` preset, s3rver's keys, and quick retries so that fault tests stay fast.
 */
export function openStorage(endpoint: string, options: Partial<S3StorageOptions> = {}): S3Storage {
  return createS3Storage({
    bucket: "tests",
    prefix: `t-${randomUUID()}`,
    endpoint,
    preset: "other",
    credentials: s3rverCredentials(),
    retry: { attempts: 3, minDelayMs: 1, maxDelayMs: 20 },
    ...options,
  });
}

/** Deterministic bytes. */
export function bytesOf(size: number, seed = 1): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed * 2654435761;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

/** A stream of unknown length, in pieces. */
export async function* piecesOf(bytes: Uint8Array, pieceSize = 64 * 1024): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.byteLength; i += pieceSize) yield bytes.slice(i, i + pieceSize);
}

export async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}
