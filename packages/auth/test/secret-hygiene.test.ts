import { randomBytes } from "node:crypto";
import { subscribe, unsubscribe } from "node:diagnostics_channel";
import { inspect } from "node:util";
import {
  connect,
  createMemoryStorage,
  isStorageError,
  type Logger,
  registerProvider,
  type TokenSource,
} from "@stowage/core";
import {
  defaultOAuthClient,
  type RunningServer,
  sendJson,
  startHttpServer,
  startOAuthProvider,
} from "@stowage/emulators";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  authObjectOptions,
  authParams,
  basicCredentials,
  hostedHandler,
  oauthRefreshToken,
  parseAuthId,
  personalAccessToken,
  selfHostedHandler,
  staticCredentials,
  tokenSourceFromConnection,
} from "../src/index.js";

/** A fresh value that looks like nothing else, so that finding it anywhere means it leaked. */
const secret = (label: string) => `${label}-${randomBytes(12).toString("base64url")}`;

const channelNames = ["stowage:request", "stowage:retry", "stowage:token"] as const;
let seen: string[] = [];
const onMessage = (message: unknown) => void seen.push(JSON.stringify(message));

beforeEach(() => {
  seen = [];
  for (const name of channelNames) subscribe(name, onMessage);
});

afterEach(() => {
  for (const name of channelNames) unsubscribe(name, onMessage);
});

/** A logger that keeps every line it is given, objects included, as text. */
function capturingLogger(): Logger {
  const keep = (level: string) => (obj: object, msg?: string) =>
    void seen.push(`${level} ${JSON.stringify(obj)} ${msg ?? ""}`);
  return { debug: keep("debug"), info: keep("info"), warn: keep("warn"), error: keep("error") };
}

/** Every way the object can be shown: String, JSON, util.inspect (hidden members too). */
function renderings(value: unknown): string[] {
  return [String(value), JSON.stringify(value) ?? "", inspect(value, { showHidden: true, depth: 10 })];
}

/** Every way an error can be shown, its cause chain included. */
function errorRenderings(err: unknown): string[] {
  expect(isStorageError(err), String(err)).toBe(true);
  const e = err as Error & { hint?: string };
  return [e.message, e.hint ?? "", String(e), JSON.stringify(e), inspect(e, { depth: 10 }), e.stack ?? ""];
}

async function rejection(call: () => unknown): Promise<string[]> {
  try {
    await call();
  } catch (err) {
    return errorRenderings(err);
  }
  throw new Error("expected a failure");
}

function expectClean(texts: string[], secrets: string[]): void {
  expect(texts.length).toBeGreaterThan(0);
  for (const text of [...texts, ...seen]) {
    for (const value of secrets) expect(text, `leaked ${value.split("-")[0]}`).not.toContain(value);
  }
}

const servers: RunningServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

/** A handler that echoes everything secret it receives back in X-Reason and its JSON error. */
async function echoingHandler(status: number): Promise<RunningServer> {
  const server = await startHttpServer((req, res) => {
    const echo = `refused ${req.headers["x-authid"]} with key ${req.headers["x-api-key"]}`;
    sendJson(res, status, { error: echo, code: "wrong_password" }, { "x-reason": echo });
  });
  servers.push(server);
  return server;
}

