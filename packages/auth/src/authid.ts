import { registerSecret, StorageError } from "@stowage/core";
import { z } from "zod";
import { opaque } from "./opaque.js";

/** A v1 AuthID, `KEYID:SECRET`: the handler keeps the provider's tokens, encrypted under SECRET. */
export interface AuthIdV1 {
  readonly version: 1;
  /** Not a secret: the handler's record id, safe to log. */
  readonly keyId: string;
  readonly secret: string;
  /** The whole AuthID, normalised (trimmed, decoded): what is sent as `X-AuthID`. */
  readonly value: string;
}

/** A v2 AuthID, `v2:SERVICE:REFRESH_TOKEN`: the handler stores nothing. */
export interface AuthIdV2 {
  readonly version: 2;
  /** The handler's service id (`onedrive`, `googledrive`, …). */
  readonly service: string;
  readonly refreshToken: string;
  readonly value: string;
}

export type AuthId = AuthIdV1 | AuthIdV2;

export interface ParseAuthIdOptions {
  /** Where the user can make a new AuthID; every hint names it. See {@link loginUrlFor}. */
  loginUrl?: string;
  /**
   * The value was already percent-decoded once, because it came from a connection URL's query; it
   * is then not decoded again (DESIGN §3: decoded exactly once). Default false.
   */
  decoded?: boolean;
  /** Names the caller in the error (`hostedHandler`, …). Default `parseAuthId`. */
  operation?: string;
}

/**
 * The login URL of a handler: its URL with the path (and query) replaced by `/?type=<provider>`,
 * or `/` when the provider is not known. Scheme, host and port are kept; user info never is.
 *
 * @example
 * loginUrlFor("https://handler.example.com/refresh", "onedrive") // "https://handler.example.com/?type=onedrive"
 */
export function loginUrlFor(handlerUrl: string | URL, provider?: string): string {
  const { origin } = new URL(handlerUrl);
  return provider ? `${origin}/?type=${encodeURIComponent(provider)}` : `${origin}/`;
}

/**
 * What is wrong with a malformed AuthID; the zod schema reports these as its issue messages. The
 * texts write `v2:<SERVICE>:<…>` and never `X-AuthID:` because redaction would take those for secrets.
 */
type Problem = keyof typeof problems;

const problems = {
  empty: { message: "the AuthID is empty", hint: "pass the AuthID you were given after signing in" },
  whitespaceOnly: {
    message: "the AuthID holds only whitespace",
    hint: "pass the AuthID itself, not blank text",
  },
  quoted: {
    message: "the AuthID is wrapped in quotes",
    hint: "remove the quotes that were copied around it",
  },
  url: {
    message: "this is a URL, not an AuthID",
    hint: "an AuthID is the text the handler shows after you sign in (KEYID:SECRET); give the handler's address separately (oauth-url)",
  },
  bearer: {
    message: "the AuthID starts with 'Bearer '",
    hint: "remove 'Bearer '; to use an access token directly, pass it as a personal access token (token) instead",
  },
  paramPrefix: {
    message: "the AuthID starts with a parameter or header name (authid= or X-AuthID)",
    hint: "pass only the value that follows the name",
  },
  badPercent: {
    message: "the AuthID has a '%' that is not valid percent-encoding",
    hint: "an AuthID has no '%' of its own; copy it again exactly as shown",
  },
  doubleEncoded: {
    message: "the AuthID is still percent-encoded after decoding it once: it was encoded twice",
    hint: "encode it once: write ':' (or %3A inside a URL), not %253A",
  },
  query: {
    message: "the AuthID contains '&': more of a URL's query was copied with it",
    hint: "copy only the AuthID, up to the '&'",
  },
  lineBreak: {
    message: "the AuthID contains a line break",
    hint: "it was probably wrapped when copied; join the lines",
  },
  space: {
    message: "the AuthID contains a space or a tab",
    hint: "remove them: an AuthID has none (they usually come from a wrapped line)",
  },
  control: { message: "the AuthID contains a control character", hint: "copy it again exactly as shown" },
  noColon: {
    message: "the AuthID has no ':'",
    hint: "an AuthID looks like KEYID:SECRET; this one has no ':' — it may have been cut when copied",
  },
  leadingColon: {
    message: "the AuthID starts with ':', so its KEYID is missing",
    hint: "it looks like KEYID:SECRET and may have been cut at the start when copied",
  },
  badKeyId: {
    message: "the AuthID's KEYID (before the first ':') has characters a key id never has",
    hint: "copy it again exactly as shown",
  },
  emptySecret: {
    message: "the AuthID ends with ':', so its SECRET is missing",
    hint: "it looks like KEYID:SECRET and may have been cut at the end when copied",
  },
  v2Shape: {
    message: "the v2 AuthID has no refresh token: it should look like v2:<SERVICE>:<REFRESH_TOKEN>",
    hint: "it may have been cut when copied",
  },
  v2EmptyService: {
    message: "the v2 AuthID's SERVICE is empty (it starts with 'v2::')",
    hint: "it should look like v2:<SERVICE>:<REFRESH_TOKEN>",
  },
  v2BadService: {
    message: "the v2 AuthID's SERVICE has characters a service id never has",
    hint: "it should look like v2:<SERVICE>:<REFRESH_TOKEN>",
  },
  v2EmptyToken: {
    message: "the v2 AuthID's REFRESH_TOKEN is empty (it ends with ':')",
    hint: "it may have been cut at the end when copied",
  },
} as const;

