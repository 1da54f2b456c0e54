import { createHash } from "node:crypto";
import { QuickXorHash } from "./quickxor.js";
import type { HashAlgorithm, Hashes } from "./types.js";

/** An incremental hash: feed bytes with `update`, read the result once with `digest`. */
export interface Hasher {
  update(bytes: Uint8Array): void;
  /** md5/sha1/sha256/crc32c as lowercase hex; quickXor as base64. */
  digest(): string;
}

type HasherFactory = () => Hasher;

const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    // Castagnoli polynomial, reflected (RFC 3720 §12.1).
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32c(): Hasher {
  let crc = 0xffffffff;
  return {
    update(bytes) {
      let c = crc;
      for (let i = 0; i < bytes.length; i++) c = CRC32C_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
      crc = c;
    },
    digest() {
      return ((crc ^ 0xffffffff) >>> 0).toString(16).padStart(8, "0");
    },
  };
}

function nodeHash(name: string): HasherFactory {
  return () => {
    const hash = createHash(name);
    return {
      update: (bytes) => void hash.update(bytes),
      digest: () => hash.digest("hex"),
    };
  };
}

const factories = new Map<HashAlgorithm, HasherFactory>([
  ["md5", nodeHash("md5")],
  ["sha1", nodeHash("sha1")],
  ["sha256", nodeHash("sha256")],
  ["crc32c", crc32c],
  [
    "quickXor",
    () => {
      const hash = new QuickXorHash();
      return { update: (bytes) => void hash.update(bytes), digest: () => hash.digest() };
    },
  ],
]);

/** Adds (or replaces) the hasher of an algorithm. */
export function registerHasher(algorithm: HashAlgorithm, factory: HasherFactory): void {
  factories.set(algorithm, factory);
}

/** A new hasher for `algorithm`, or `undefined` when none is registered. */
export function createHasher(algorithm: HashAlgorithm): Hasher | undefined {
  return factories.get(algorithm)?.();
}

/** The first algorithm in `preferred` that can be computed here and, if given, that `hashes` carries. */
export function pickHashAlgorithm(
  preferred: readonly HashAlgorithm[],
  hashes?: Hashes,
): HashAlgorithm | undefined {
  return preferred.find((alg) => factories.has(alg) && (hashes === undefined || hashes[alg] !== undefined));
}

/** Hashes a whole byte array. */
export function hashBytes(algorithm: HashAlgorithm, bytes: Uint8Array): string {
  const hasher = createHasher(algorithm);
  if (!hasher) throw new Error(`no hasher registered for ${algorithm}`);
  hasher.update(bytes);
  return hasher.digest();
}

/** Whether two digests of `algorithm` are equal (hex is compared case-insensitively). */
export function sameHash(algorithm: HashAlgorithm, a: string, b: string): boolean {
  return algorithm === "quickXor" ? a === b : a.toLowerCase() === b.toLowerCase();
}
