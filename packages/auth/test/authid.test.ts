import { inspect } from "node:util";
import { isStorageError, redact, type StorageError } from "@stowage/core";
import { describe, expect, it } from "vitest";
import { loginUrlFor, parseAuthId } from "../src/index.js";

const login = "https://handler.example.com/?type=onedrive";
const again = `create a new one at ${login}`;

function parseError(input: string, options: { decoded?: boolean } = {}): StorageError {
  try {
    parseAuthId(input, { loginUrl: login, ...options });
  } catch (err) {
    expect(isStorageError(err, "InvalidConfig")).toBe(true);
    return err as StorageError;
  }
  throw new Error(`expected '${input}' to be refused`);
}

const secret = "Zq9-SECRETPART-x7";
const keyId = "0123456789abcdef0123456789abcdef";

// [what is wrong, input, message, hint]
const malformed: Array<[string, string, string, string]> = [
  [
    "no colon",
    `${keyId}${secret}`,
    "the AuthID has no ':'",
    `an AuthID looks like KEYID:SECRET; this one has no ':' — it may have been cut when copied; ${again}`,
  ],
  [
    "a leading colon",
    `:${secret}`,
    "the AuthID starts with ':', so its KEYID is missing",
    `it looks like KEYID:SECRET and may have been cut at the start when copied; ${again}`,
  ],
  [
    "an empty secret",
    `${keyId}:`,
    "the AuthID ends with ':', so its SECRET is missing",
    `it looks like KEYID:SECRET and may have been cut at the end when copied; ${again}`,
  ],
  [
    "an empty key id and secret",
    ":",
    "the AuthID starts with ':', so its KEYID is missing",
    `it looks like KEYID:SECRET and may have been cut at the start when copied; ${again}`,
  ],
  [
    "'%3A' encoded twice",
    `${keyId}%253A${secret}`,
    "the AuthID is still percent-encoded after decoding it once: it was encoded twice",
    `encode it once: write ':' (or %3A inside a URL), not %253A; ${again}`,
  ],
  [
    "a '%' that is no encoding",
    `${keyId}:${secret}%zz`,
    "the AuthID has a '%' that is not valid percent-encoding",
    `an AuthID has no '%' of its own; copy it again exactly as shown; ${again}`,
  ],
  [
    "a newline inside",
    `${keyId}:${secret.slice(0, 8)}\n${secret.slice(8)}`,
    "the AuthID contains a line break",
    `it was probably wrapped when copied; join the lines; ${again}`,
  ],
  [
    "double quotes copied around it",
    `"${keyId}:${secret}"`,
    "the AuthID is wrapped in quotes",
    `remove the quotes that were copied around it; ${again}`,
  ],
  [
    "typographic quotes copied around it",
    `“${keyId}:${secret}”`,
    "the AuthID is wrapped in quotes",
    `remove the quotes that were copied around it; ${again}`,
  ],
  [
    "an authid= prefix pasted in",
    `authid=${keyId}:${secret}`,
    "the AuthID starts with a parameter or header name (authid= or X-AuthID)",
    `pass only the value that follows the name; ${again}`,
  ],
  [
    "a header line pasted in",
    `X-AuthID: ${keyId}:${secret}`,
    "the AuthID starts with a parameter or header name (authid= or X-AuthID)",
    `pass only the value that follows the name; ${again}`,
  ],
  [
    "a trailing &…",
    `${keyId}:${secret}&oauth-url=https://h.example.com/refresh`,
    "the AuthID contains '&': more of a URL's query was copied with it",
    `copy only the AuthID, up to the '&'; ${again}`,
  ],
  [
    "a space inside",
    `${keyId}:${secret.slice(0, 5)} ${secret.slice(5)}`,
    "the AuthID contains a space or a tab",
    `remove them: an AuthID has none (they usually come from a wrapped line); ${again}`,
  ],
  [
    "a control character inside",
    `${keyId}:${secret}\u0007`,
    "the AuthID contains a control character",
    `copy it again exactly as shown; ${again}`,
  ],
  [
    "a v2 AuthID with only the prefix",
    "v2:",
    "the v2 AuthID has no refresh token: it should look like v2:<SERVICE>:<REFRESH_TOKEN>",
    `it may have been cut when copied; ${again}`,
  ],
  [
    "a v2 AuthID without a refresh token",
    "v2:googledrive",
    "the v2 AuthID has no refresh token: it should look like v2:<SERVICE>:<REFRESH_TOKEN>",
    `it may have been cut when copied; ${again}`,
  ],
  [
    "a v2 AuthID with an empty refresh token",
    "v2:googledrive:",
    "the v2 AuthID's REFRESH_TOKEN is empty (it ends with ':')",
    `it may have been cut at the end when copied; ${again}`,
  ],
  [
    "a v2 AuthID with an empty service",
    `v2::${secret}`,
    "the v2 AuthID's SERVICE is empty (it starts with 'v2::')",
    `it should look like v2:<SERVICE>:<REFRESH_TOKEN>; ${again}`,
  ],
  [
    "a v2 AuthID with a malformed service",
    `v2:google/drive:${secret}`,
    "the v2 AuthID's SERVICE has characters a service id never has",
    `it should look like v2:<SERVICE>:<REFRESH_TOKEN>; ${again}`,
  ],
  [
    "only whitespace",
    " \t\n ",
    "the AuthID holds only whitespace",
    `pass the AuthID itself, not blank text; ${again}`,
  ],
  ["nothing", "", "the AuthID is empty", `pass the AuthID you were given after signing in; ${again}`],
  [
    "a URL pasted instead",
    `https://handler.example.com/logged-in?authid=${keyId}:${secret}`,
    "this is a URL, not an AuthID",
    `an AuthID is the text the handler shows after you sign in (KEYID:SECRET); give the handler's address separately (oauth-url); ${again}`,
  ],
  [
    "a Bearer prefix",
    `Bearer ${keyId}:${secret}`,
    "the AuthID starts with 'Bearer '",
    `remove 'Bearer '; to use an access token directly, pass it as a personal access token (token) instead; ${again}`,
  ],
  [
    "a key id with characters no key id has",
    `${keyId}/x:${secret}`,
    "the AuthID's KEYID (before the first ':') has characters a key id never has",
    `copy it again exactly as shown; ${again}`,
  ],
];

