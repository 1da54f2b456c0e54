import {
  defaultOAuthClient,
  type OAuthProvider,
  type OAuthProviderOptions,
  readBody,
  startHttpServer,
  startOAuthProvider,
} from "@stowage/emulators";
import { expect } from "vitest";
import {
  type CreateHandlerOptions,
  createHandler,
  type Handler,
  type HandlerConfigInput,
} from "../../src/index.js";

/** Limits off, so that only the tests about limits meet them. */
export const noLimits = {
  refresh: { perIp: false, perKey: false },
  login: { perIp: false },
  revoke: { perIp: false, perKey: false },
  fetch: { perIp: false },
} as const;

/** The handler's `oauth2` provider entry for an emulator. */
export function emulatorProvider(provider: OAuthProvider, overrides: Record<string, unknown> = {}) {
  return {
    type: "oauth2" as const,
    name: "Emulated Drive",
    clientId: defaultOAuthClient.clientId,
    clientSecret: defaultOAuthClient.clientSecret,
    clientAuth: "client_secret_basic" as const,
    authorizeUrl: provider.authorizeUrl,
    tokenUrl: provider.tokenUrl,
    revokeUrl: provider.revokeUrl,
    scopes: ["files.readwrite", "offline_access"],
    ...overrides,
  };
}

export interface Setup {
  provider: OAuthProvider;
  handler: Handler;
  /** The handler's public URL, without a trailing slash. */
  url: string;
  /** Where this instance listens (differs from `url` when a public URL is configured). */
  listenUrl: string;
  close(): Promise<void>;
}

export interface SetupOptions {
  provider?: OAuthProviderOptions;
  /** Reuse a running emulator (two handler instances in front of one provider). */
  sharedProvider?: OAuthProvider;
  /** Merged over a configuration with the emulator as provider `emu`, a memory store and no limits. */
  config?: Partial<HandlerConfigInput>;
  handler?: CreateHandlerOptions;
}

/** An OAuth provider emulator (auto-approving) and a handler in front of it, both on 127.0.0.1. */
export async function startSetup(options: SetupOptions = {}): Promise<Setup> {
  const provider =
    options.sharedProvider ?? (await startOAuthProvider({ autoApprove: true, ...options.provider }));
  const handler = createHandler(
    {
      store: "memory:",
      providers: { emu: emulatorProvider(provider) },
      limits: noLimits,
      ...options.config,
    },
    options.handler,
  );
  const url = await handler.listen(0, "127.0.0.1");
  const { port } = handler.server.address() as { port: number };
  return {
    provider,
    handler,
    url,
    listenUrl: `http://127.0.0.1:${port}`,
    async close() {
      await handler.close();
      if (options.sharedProvider === undefined) await provider.close();
    },
  };
}

/** Follows one redirect by hand and returns its target. */
async function redirectOf(response: Response): Promise<string> {
  expect(response.status, await describe(response)).toBe(302);
  return response.headers.get("location")!;
}

async function describe(response: Response): Promise<string> {
  return `HTTP ${response.status} ${response.headers.get("x-reason") ?? ""}`;
}

/**
 * Signs in through the handler and the auto-approving emulator, as a browser would, and returns the
 * AuthID shown on the logged-in page.
 */
export async function login(url: string, providerId = "emu", fetchToken?: string): Promise<string> {
  const query = new URLSearchParams({ id: providerId });
  if (fetchToken !== undefined) query.set("token", fetchToken);
  const authorize = await redirectOf(await fetch(`${url}/login?${query}`, { redirect: "manual" }));
  const callback = await redirectOf(await fetch(authorize, { redirect: "manual" }));
  const page = await fetch(callback, { redirect: "manual" });
  const html = await page.text();
  expect(page.status, html).toBe(200);
  const authId = /<pre id="authid">([^<]+)<\/pre>/.exec(html)?.[1];
  expect(authId).toMatch(/^[0-9a-f]{32}:[A-Za-z0-9_-]{43}$/);
  return authId!;
}

/** Starts a sign-in and returns the provider's callback URL (with code and state), without following it. */
export async function callbackUrl(url: string, providerId = "emu"): Promise<string> {
  const authorize = await redirectOf(await fetch(`${url}/login?id=${providerId}`, { redirect: "manual" }));
  return redirectOf(await fetch(authorize, { redirect: "manual" }));
}

export interface FailureBody {
  error: string;
  code: string;
  hint?: string;
}

/** Checks an error response: status, `X-Reason`, and the JSON body `{error, code}` agreeing with it. */
export async function expectFailure(
  response: Response,
  status: number,
  code: string,
  reason: string | RegExp,
): Promise<FailureBody> {
  const text = await response.text();
  expect(response.status, text).toBe(status);
  expect(response.headers.get("content-type")).toMatch(/^application\/json/);
  const body = JSON.parse(text) as FailureBody;
  expect(body.code).toBe(code);
  if (typeof reason === "string") expect(body.error).toBe(reason);
  else expect(body.error).toMatch(reason);
  expect(response.headers.get("x-reason")).toBe(body.error);
  return body;
}

/** `GET /refresh` exactly as Duplicati's OAuthHelperHttpClient sends it. */
export function duplicatiRefresh(url: string, authId: string): Promise<Response> {
  return fetch(`${url}/refresh`, { headers: { "X-AuthID": authId, "User-Agent": "Duplicati v2.1.0.5" } });
}

/** Every token a provider's token endpoint handed out, seen by a forwarding proxy in front of it. */
export interface TokenRecorder {
  readonly tokenUrl: string;
  readonly accessTokens: readonly string[];
  readonly refreshTokens: readonly string[];
  close(): Promise<void>;
}

/**
 * Forwards token requests to the emulator and records the tokens in its answers, so that a test can
 * look for them where they must not be (a database file, a dump, a log).
 */
export async function startTokenRecorder(provider: OAuthProvider): Promise<TokenRecorder> {
  const accessTokens: string[] = [];
  const refreshTokens: string[] = [];
  const server = await startHttpServer(async (req, res) => {
    const body = await readBody(req);
    const headers: Record<string, string> = {};
    for (const name of ["authorization", "content-type"]) {
      const value = req.headers[name];
      if (typeof value === "string") headers[name] = value;
    }
    const answer = await fetch(provider.tokenUrl, { method: "POST", headers, body });
    const text = await answer.text();
    if (answer.ok) {
      const json = JSON.parse(text) as { access_token?: string; refresh_token?: string };
      if (json.access_token) accessTokens.push(json.access_token);
      if (json.refresh_token) refreshTokens.push(json.refresh_token);
    }
    res.writeHead(answer.status, {
      "content-type": answer.headers.get("content-type") ?? "application/json",
    });
    res.end(text);
  });
  return { tokenUrl: `${server.url}/token`, accessTokens, refreshTokens, close: () => server.close() };
}
