import { connect, type Entry } from "@stowage/core";
import {
  DRIVE_FILE_SCOPE,
  type DriveEmulator,
  defaultOAuthClient,
  type OAuthProvider,
  startDriveEmulator,
  startOAuthProvider,
} from "@stowage/emulators";
import { createHandler, type Handler } from "@stowage/handler";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import "../src/index.js";
import { bytesOf, expectOneFile } from "./support/emulators.js";

let oauth: OAuthProvider;
let drive: DriveEmulator;
let handler: Handler;
let handlerUrl: string;

beforeAll(async () => {
  // Google's manner: refresh tokens are not rotated, and the refresh answer carries none.
  oauth = await startOAuthProvider({ autoApprove: true, rotateRefreshTokens: false });
  drive = await startDriveEmulator({ oauth });
  handler = createHandler({
    store: "memory:",
    providers: {
      gdrive: {
        type: "google",
        clientId: defaultOAuthClient.clientId,
        clientSecret: defaultOAuthClient.clientSecret,
        endpoints: { authorizeUrl: oauth.authorizeUrl, tokenUrl: oauth.tokenUrl, revokeUrl: oauth.revokeUrl },
      },
    },
  });
  handlerUrl = await handler.listen(0, "127.0.0.1");
});

afterAll(async () => {
  await handler?.close();
  await drive?.close();
  await oauth?.close();
});

/** Follows one redirect by hand, as the test plays the browser. */
async function redirect(url: string): Promise<string> {
  const response = await fetch(url, { redirect: "manual" });
  expect(response.status, `${url} → ${response.headers.get("x-reason") ?? ""}`).toBe(302);
  return response.headers.get("location")!;
}

/** Signs in as a user would: handler login → Google consent (auto-approved) → the page with the AuthID. */
async function login(): Promise<string> {
  const consent = await redirect(`${handlerUrl}/login?id=gdrive`);
  expect(new URL(consent).searchParams.get("scope")).toBe(DRIVE_FILE_SCOPE);
  const back = await redirect(consent);
  const page = await fetch(back, { redirect: "manual" });
  const html = await page.text();
  expect(page.status, html).toBe(200);
  const authId = /<pre id="authid">([^<]+)<\/pre>/.exec(html)?.[1];
  expect(authId).toMatch(/^[0-9a-f]{32}:[A-Za-z0-9_-]{43}$/);
  return authId!;
}

describe("end to end: handler login → AuthID → gdrive:// → put, list, get", () => {
  it("a user signs in once, and a backup tool uses the AuthID alone", async () => {
    const authId = await login();
    const url =
      `gdrive://Backups/pc1?authid=${encodeURIComponent(authId)}` +
      `&oauth-url=${encodeURIComponent(`${handlerUrl}/refresh`)}` +
      `&drive-url=${encodeURIComponent(drive.url)}&create-root=true&chunk-size=262144`;
    const storage = await connect(url);
    try {
      expect(storage.location).toBe("gdrive://Backups/pc1");
      const volume = bytesOf(3 * 262_144 + 1000, 42);
      await storage.put("vol/0001.zip", volume);
      await storage.put("manifest.json", '{"volumes":1}');

      const listed: Entry[] = [];
      for await (const entry of storage.list("", { recursive: true })) listed.push(entry);
      expect(listed.map((entry) => [entry.key, entry.size]).sort()).toEqual([
        ["manifest.json", 13],
        ["vol/0001.zip", volume.byteLength],
      ]);
      const back = await (await storage.get("vol/0001.zip")).bytes();
      expect(Buffer.compare(Buffer.from(back), Buffer.from(volume))).toBe(0);
      expect(await (await storage.get("manifest.json")).text()).toBe('{"volumes":1}');

      // In Drive: the folders and files the app made, created by the handler's OAuth client.
      expectOneFile(drive, "Backups/pc1/vol/0001.zip", volume);
      expect(drive.find("Backups/pc1/vol/0001.zip")[0]!.appId).toBe(defaultOAuthClient.clientId);
      // The handler answered /refresh with the access token it got with the code, cached (sealed)
      // until shortly before it expires: the provider saw the code exchange and nothing else.
      expect(oauth.tokenRequestLog.map((entry) => [entry.grantType, entry.outcome])).toEqual([
        ["authorization_code", "ok"],
      ]);
    } finally {
      await storage.close();
    }
  });
});