// Checked in order on the trimmed (and decoded) text; the first that applies is reported, so the more
// telling diagnosis (a pasted URL) wins over its symptoms (no ':' where expected, a '&').
const pasteMistakes: ReadonlyArray<readonly [Problem, (text: string) => boolean]> = [
  ["empty", (text) => text === ""],
  ["quoted", (text) => /^["'`‘’“”]|["'`‘’“”]$/.test(text)],
  ["url", (text) => /^https?:\/\//i.test(text)],
  ["bearer", (text) => /^bearer\s/i.test(text)],
  ["paramPrefix", (text) => /^(x-)?auth-?id\s*[=:]/i.test(text)],
  ["doubleEncoded", (text) => /%[0-9a-f]{2}/i.test(text)],
  ["badPercent", (text) => text.includes("%")],
  ["query", (text) => text.includes("&")],
  ["lineBreak", (text) => /[\r\n\u2028\u2029]/.test(text)],
  ["space", (text) => /\s/.test(text)],
  // biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point.
  ["control", (text) => /[\u0000-\u001f\u007f]/.test(text)],
  ["noColon", (text) => !text.includes(":")],
  ["leadingColon", (text) => text.startsWith(":")],
];

const v1Schema = z.object({
  version: z.literal(1),
  keyId: z.string().regex(/^[A-Za-z0-9._~-]+$/, "badKeyId"),
  secret: z.string().min(1, "emptySecret"),
  value: z.string(),
});

// The refresh token is checked before the service so that "v2:" reports the missing parts as a whole.
const v2Schema = z.object({
  version: z.literal(2),
  refreshToken: z.string({ error: "v2Shape" }).min(1, "v2EmptyToken"),
  service: z
    .string()
    .min(1, "v2EmptyService")
    .regex(/^[A-Za-z0-9._-]+$/, "v2BadService"),
  value: z.string(),
});

function authIdSchema(decode: boolean) {
  return z
    .string()
    .refine((raw) => raw === "" || raw.trim() !== "", { message: "whitespaceOnly", abort: true })
    .transform((raw, ctx) => {
      const text = raw.trim();
      if (!decode || !text.includes("%")) return text;
      try {
        return decodeURIComponent(text);
      } catch {
        ctx.addIssue({ code: "custom", message: "badPercent" });
        return z.NEVER;
      }
    })
    .superRefine((text, ctx) => {
      const mistake = pasteMistakes.find(([, applies]) => applies(text));
      if (mistake) ctx.addIssue({ code: "custom", message: mistake[0], abort: true });
    })
    .transform((text) => {
      // The handler splits at the first ':' (OH main.py), so a SECRET may itself contain ':'.
      const colon = text.indexOf(":");
      const keyId = text.slice(0, colon);
      const rest = text.slice(colon + 1);
      if (keyId !== "v2") return { version: 1 as const, keyId, secret: rest, value: text };
      const split = rest.indexOf(":");
      return split < 0
        ? { version: 2 as const, service: rest, refreshToken: undefined, value: text }
        : {
            version: 2 as const,
            service: rest.slice(0, split),
            refreshToken: rest.slice(split + 1),
            value: text,
          };
    })
    .pipe(z.discriminatedUnion("version", [v1Schema, v2Schema]));
}

const schemas = { decode: authIdSchema(true), decoded: authIdSchema(false) };

/**
 * Parses an AuthID (`KEYID:SECRET`, or `v2:SERVICE:REFRESH_TOKEN`), trimming whitespace and decoding
 * percent-encoding once. A malformed AuthID is `InvalidConfig` whose message says what is wrong and
 * whose hint says where to get a new one; neither ever contains the AuthID or any part of its secret.
 * The secret parts are registered for redaction.
 *
 * The result hides its secrets from `String()`, `JSON.stringify` and `util.inspect`.
 *
 * @example
 * const authId = parseAuthId(process.env.STOWAGE_AUTHID ?? "", { loginUrl: loginUrlFor(url, "onedrive") });
 * if (authId.version === 1) console.log(authId.keyId);
 */
export function parseAuthId(input: string, options: ParseAuthIdOptions = {}): AuthId {
  const raw = typeof input === "string" ? input : "";
  const parsed = (options.decoded ? schemas.decoded : schemas.decode).safeParse(raw);
  if (!parsed.success) {
    // Defence in depth: the text may still carry a working secret, e.g. one with quotes around it.
    registerSecret(raw.trim());
    const problem = (parsed.error.issues[0]?.message ?? "empty") as Problem;
    const { message, hint } = problems[problem] ?? problems.empty;
    const where = options.loginUrl ?? "the OAuth handler's login page";
    throw new StorageError({
      provider: "auth",
      operation: options.operation ?? "parseAuthId",
      code: "InvalidConfig",
      message,
      hint: `${hint}; create a new one at ${where}`,
    });
  }
  const authId = parsed.data;
  if (authId.version === 1) {
    registerSecret(authId.secret);
    return opaque({ ...authId }, `[AuthID v1 ${authId.keyId}]`, { version: 1, keyId: authId.keyId });
  }
  registerSecret(authId.refreshToken);
  return opaque({ ...authId }, `[AuthID v2 ${authId.service}]`, { version: 2, service: authId.service });
}
