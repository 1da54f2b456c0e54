import {
  connect,
  createMemoryStorage,
  type Logger,
  type ParsedConnection,
  registerProvider,
  type TokenSource,
} from "@stowage/core";
import { defaultOAuthClient, type OAuthProvider, startOAuthProvider } from "@stowage/emulators";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import {
  type AuthDefaults,
  authObjectOptions,
  authParams,
  basicCredentials,
  hostedHandler,
  oauthRefreshToken,
  personalAccessToken,
  selfHostedHandler,
  tokenSourceFromConnection,
} from "../src/index.js";
import { type DuplicatiHandler, startDuplicatiHandler } from "./support/duplicati-handler.js";
import { failure } from "./support/failure.js";

// A provider as small as can be: its descriptor lists the auth parameters and object options, and
// `open` keeps the token source it built, so each test can look at what connect() chose.
let opened: { source?: TokenSource; connection?: ParsedConnection } = {};
let defaults: AuthDefaults = { provider: "onedrive" };

registerProvider({
  provider: "fakebearer",
  schemes: ["fakebearer"],
  params: { ...authParams },
  objectOptions: [...authObjectOptions, "logger"],
  open(connection) {
    opened = { connection, source: tokenSourceFromConnection(connection, defaults) };
    return createMemoryStorage();
  },
});

let handler: DuplicatiHandler;
let provider: OAuthProvider;
const { clientId, clientSecret } = defaultOAuthClient;

beforeAll(async () => {
  handler = await startDuplicatiHandler();
  provider = await startOAuthProvider({ rotateRefreshTokens: true });
});

afterAll(async () => {
  await Promise.all([handler.close(), provider.close()]);
});

afterEach(() => {
  opened = {};
  defaults = { provider: "onedrive" };
  vi.unstubAllEnvs();
});

function capturingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const log = (_obj: object, msg?: string) => void lines.push(msg ?? "");
  return { lines, debug: log, info: log, warn: log, error: log };
}

const q = encodeURIComponent;

