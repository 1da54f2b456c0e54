import { startOAuthProvider } from "@stowage/emulators";
import { afterEach, describe, expect, it } from "vitest";
import {
  callbackUrl,
  emulatorProvider,
  expectFailure,
  login,
  type Setup,
  startSetup,
} from "./support/handler.js";

const setups: Setup[] = [];
afterEach(async () => {
  await Promise.all(setups.splice(0).map((setup) => setup.close()));
});

async function start(options: Parameters<typeof startSetup>[0] = {}): Promise<Setup> {
  const setup = await startSetup(options);
  setups.push(setup);
  return setup;
}

/** Fetches a page as a browser asks for it, and checks it is the error page for `status` and `reason`. */
async function expectErrorPage(url: string, status: number, reason: string, hint?: string): Promise<string> {
  const response = await fetch(url, {
    headers: { accept: "text/html,application/xhtml+xml" },
    redirect: "manual",
  });
  const html = await response.text();
  expect(response.status, html).toBe(status);
  expect(response.headers.get("content-type")).toBe("text/html; charset=utf-8");
  expect(response.headers.get("x-reason")).toBe(reason);
  expect(response.headers.get("cache-control")).toBe("no-store");
  expect(html).toContain(`<p class="error" id="reason">${reason.replace(/'/g, "&#39;")}</p>`);
  if (hint !== undefined) expect(html).toContain(`<p>${hint.replace(/'/g, "&#39;")}</p>`);
  expect(html).toContain(">Start again</a>");
  return html;
}

describe("GET /", () => {
  it("lists each visible provider with a sign-in link carrying the fetch token", async () => {
    const setup = await start();
    const response = await fetch(`${setup.url}/?token=fetch-token-1234`);
    const html = await response.text();
    expect(response.status).toBe(200);
    expect(html).toContain(
      '<a class="provider" id="login-emu" href="/login?id=emu&#38;token=fetch-token-1234">Sign in with Emulated Drive</a>',
    );
    expect(response.headers.get("content-security-policy")).toMatch(
      /^default-src 'none'; script-src 'nonce-[^']+'/,
    );
  });

  it("shows a hidden provider only when asked for by type", async () => {
    const provider = await startOAuthProvider({ autoApprove: true });
    const setup = await start({
      sharedProvider: provider,
      config: {
        providers: {
          emu: emulatorProvider(provider),
          secret: emulatorProvider(provider, { hidden: true, name: "Hidden One" }),
        },
      },
    });
    expect(await (await fetch(`${setup.url}/`)).text()).not.toContain("Hidden One");
    const filtered = await (await fetch(`${setup.url}/?type=secret`)).text();
    expect(filtered).toContain("Sign in with Hidden One");
    expect(filtered).not.toContain("Emulated Drive");
    await provider.close();
  });

  it("refuses an unknown provider type and a malformed fetch token", async () => {
    const setup = await start();
    const unknown = await expectFailure(
      await fetch(`${setup.url}/?type=dropbox`),
      404,
      "unknown_provider",
      "Unknown provider 'dropbox'",
    );
    expect(unknown.hint).toBe("this handler serves emu");
    await expectFailure(
      await fetch(`${setup.url}/?token=short`),
      400,
      "invalid_fetch_token",
      "Invalid fetch token: it must be 10 to 200 letters, digits, '.', '_', '~' or '-'",
    );
  });
});

