import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type OAuthProvider,
  type RunningServer,
  sendHtml,
  startHttpServer,
  startOAuthProvider,
} from "@stowage/emulators";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHandler, type Handler } from "../src/index.js";
import { emulatorProvider, noLimits } from "./support/handler.js";

/** Debian's chromium (apt package `chromium`); playwright-core brings no browser of its own. */
const CHROMIUM = process.env.STOWAGE_CHROMIUM ?? "/usr/bin/chromium";

/**
 * An application page on its own origin that opens the handler in a popup, as Duplicati's web UI does,
 * and records every message it receives.
 */
function openerPage(handlerUrl: string): string {
  return `<!doctype html><meta charset="utf-8"><title>Backup tool</title>
<button id="open" type="button">Get an AuthID</button>
<script>
window.received = [];
window.addEventListener("message", (event) => window.received.push({ origin: event.origin, data: event.data }));
document.getElementById("open").addEventListener("click", () => {
  window.open(${JSON.stringify(`${handlerUrl}/?type=emu`)}, "stowage-login", "width=450,height=600");
});
</script>`;
}

let provider: OAuthProvider;
let handler: Handler;
let handlerUrl: string;
let allowedApp: RunningServer;
let otherApp: RunningServer;
let context: BrowserContext;
let profile: string;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium`);
  provider = await startOAuthProvider({ autoApprove: false });
  // Two applications on two origins (ports); only the first is configured as allowed.
  let pageHtml = "";
  allowedApp = await startHttpServer((_req, res) => sendHtml(res, 200, pageHtml));
  otherApp = await startHttpServer((_req, res) => sendHtml(res, 200, pageHtml));
  handler = createHandler({
    store: "memory:",
    providers: { emu: emulatorProvider(provider) },
    limits: noLimits,
    allowedOrigins: [allowedApp.url],
  });
  handlerUrl = await handler.listen(0, "127.0.0.1");
  pageHtml = openerPage(handlerUrl);
  profile = mkdtempSync(join(tmpdir(), "stowage-handler-chromium-"));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: handlerUrl });
});

afterAll(async () => {
  await context?.close();
  await handler?.close();
  await Promise.all([allowedApp?.close(), otherApp?.close(), provider?.close()]);
  if (profile) rmSync(profile, { recursive: true, force: true });
});

/** Opens the popup from `appUrl`, signs in with approval on the consent page, returns both pages. */
async function signInFrom(appUrl: string): Promise<{ app: Page; popup: Page; authId: string }> {
  const app = await context.newPage();
  await app.goto(appUrl);
  const [popup] = await Promise.all([app.waitForEvent("popup"), app.click("#open")]);
  await popup.waitForLoadState();
  expect(await popup.title()).toBe("Create an AuthID – Stowage");
  await popup.click("#login-emu");
  await popup.waitForURL(`${provider.url}/authorize**`);
  expect(await popup.textContent("h1")).toBe("Allow stowage-test-client to access your account?");
  await popup.click('button[value="approve"]');
  await popup.waitForURL(`${handlerUrl}/logged-in**`);
  const authId = (await popup.textContent("#authid"))!;
  expect(authId).toMatch(/^[0-9a-f]{32}:[A-Za-z0-9_-]{43}$/);
  return { app, popup, authId };
}

// These run in the page; the test's TypeScript has no DOM types, so the page globals are described here.
type Message = { origin: string; data: unknown };
type PageGlobals = {
  received: Message[];
  opener: unknown;
  navigator: { clipboard: { readText(): Promise<string> } };
};

async function received(app: Page): Promise<Message[]> {
  return app.evaluate(() => (globalThis as unknown as PageGlobals).received);
}

describe("sign-in in a real browser", () => {
  it("delivers the AuthID to an allowed opener, and copies it with the button", async () => {
    const { app, popup, authId } = await signInFrom(allowedApp.url);
    await expect.poll(() => received(app)).toEqual([{ origin: handlerUrl, data: `authid:${authId}` }]);
    await popup.click("#copy");
    await expect.poll(() => popup.textContent("#copy-status")).toBe("Copied");
    expect(
      await popup.evaluate(() => (globalThis as unknown as PageGlobals).navigator.clipboard.readText()),
    ).toBe(authId);
    // The AuthID works.
    const response = await fetch(`${handlerUrl}/refresh`, { headers: { "x-authid": authId } });
    expect(provider.validate(((await response.json()) as { access_token: string }).access_token).valid).toBe(
      true,
    );
    await Promise.all([app.close(), popup.close()]);
  });

  it("sends nothing to an opener whose origin is not allowed", async () => {
    const { app, popup } = await signInFrom(otherApp.url);
    // The popup still has its opener: only the target origin keeps the message from it.
    expect(await popup.evaluate(() => (globalThis as unknown as PageGlobals).opener !== null)).toBe(true);
    // The allowed opener's message arrived within milliseconds; give this one ample time to fail to.
    await popup.waitForTimeout(500);
    expect(await received(app)).toEqual([]);
    await Promise.all([app.close(), popup.close()]);
  });
});