describe("tokenSourceFromConnection through connect()", () => {
  it("token gives a personal access token", async () => {
    await connect("fakebearer://x?token=pat-abcdef123");
    expect(opened.source?.kind).toBe("personal-access-token");
    expect(await opened.source!.getToken()).toEqual({ token: "pat-abcdef123" });
  });

  it("authid + oauth-url on loopback http gives a self-hosted handler that works", async () => {
    const authId = handler.addKey("onedrive");
    await connect(`fakebearer://x?authid=${q(authId)}&oauth-url=${q(handler.refreshUrl)}`);
    expect(opened.source?.kind).toBe("self-hosted-handler");
    expect((await opened.source!.getToken()).token).toMatch(/^at-/);
    expect(handler.refreshes.at(-1)?.authId).toBe(authId);
  });

  it("authid + an https oauth-url gives a hosted handler", async () => {
    await connect("fakebearer://x?authid=abc:defghijk&oauth-url=https://handler.example.com/refresh");
    expect(opened.source?.kind).toBe("hosted-handler");
    expect(String(opened.source)).toBe("[hostedHandler https://handler.example.com/refresh]");
  });

  it("authid + api-key gives a self-hosted handler that sends the key", async () => {
    const authId = handler.addKey("onedrive");
    await connect(`fakebearer://x?authid=${q(authId)}&oauth-url=${q(handler.refreshUrl)}&api-key=key-123456`);
    await opened.source!.getToken();
    expect(handler.refreshes.at(-1)).toEqual({ authId, apiKey: "key-123456" });
  });

  it("authid without oauth-url uses the provider's default handler", async () => {
    defaults = { provider: "onedrive", hostedUrl: "https://handler.example.com/refresh" };
    await connect("fakebearer://x?authid=abc:defghijk");
    expect(opened.source?.kind).toBe("hosted-handler");
  });

  it("an AuthID in the URL is percent-decoded exactly once", async () => {
    const authId = handler.addKey("onedrive");
    await connect(`fakebearer://x?authid=${authId.replace(":", "%3A")}&oauth-url=${q(handler.refreshUrl)}`);
    await opened.source!.getToken();
    expect(handler.refreshes.at(-1)?.authId).toBe(authId);
    const err = await failure(() =>
      connect(`fakebearer://x?authid=${authId.replace(":", "%253A")}&oauth-url=${q(handler.refreshUrl)}`),
    );
    expect(err.code).toBe("InvalidConfig");
    expect(err.message).toBe(
      `auth selfHostedHandler: the AuthID is still percent-encoded after decoding it once: it was encoded twice (encode it once: write ':' (or %3A inside a URL), not %253A; create a new one at ${handler.base}/?type=onedrive)`,
    );
  });

  it("client-id + client-secret + refresh-token gives direct OAuth, and onRotate from the options stores rotations", async () => {
    const refreshToken = provider.issueRefreshToken();
    const rotated: string[] = [];
    await connect(
      `fakebearer://x?client-id=${clientId}&client-secret=${clientSecret}&refresh-token=${refreshToken}&token-url=${q(provider.tokenUrl)}`,
      { onRotate: (next: string) => void rotated.push(next) },
    );
    expect(opened.source?.kind).toBe("oauth-refresh-token");
    const { token } = await opened.source!.getToken();
    expect(provider.validate(token).valid).toBe(true);
    expect(rotated).toHaveLength(1);
    expect(provider.refreshTokenStatus(rotated[0]!)).toBe("active");
  });

  it("direct OAuth without onRotate warns that the rotated refresh token is not stored", async () => {
    const logger = capturingLogger();
    defaults = { provider: "onedrive", tokenUrl: provider.tokenUrl };
    const refreshToken = provider.issueRefreshToken();
    await connect(
      `fakebearer://x?client-id=${clientId}&client-secret=${clientSecret}&refresh-token=${refreshToken}`,
      { logger },
    );
    await opened.source!.getToken();
    expect(logger.lines).toContain(
      "the provider rotated the refresh token and it is not stored: the refresh-token in this connection may stop working; pass an onRotate function in the options to store the new one",
    );
  });

  it("the auth option is used as given", async () => {
    const auth = personalAccessToken("from-the-auth-option");
    await connect("fakebearer://x", { auth });
    expect(opened.source).toBe(auth);
  });

  it.each([
    ["personalAccessToken", () => personalAccessToken("pat-abcdef")],
    [
      "hostedHandler",
      () => hostedHandler({ authId: "abc:defghijk", url: "https://handler.example.com/refresh" }),
    ],
    [
      "selfHostedHandler",
      () => selfHostedHandler({ authId: "abc:defghijk", url: "http://127.0.0.1:1/refresh" }),
    ],
    [
      "oauthRefreshToken",
      () =>
        oauthRefreshToken({
          tokenUrl: provider.tokenUrl,
          clientId,
          refreshToken: "rt-abcdef",
          onRotate: () => {},
        }),
    ],
  ])("the auth option carries %s to the provider", async (_name, make) => {
    const auth = make();
    await connect("fakebearer://x", { auth });
    expect(opened.source).toBe(auth);
  });

  it("the auth option wins over credentials from the environment, with a warning", async () => {
    vi.stubEnv("STOWAGE_TOKEN", "token-from-env");
    const logger = capturingLogger();
    const auth = personalAccessToken("from-the-auth-option");
    await connect("fakebearer://x", { auth, logger });
    expect(opened.source).toBe(auth);
    expect(logger.lines).toContain("'token' is ignored: the auth option takes precedence");
  });

  it("credentials in the URL win over credentials in the environment", async () => {
    vi.stubEnv("STOWAGE_AUTHID", "abc:from-the-environment");
    await connect("fakebearer://x?token=token-in-the-url");
    expect(opened.source?.kind).toBe("personal-access-token");
  });

  it("no credentials at all gives undefined", async () => {
    await connect("fakebearer://x");
    expect(opened.connection).toBeDefined();
    expect(opened.source).toBeUndefined();
  });

  const conflicts: Array<[string, string, Record<string, unknown>, string]> = [
    [
      "token and authid",
      "fakebearer://x?token=pat-abcdef&authid=abc:defghijk&oauth-url=https://h.example.com/refresh",
      {},
      "'token' and 'authid'",
    ],
    [
      "token and direct OAuth",
      `fakebearer://x?token=pat-abcdef&client-id=${clientId}&refresh-token=rt-abcdef`,
      {},
      "'token' and 'client-id'/'refresh-token'",
    ],
    [
      "authid and direct OAuth",
      `fakebearer://x?authid=abc:defghijk&refresh-token=rt-abcdef`,
      {},
      "'authid' and 'client-id'/'refresh-token'",
    ],
    [
      "the auth option and a token in the options",
      "fakebearer://x",
      { token: "pat-abcdef", auth: personalAccessToken("other-token") },
      "the auth option and 'token'",
    ],
  ];

  it.each(conflicts)("%s together are InvalidConfig naming both", async (_what, url, options, both) => {
    const err = await failure(() => connect(url, options));
    expect(err.code).toBe("InvalidConfig");
    expect(err.message).toBe(
      `auth connect: conflicting credentials: ${both} are both given (give one way to sign in: remove the others)`,
    );
  });

  const incomplete: Array<[string, string, string]> = [
    [
      "oauth-url without authid",
      "fakebearer://x?oauth-url=https://handler.example.com/refresh",
      "'oauth-url' is set but 'authid' is missing (add authid; get an AuthID at https://handler.example.com/?type=onedrive)",
    ],
    [
      "authid without oauth-url and no default handler",
      "fakebearer://x?authid=abc:defghijk",
      "'authid' needs 'oauth-url': there is no default handler for this provider (set oauth-url to the handler's refresh URL, e.g. https://handler.example.com/refresh)",
    ],
    [
      "client-id without refresh-token",
      `fakebearer://x?client-id=${clientId}`,
      "direct OAuth needs both 'client-id' and 'refresh-token'; 'refresh-token' is missing (add refresh-token)",
    ],
    [
      "direct OAuth without token-url and no default",
      `fakebearer://x?client-id=${clientId}&refresh-token=rt-abcdef`,
      "direct OAuth needs 'token-url' for this provider (set token-url to the provider's OAuth token endpoint)",
    ],
    [
      "client-secret alone",
      "fakebearer://x?client-secret=shh-abcdef",
      "'client-secret' is set but 'client-id' and 'refresh-token' are missing (direct OAuth needs client-id and refresh-token)",
    ],
  ];

  it.each(incomplete)("%s is InvalidConfig saying what to add", async (_what, url, message) => {
    const err = await failure(() => connect(url));
    expect(err.code).toBe("InvalidConfig");
    expect(err.message).toBe(`auth connect: ${message}`);
  });

  it("basic credentials as the auth option are InvalidConfig naming what is needed", async () => {
    const err = await failure(() =>
      connect("fakebearer://x", { auth: basicCredentials({ username: "me", password: "pw-123456" }) }),
    );
    expect(err.code).toBe("InvalidConfig");
    expect(err.message).toBe(
      "auth connect: the auth option is basicCredentials(…), but fakebearer needs a token source (pass personalAccessToken(…), hostedHandler(…), selfHostedHandler(…) or oauthRefreshToken(…) from @stowage/auth)",
    );
  });

  it("secret parameters are marked secret, so the connection URL is shown without them", async () => {
    expect(
      Object.entries(authParams)
        .filter(([, spec]) => spec.secret)
        .map(([name]) => name),
    ).toEqual(["authid", "token", "client-secret", "refresh-token", "api-key"]);
    await connect("fakebearer://x?token=pat-very-secret-1");
    expect(opened.connection?.url).toBe("fakebearer://x?token=[redacted]");
  });
});