describe("parseAuthId: malformed AuthIDs", () => {
  it.each(malformed)(
    "%s is InvalidConfig saying what is wrong and where to get a new one",
    (_what, input, message, hint) => {
      const err = parseError(input);
      expect(err.detail).toBe(message);
      expect(err.hint).toBe(hint);
      expect(err.message).toBe(`auth parseAuthId: ${message} (${hint})`);
    },
  );

  it.each(malformed)("%s: no message, hint or rendering contains the secret part", (_what, input) => {
    const err = parseError(input);
    for (const text of [err.message, err.hint, String(err), JSON.stringify(err), inspect(err)]) {
      expect(text).not.toContain("SECRETPART");
    }
  });

  it("has a table of at least 15 malformed forms", () => {
    expect(malformed.length).toBeGreaterThanOrEqual(15);
  });

  it("a value that came decoded from a connection URL is not decoded again: '%3A' left in it was encoded twice", () => {
    const err = parseError(`${keyId}%3A${secret}`, { decoded: true });
    expect(err.detail).toBe(
      "the AuthID is still percent-encoded after decoding it once: it was encoded twice",
    );
  });

  it("without a login URL, the hint points at the handler's login page", () => {
    try {
      parseAuthId("nocolon", { operation: "hostedHandler" });
      expect.unreachable();
    } catch (err) {
      expect((err as StorageError).message).toBe(
        "auth hostedHandler: the AuthID has no ':' (an AuthID looks like KEYID:SECRET; this one has no ':' — it may have been cut when copied; create a new one at the OAuth handler's login page)",
      );
    }
  });
});

describe("parseAuthId: well-formed AuthIDs", () => {
  it("reads a v1 AuthID, trimming whitespace around it", () => {
    const authId = parseAuthId(`  ${keyId}:${secret}\n`);
    expect({ ...authId }).toEqual({ version: 1, keyId, secret, value: `${keyId}:${secret}` });
  });

  it("decodes percent-encoding exactly once", () => {
    expect(parseAuthId(`${keyId}%3A${secret}`).value).toBe(`${keyId}:${secret}`);
  });

  it("keeps every ':' after the first in the secret, as the handler splits at the first", () => {
    const authId = parseAuthId(`${keyId}:a:b:${secret}`);
    expect(authId.version === 1 && authId.secret).toBe(`a:b:${secret}`);
  });

  it("accepts Duplicati's password alphabet (letters, digits, ! - _ .)", () => {
    const authId = parseAuthId("3f2a9c:aB3.xY-9_k!Qz");
    expect(authId.version === 1 && authId.secret).toBe("aB3.xY-9_k!Qz");
  });

  it("reads a v2 AuthID whose refresh token has ':' and '/'", () => {
    const authId = parseAuthId(`v2:googledrive:1//0gAb:${secret}`);
    expect({ ...authId }).toEqual({
      version: 2,
      service: "googledrive",
      refreshToken: `1//0gAb:${secret}`,
      value: `v2:googledrive:1//0gAb:${secret}`,
    });
  });

  it("hides its secret from String, JSON.stringify and util.inspect, and registers it for redaction", () => {
    const authId = parseAuthId(`${keyId}:${secret}`);
    expect(String(authId)).toBe(`[AuthID v1 ${keyId}]`);
    expect(JSON.stringify(authId)).toBe(`{"version":1,"keyId":"${keyId}"}`);
    expect(inspect(authId)).toBe(`[AuthID v1 ${keyId}]`);
    expect(redact(`the server said: ${secret}`)).toBe("the server said: [redacted]");
    const v2 = parseAuthId(`v2:onedrive:${secret}-rt`);
    expect(JSON.stringify(v2)).toBe('{"version":2,"service":"onedrive"}');
    expect(inspect(v2)).toBe("[AuthID v2 onedrive]");
  });
});

describe("loginUrlFor", () => {
  it("replaces the path and query of the handler URL with /?type=<provider>", () => {
    expect(loginUrlFor("https://handler.example.com/refresh?x=1", "onedrive")).toBe(login);
  });

  it("keeps the port, drops user info, and gives / when the provider is unknown", () => {
    expect(loginUrlFor("https://me:pw@handler.example.com:8443/refresh")).toBe(
      "https://handler.example.com:8443/",
    );
    expect(loginUrlFor("http://127.0.0.1:8080/refresh", "gdrive")).toBe("http://127.0.0.1:8080/?type=gdrive");
  });
});