describe("sign-in", () => {
  it("redirects to the provider with a single-use state and a PKCE S256 challenge", async () => {
    const setup = await start();
    const response = await fetch(`${setup.url}/login?id=emu`, { redirect: "manual" });
    expect(response.status).toBe(302);
    const location = new URL(response.headers.get("location")!);
    expect(`${location.origin}${location.pathname}`).toBe(setup.provider.authorizeUrl);
    expect(Object.fromEntries(location.searchParams)).toEqual({
      client_id: "stowage-test-client",
      response_type: "code",
      redirect_uri: `${setup.url}/logged-in`,
      scope: "files.readwrite offline_access",
      state: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/),
      code_challenge: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/),
      code_challenge_method: "S256",
    });
  });

  it("creates an AuthID whose tokens came from the code exchange", async () => {
    const setup = await start();
    const authId = await login(setup.url);
    expect(setup.provider.tokenRequestLog).toEqual([
      {
        grantType: "authorization_code",
        clientId: "stowage-test-client",
        clientAuth: "client_secret_basic",
        outcome: "ok",
        issuedRefreshToken: true,
      },
    ]);
    expect(await setup.handler.store.countRecords()).toBe(1);
    const response = await fetch(`${setup.url}/refresh`, { headers: { "x-authid": authId } });
    const body = (await response.json()) as { access_token: string };
    expect(setup.provider.validate(body.access_token).valid).toBe(true);
  });

  it("shows the AuthID with a copy button, uncached, with no referrer", async () => {
    const setup = await start({ config: { allowedOrigins: ["http://127.0.0.1:8200"] } });
    const response = await fetch(await callbackUrl(setup.url));
    const html = await response.text();
    expect(html).toMatch(/<pre id="authid">[0-9a-f]{32}:[A-Za-z0-9_-]{43}<\/pre>/);
    expect(html).toContain('<button id="copy" type="button">Copy</button>');
    expect(html).toContain('<script type="application/json" id="origins">["http://127.0.0.1:8200"]</script>');
    expect(html).not.toContain("'*'");
    expect(response.headers.get("cache-control")).toBe("no-store");
    expect(response.headers.get("referrer-policy")).toBe("no-referrer");
    expect(response.headers.get("x-frame-options")).toBe("DENY");
  });

  it("refuses an unknown state with a clear page", async () => {
    const setup = await start();
    await expectErrorPage(
      `${setup.url}/logged-in?state=forged-state-value&code=abc`,
      400,
      "This sign-in link has expired or was already used",
      "a sign-in must finish within 10 minutes and each link works once; start again",
    );
    await expectFailure(
      await fetch(`${setup.url}/logged-in?state=forged-state-value&code=abc`),
      400,
      "invalid_state",
      "This sign-in link has expired or was already used",
    );
    expect(setup.provider.counters.tokenRequests).toBe(0);
  });

  it("refuses a reused state with a clear page, without a second code exchange", async () => {
    const setup = await start();
    const callback = await callbackUrl(setup.url);
    expect((await fetch(callback)).status).toBe(200);
    await expectErrorPage(callback, 400, "This sign-in link has expired or was already used");
    expect(setup.provider.counters.tokenRequests).toBe(1);
    expect(await setup.handler.store.countRecords()).toBe(1);
  });

  it("refuses a state older than 10 minutes", async () => {
    let now = Date.now();
    const setup = await start({ handler: { now: () => now } });
    const callback = await callbackUrl(setup.url);
    now += 10 * 60_000 + 1;
    await expectErrorPage(callback, 400, "This sign-in link has expired or was already used");
  });

  it("refuses a callback without a state", async () => {
    const setup = await start();
    await expectErrorPage(
      `${setup.url}/logged-in?code=abc`,
      400,
      "This sign-in link is incomplete: it has no state",
    );
  });

  it("shows the provider's refusal of a code whose PKCE verifier does not match", async () => {
    const setup = await start();
    // A code injected into another sign-in: its challenge was made for the first sign-in's verifier.
    const first = new URL(await callbackUrl(setup.url));
    const second = new URL(await callbackUrl(setup.url));
    const injected = `${setup.url}/logged-in?state=${second.searchParams.get("state")}&code=${first.searchParams.get("code")}`;
    await expectErrorPage(
      injected,
      400,
      "Authentication provider for emu refused the sign-in (invalid_grant: code_verifier does not match the code_challenge)",
      "start again; if it keeps failing, the handler's operator should check the app registration and redirect URI",
    );
    expect(setup.provider.tokenRequestLog.at(-1)?.outcome).toBe("invalid_grant");
    expect(await setup.handler.store.countRecords()).toBe(0);
  });

  it("shows the provider's error when the user denies access", async () => {
    const setup = await start({ provider: { autoApprove: false } });
    const authorize = (await fetch(`${setup.url}/login?id=emu`, { redirect: "manual" })).headers.get(
      "location",
    )!;
    const consent = new URL(authorize);
    const form = new URLSearchParams(consent.searchParams);
    form.set("decision", "deny");
    const denied = await fetch(setup.provider.authorizeUrl, {
      method: "POST",
      body: form,
      redirect: "manual",
    });
    const callback = denied.headers.get("location")!;
    expect(new URL(callback).searchParams.get("error")).toBe("access_denied");
    await expectErrorPage(
      callback,
      400,
      "Authentication provider for emu did not sign you in: access_denied: the user denied the request",
      "start again, and approve the access when the provider asks",
    );
  });

  it("shows a failing token endpoint as a provider failure", async () => {
    const setup = await start();
    const callback = await callbackUrl(setup.url);
    setup.provider.faults.add({
      method: "POST",
      path: "/token",
      times: 3,
      respond: { status: 500, body: { error: "server_error" } },
    });
    await expectErrorPage(
      callback,
      502,
      "Authentication provider for emu answered 500 during exchange",
      "try again shortly",
    );
  });

  it("explains a code exchange that brings no refresh token", async () => {
    const provider = await startOAuthProvider({ autoApprove: true });
    const setup = await start({
      sharedProvider: provider,
      config: { providers: { emu: emulatorProvider(provider) } },
    });
    const callback = await callbackUrl(setup.url);
    provider.faults.add({
      method: "POST",
      path: "/token",
      respond: {
        status: 200,
        body: { access_token: "at_without_refresh", token_type: "Bearer", expires_in: 3600 },
      },
    });
    await expectErrorPage(
      callback,
      502,
      "Authentication provider for emu issued no refresh token",
      "the provider may need offline access enabled; the handler's operator should check the scopes",
    );
    await provider.close();
  });

  it("refuses an unknown provider id", async () => {
    const setup = await start();
    await expectErrorPage(
      `${setup.url}/login?id=nope`,
      404,
      "Unknown provider 'nope'",
      "this handler serves emu",
    );
  });
});