describe("no secret leaves through errors, renderings, logs or events", () => {
  it("personalAccessToken", async () => {
    const pat = secret("pat");
    const source = personalAccessToken(pat);
    await source.getToken();
    source.invalidate(pat);
    const texts = [...renderings(source), ...(await rejection(() => source.getToken()))];
    const failing = personalAccessToken(() => {
      throw new Error(`could not read ${pat} from the vault`);
    });
    texts.push(...(await rejection(() => failing.getToken())));
    expectClean(texts, [pat]);
  });

  it("staticCredentials and basicCredentials", async () => {
    const secretKey = secret("s3secret");
    const sessionToken = secret("session");
    const password = secret("password");
    const s3 = staticCredentials({ accessKeyId: "AKIAEXAMPLE", secretAccessKey: secretKey, sessionToken });
    const dav = basicCredentials({ username: "me", password });
    const broken = basicCredentials(async () => {
      throw new Error(`vault said no to ${password}`);
    });
    const texts = [...renderings(s3), ...renderings(dav), ...(await rejection(() => broken.get()))];
    texts.push(...(await rejection(() => staticCredentials({ accessKeyId: "AKIA", secretAccessKey: "" }))));
    expectClean(texts, [secretKey, sessionToken, password]);
  });

  it("parseAuthId, for well-formed and malformed AuthIDs", async () => {
    const authSecret = secret("authsecret");
    const texts = [...renderings(parseAuthId(`0123456789abcdef0123456789abcdef:${authSecret}`))];
    for (const bad of [
      `"k:${authSecret}"`,
      `k:${authSecret}&x=1`,
      `Bearer k:${authSecret}`,
      `k:${authSecret} x`,
      `k%253A${authSecret}`,
    ]) {
      texts.push(...(await rejection(() => parseAuthId(bad))));
    }
    expectClean(texts, [authSecret]);
  });

  it("selfHostedHandler, against a handler that echoes the AuthID and API key back", async () => {
    const authSecret = secret("authsecret");
    const apiKey = secret("apikey");
    const server = await echoingHandler(400);
    const source = selfHostedHandler({
      authId: `0123456789abcdef0123456789abcdef:${authSecret}`,
      url: `${server.url}/refresh`,
      apiKey,
      logger: capturingLogger(),
    });
    const texts = [...renderings(source), ...(await rejection(() => source.getToken()))];
    expectClean(texts, [authSecret, apiKey]);
  });

  it("selfHostedHandler with a v2 AuthID, retried through 5xx", async () => {
    const refreshToken = secret("v2refresh");
    const server = await echoingHandler(502);
    const source = selfHostedHandler({
      authId: `v2:onedrive:${refreshToken}`,
      url: `${server.url}/refresh`,
      logger: capturingLogger(),
      retry: { attempts: 2, minDelayMs: 1 },
    });
    const texts = [...renderings(source), ...(await rejection(() => source.getToken()))];
    expectClean(texts, [refreshToken]);
  });

  it("hostedHandler, refused for a plain-http URL and for a malformed AuthID", async () => {
    const authSecret = secret("authsecret");
    const texts = [
      ...(await rejection(() =>
        hostedHandler({ authId: `k:${authSecret}`, url: "http://127.0.0.1:1/refresh" }),
      )),
      ...(await rejection(() =>
        hostedHandler({ authId: `k:${authSecret}\n`.repeat(2), url: "https://h.example.com/refresh" }),
      )),
      ...renderings(hostedHandler({ authId: `k:${authSecret}`, url: "https://h.example.com/refresh" })),
    ];
    expectClean(texts, [authSecret]);
  });

  it("oauthRefreshToken: tokens, the rotated refresh token and the client secret, with a token endpoint that echoes them", async () => {
    const clientSecret = secret("clientsecret");
    const provider = await startOAuthProvider({ clients: [{ clientId: "app", clientSecret }] });
    try {
      const refreshToken = provider.issueRefreshToken({ clientId: "app" });
      const rotated: string[] = [];
      const logger = capturingLogger();
      const source = oauthRefreshToken({
        tokenUrl: provider.tokenUrl,
        clientId: "app",
        clientSecret,
        refreshToken,
        logger,
        onRotate: (next) => void rotated.push(next),
      });
      const { token } = await source.getToken();
      source.invalidate(token);
      provider.faults.add({
        path: "/token",
        respond: {
          status: 400,
          body: {
            error: "invalid_grant",
            error_description: `bad grant ${rotated[0]} for secret ${clientSecret} (was ${refreshToken})`,
          },
        },
      });
      const texts = [...renderings(source), ...(await rejection(() => source.getToken()))];
      const broken = oauthRefreshToken({
        tokenUrl: provider.tokenUrl,
        clientId: "app",
        clientSecret,
        refreshToken: rotated[0]!,
        logger,
        onRotate: (next) => {
          throw new Error(`disk full while writing ${next}`);
        },
      });
      texts.push(...(await rejection(() => broken.getToken())));
      expectClean(texts, [clientSecret, refreshToken, rotated[0]!, token]);
    } finally {
      await provider.close();
    }
  });

  it("tokenSourceFromConnection: connection errors and the warning about an unstored rotation", async () => {
    const provider = await startOAuthProvider();
    try {
      const pat = secret("pat");
      const authSecret = secret("authsecret");
      const refreshToken = provider.issueRefreshToken();
      let source: TokenSource | undefined;
      registerProvider({
        provider: "hygiene",
        schemes: ["hygiene"],
        params: { ...authParams },
        objectOptions: [...authObjectOptions, "logger"],
        open(connection) {
          source = tokenSourceFromConnection(connection, {
            provider: "onedrive",
            tokenUrl: provider.tokenUrl,
          });
          return createMemoryStorage();
        },
      });
      const logger = capturingLogger();
      const texts = await rejection(() =>
        connect(`hygiene://x?token=${pat}&authid=k:${authSecret}&oauth-url=https://h.example.com/refresh`, {
          logger,
        }),
      );
      const { clientId, clientSecret } = defaultOAuthClient;
      await connect(
        `hygiene://x?client-id=${clientId}&client-secret=${clientSecret}&refresh-token=${refreshToken}`,
        { logger },
      );
      const { token } = await source!.getToken();
      texts.push(...renderings(source));
      expectClean(texts, [pat, authSecret, refreshToken, token]);
      expect(seen.some((line) => line.includes("it is not stored"))).toBe(true);
    } finally {
      await provider.close();
    }
  });
});
