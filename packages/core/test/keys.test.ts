import { normalizeRoot, StorageError, validateFolder, validateKey } from "@stowage/core";
import { hardKeys, invalidKeys } from "@stowage/core/conformance";
import { describe, expect, it } from "vitest";

function invalidKey(key: unknown): StorageError {
  try {
    validateKey(key, { provider: "memory", operation: "put" });
  } catch (err) {
    expect(err).toBeInstanceOf(StorageError);
    return err as StorageError;
  }
  throw new Error(`expected ${JSON.stringify(key)} to be refused`);
}

describe("key validation", () => {
  it.each([
    ["", "the key is empty", "name the object, e.g. 'folder/file.bin'"],
    ["/a", "the key starts with '/'", "keys are relative to the root: use 'a'"],
    ["a/", "the key ends with '/'", "a key names an object, not a folder: use 'a'"],
    ["a//b", "the key has an empty segment ('//')", "use single slashes: 'a/b'"],
    [".", "the key has a '.' segment", "keys are literal paths: remove '.' and '..' segments"],
    ["a/../b", "the key has a '..' segment", "keys are literal paths: remove '.' and '..' segments"],
    ["a\u0000b", "the key contains a control character (U+0000) at index 1", "remove it from the key"],
    ["a\nb", "the key contains a control character (U+000A) at index 1", "remove it from the key"],
    ["a\u007f", "the key contains a control character (U+007F) at index 1", "remove it from the key"],
    ["x\ud800", "the key contains a lone surrogate (U+D800) at index 1", "remove it from the key"],
    ["\udc00", "the key contains a lone surrogate (U+DC00) at index 0", "remove it from the key"],
    [
      "x".repeat(256),
      "a segment is 256 UTF-8 bytes long; the limit is 255",
      "shorten the segment or split it with '/'",
    ],
    [
      "é".repeat(128),
      "a segment is 256 UTF-8 bytes long; the limit is 255",
      "shorten the segment or split it with '/'",
    ],
    [
      `${"abcdefgh/".repeat(113)}abcdefgh`,
      "the key is 1025 UTF-8 bytes long; the limit is 1024",
      "use a shorter key",
    ],
  ])("refuses %j with InvalidKey: %s", (key, message, hint) => {
    const err = invalidKey(key);
    expect(err.code).toBe("InvalidKey");
    expect(err.detail).toBe(message);
    expect(err.hint).toBe(hint);
    expect(err.provider).toBe("memory");
    expect(err.operation).toBe("put");
    expect(err.retryable).toBe(false);
  });

  it("refuses a key that is not a string", () => {
    const err = invalidKey(42);
    expect(err.detail).toBe("a key must be a string, not number");
  });

  it("every key of the invalid-keys table is refused", () => {
    for (const { key } of invalidKeys) expect(invalidKey(key).code).toBe("InvalidKey");
  });

  it("every hard key is valid and returned unchanged (no normalisation)", () => {
    for (const { key } of hardKeys) expect(validateKey(key)).toBe(key);
    expect(validateKey("cafe\u0301")).not.toBe(validateKey("caf\u00e9"));
  });

  it("accepts the longest key and segment", () => {
    expect(validateKey("x".repeat(255))).toHaveLength(255);
    const key = `${"abcdefgh/".repeat(113)}abcdefg`;
    expect(new TextEncoder().encode(key).byteLength).toBe(1024);
    expect(validateKey(key)).toBe(key);
  });

  it("a list folder may end with one '/'", () => {
    expect(validateFolder("a/b/")).toBe("a/b");
    expect(validateFolder("")).toBe("");
    expect(validateFolder(undefined)).toBe("");
    expect(() => validateFolder("a//")).toThrow(StorageError);
  });
});

describe("root normalisation", () => {
  it.each([
    ["/Backups//pc1/", "Backups/pc1"],
    ["Backups/pc1", "Backups/pc1"],
    ["///", ""],
    ["", ""],
    [undefined, ""],
  ])("normalises %j to %j", (root, expected) => {
    expect(normalizeRoot(root)).toBe(expected);
  });

  it("refuses '..' in a root with InvalidConfig", () => {
    try {
      normalizeRoot("a/../b", { provider: "fs", operation: "open" });
      throw new Error("expected a failure");
    } catch (err) {
      expect((err as StorageError).code).toBe("InvalidConfig");
      expect((err as StorageError).message).toBe(
        "fs open: the root 'a/../b' has a '..' segment (give the root as a plain path such as 'Backups/pc1')",
      );
    }
  });
});
