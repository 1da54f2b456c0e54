import { hardKeys } from "@stowage/core/conformance";
import { describe, expect, it } from "vitest";
import { decodeName, decodePath, encodeName, encodePath } from "../src/names.js";

const forbiddenChars = /["*:<>?\\|]/;

function acceptableToOneDrive(name: string): boolean {
  return (
    !forbiddenChars.test(name) &&
    !name.startsWith(" ") &&
    !name.endsWith(" ") &&
    !name.endsWith(".") &&
    !["con", ".lock", "desktop.ini"].includes(name.toLowerCase()) &&
    !name.toLowerCase().includes("_vti_") &&
    !name.startsWith("~$")
  );
}

describe("OneDrive names codec", () => {
  it.each([
    ["co:lon", "co：lon"],
    ['a"b*c<d>e?f\\g|h', "a＂b＊c＜d＞e？f＼g｜h"],
    [" lead", "␠lead"],
    ["trail ", "trail␠"],
    ["mid dle", "mid dle"],
    ["trailing.", "trailing．"],
    ["...", "..．"],
    ["CON", "ＣON"],
    [".lock", "．lock"],
    ["desktop.ini", "ｄesktop.ini"],
    ["：already", "‛：already"],
    ["‛quote", "‛‛quote"],
    ["␠sym", "‛␠sym"],
    ["plain-name_1.txt", "plain-name_1.txt"],
    ["a_vti_b", "a＿vti_b"],
    ["_VTI_cnf", "＿VTI_cnf"],
    ["~$doc", "～$doc"],
  ])("encodes %j as %j and back", (segment, encoded) => {
    expect(encodeName(segment)).toBe(encoded);
    expect(decodeName(encoded)).toBe(segment);
  });

  it("round-trips every hard key and produces only names OneDrive accepts", () => {
    for (const { key } of hardKeys) {
      const encoded = encodePath(key);
      expect(decodePath(encoded)).toBe(key);
      for (const name of encoded.split("/"))
        expect(acceptableToOneDrive(name), `${key} → ${name}`).toBe(true);
    }
  });

  it("keeps distinct keys distinct", () => {
    const keys = [
      "a:b",
      "a：b",
      "a‛：b",
      "a‛:b",
      " x",
      "␠x",
      "‛␠x",
      "x.",
      "x．",
      "CON",
      "ＣON",
      "con",
      "_vti_",
      "＿vti_",
    ];
    const encoded = keys.map((k) => encodeName(k));
    expect(new Set(encoded).size).toBe(keys.length);
    expect(encoded.map(decodeName)).toEqual(keys);
  });

  it("encodes '#', '%' and a leading '~' for OneDrive for Business only", () => {
    expect(encodeName("~a#b%c")).toBe("~a#b%c");
    expect(encodeName("~a#b%c", { business: true })).toBe("～a＃b％c");
    expect(decodeName("～a＃b％c")).toBe("~a#b%c");
  });
});
