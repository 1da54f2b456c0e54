import { hashBytes, QuickXorHash, quickXorHash } from "@stowage/core";
import { describe, expect, it } from "vitest";

// Published test vectors (input and output base64), as used by rclone's implementation.
const vectors: Array<[number, string, string]> = [
  [0, "", "AAAAAAAAAAAAAAAAAAAAAAAAAAA="],
  [1, "Sg==", "SgAAAAAAAAAAAAAAAQAAAAAAAAA="],
  [2, "tbQ=", "taAFAAAAAAAAAAAAAgAAAAAAAAA="],
  [3, "0pZP", "0rDEEwAAAAAAAAAAAwAAAAAAAAA="],
  [8, "/aNzzCFPS/A=", "/RjFHJgRgicsAR4ACAAAAAAAAAA="],
  [16, "2fuxhBJXtpWFe8dOfdGeHw==", "O9tHLAghgSvYohKFyMMxnNCHaHg="],
  [20, "T6LYJIfDh81JrAK309H2JMJTXis=", "zBTHrspn3mEcohlJdIUAbjGNaNg="],
  [21, "DWAAX5/CIfrmErgZa8ot6ZraeSbu", "LR2Z0PjuRYGKQB/mhQAuMrAGZbQ="],
  [41, "0n7nl3YJtipy6yeUbVPWtc2h45WbF9u8hTz5tNwj3dZZwfXWkk+GN3g=", "YJLNK7JR64j9aODWfqDvEe/u6NU="],
  [
    111,
    "jyibxJSzO6ZiZ0O1qe3tG/bvIAYssvukh9suIT5wEy1JBINVgPiqdsTW0cOpP0aUfP7mgqLfADkzI/m/GgCuVhr8oFLrOCoTx1/psBOWwhltCbhUx51Icm9aH8tY4Z3ccU+6BKpYQkLCy0B/A9Zc",
    "hZfLIilSITC6N3e3tQ/iSgEzkto=",
  ],
  [
    222,
    "PfxMcUd0vIW6VbHG/uj/Y0W6qEoKmyBD0nYebEKazKaKG+UaDqBEcmQjbfQeVnVLuodMoPp7P7TR1htX5n2VnkHh22xDyoJ8C/ZQKiSNqQfXvh83judf4RVr9exJCud8Uvgip6aVZTaPrJHVjQhMCp/dEnGvqg0oN5OVkM2qqAXvA0teKUDhgNM71sDBVBCGXxNOR2bpbD1iM4dnuT0ey4L+loXEHTL0fqMeUcEi2asgImnlNakwenDzz0x57aBwyq3AspCFGB1ncX4yYCr/OaCcS5OKi/00WH+wNQU3",
    "QX/YEpG0gDsmhEpCdWhsxDzsfVE=",
  ],
  [
    333,
    "w0LGhqU1WXFbdavqDE4kAjEzWLGGzmTNikzqnsiXHx2KRReKVTxkv27u3UcEz9+lbMvYl4xFf2Z4aE1xRBBNd1Ke5C0zToSaYw5o4B/7X99nKK2/XaUX1byLow2aju2XJl2OpKpJg+tSJ2fmjIJTkfuYUz574dFX6/VXxSxwGH/xQEAKS5TCsBK3CwnuG1p5SAsQq3gGVozDWyjEBcWDMdy8/AIFrj/y03Lfc/RNRCQTAfZbnf2QwV7sluw4fH3XJr07UoD0YqN+7XZzidtrwqMY26fpLZnyZjnBEt1FAZWO7RnKG5asg8xRk9YaDdedXdQSJAOy6bWEWlABj+tVAigBxavaluUH8LOj+yfCFldJjNLdi90fVHkUD/m4Mr5OtmupNMXPwuG3EQlqWUVpQoYpUYKLsk7a5Mvg6UFkiH596y5IbJEVCI1Kb3D1",
    "e3+wo77iKcILiZegnzyUNcjCdoQ=",
  ],
];

describe("quickXorHash", () => {
  for (const [size, input, output] of vectors) {
    it(`matches the published vector for ${size} bytes`, () => {
      const bytes = Buffer.from(input, "base64");
      expect(bytes.byteLength).toBe(size);
      expect(quickXorHash(bytes)).toBe(output);
    });
  }

  it("is registered as the quickXor hasher, so puts and gets verify it", () => {
    const [, input, output] = vectors[8]!;
    expect(hashBytes("quickXor", Buffer.from(input, "base64"))).toBe(output);
  });

  it("gives the same hash however the input is split", () => {
    for (const [, input, output] of vectors) {
      const bytes = Buffer.from(input, "base64");
      for (const block of [1, 2, 7, 64, 161]) {
        const hash = new QuickXorHash();
        for (let i = 0; i < bytes.byteLength; i += block) hash.update(bytes.subarray(i, i + block));
        expect(hash.digest()).toBe(output);
      }
    }
  });

  it("agrees with the bit-by-bit definition on large inputs, fed whole or at unaligned offsets", () => {
    // The definition itself (reference §A.11), one bit at a time: slow, and obviously right.
    const reference = (bytes: Uint8Array): string => {
      const bits = new Uint8Array(160);
      for (let i = 0; i < bytes.length; i++) {
        const offset = (i * 11) % 160;
        for (let b = 0; b < 8; b++) if ((bytes[i]! >> b) & 1) bits[(offset + b) % 160]! ^= 1;
      }
      const out = new Uint8Array(20);
      for (let k = 0; k < 160; k++) if (bits[k]) out[k >> 3]! |= 1 << (k & 7);
      let length = bytes.length;
      for (let i = 12; i < 20; i++) {
        out[i]! ^= length % 256;
        length = Math.floor(length / 256);
      }
      return Buffer.from(out).toString("base64");
    };
    const backing = new Uint8Array(200_003);
    for (let i = 0; i < backing.length; i++) backing[i] = (i * 7919 + 13) % 251;
    for (const start of [0, 1, 2, 3]) {
      const bytes = backing.subarray(start, start + 200_000);
      const expected = reference(bytes);
      expect(quickXorHash(bytes)).toBe(expected);
      const hash = new QuickXorHash();
      for (const [from, to] of [
        [0, 7],
        [7, 100_003],
        [100_003, 100_163],
        [100_163, 200_000],
      ] as const) {
        hash.update(bytes.subarray(from, to));
      }
      expect(hash.digest()).toBe(expected);
    }
  });

  it("folds in lengths above 2^32 exactly", () => {
    // The length goes into 8 little-endian bytes; check that a large length is not truncated to 32 bits.
    const hash = new QuickXorHash();
    (hash as unknown as { length: number }).length = 2 ** 33 + 5;
    const digest = Buffer.from(hash.digestBytes());
    expect([...digest.subarray(12)]).toEqual([5, 0, 0, 0, 2, 0, 0, 0]);
  });
});
