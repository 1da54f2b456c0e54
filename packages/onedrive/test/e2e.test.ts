import { connect, type Entry, type Storage } from "@stowage/core";
import { defaultOAuthClient, type OAuthProvider, startOAuthProvider } from "@stowage/emulators";
import { createHandler, type Handler } from "@stowage/handler";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import "../src/index.js";
import { bytesOf, emulator, FRAGMENT_MULTIPLE } from "./support/setup.js";

// The whole path a user takes: sign in through the self-hosted handler (in front of the OAuth
// emulator), get an AuthID, and use it in a connection URL against the Graph emulator. Then the same
// with a personal access token, which must not touch the handler at all.

let oauth: OAuthProvider;
let handler: Handler;
let handlerUrl: string;
let handlerRequests = 0;

beforeAll(async () => {
  oauth = await startOAuthProvider({ autoApprove: true });
  handler = createHandler({
    store: "memory:",
    providers: {
      onedrive: {
        type: "oauth2",
        name: "OneDrive (emulated)",
        clientId: defaultOAuthClient.clientId,
        clientSecret: defaultOAuthClient.clientSecret,
        clientAuth: "client_secret_basic",
        authorizeUrl: oauth.authorizeUrl,
        tokenUrl: oauth.tokenUrl,
        revokeUrl: oauth.revokeUrl,
        scopes: ["Files.ReadWrite", "offline_access"],
      },
    },
  });
  handlerUrl = await handler.listen(0, "127.0.0.1");
  handler.server.on("request", () => {
    handlerRequests++;
  });
}, 30_000);

afterAll(async () => {
  await handler?.close();
  await oauth?.close();
});

/** Signs in as a browser would: /login → the provider's consent (auto-approved) → /logged-in. */
async function signIn(): Promise<string> {
  let url = `${handlerUrl}/login?id=onedrive`;
  for (let hop = 0; hop < 2; hop++) {
    const response = await fetch(url, { redirect: "manual" });
    expect(response.status).toBe(302);
    url = response.headers.get("location")!;
  }
  const page = await fetch(url, { redirect: "manual" });
  const html = await page.text();
  expect(page.status, html).toBe(200);
  const authId = /<pre id="authid">([^<]+)<\/pre>/.exec(html)?.[1];
  expect(authId).toMatch(/^[0-9a-f]{32}:[A-Za-z0-9_-]{43}$/);
  return authId!;
}

async function roundTrip(storage: Storage, data: Uint8Array): Promise<Entry[]> {
  await storage.put("vol/0001.bin", data);
  await storage.put("manifest.json", '{"volumes":1}');
  const listed: Entry[] = [];
  for await (const entry of storage.list("", { recursive: true })) listed.push(entry);
  const back = await (await storage.get("vol/0001.bin")).bytes();
  expect(Buffer.from(back).equals(Buffer.from(data))).toBe(true);
  expect(await (await storage.get("manifest.json")).text()).toBe('{"volumes":1}');
  return listed;
}

describe("end to end", () => {
  it("an AuthID from the handler opens onedrive:// and puts, lists and gets through it", async () => {
    const graph = await emulator({ validateToken: (token) => oauth.validate(token) });
    const authId = await signIn();
    handlerRequests = 0;
    const url =
      `onedrive://Backups/pc1?authid=${encodeURIComponent(authId)}` +
      `&oauth-url=${encodeURIComponent(`${handlerUrl}/refresh`)}` +
      `&graph-url=${encodeURIComponent(graph.graphUrl)}&create-root=true&fragment-size=${FRAGMENT_MULTIPLE}`;
    const storage = await connect(url);
    try {
      expect(storage.location).not.toContain(authId.split(":")[1]);
      const data = bytesOf(5 * 1024 * 1024 + 17, 31);
      const listed = await roundTrip(storage, data);
      expect(listed.map((entry) => [entry.key, entry.size]).sort()).toEqual([
        ["manifest.json", 13],
        ["vol/0001.bin", data.byteLength],
      ]);
      expect(graph.file("Backups/pc1/vol/0001.bin")?.size).toBe(data.byteLength);
      expect(graph.counters.sessionsCreated).toBe(1);
      // The token came from the handler's /refresh, once: it is cached for its lifetime.
      expect(handlerRequests).toBe(1);
    } finally {
      await storage.close();
    }
  });

  it("a personal access token opens the same URL without a single call to the handler", async () => {
    const graph = await emulator({ validateToken: (token) => oauth.validate(token) });
    const token = oauth.issueAccessToken({ scopes: ["Files.ReadWrite"] });
    handlerRequests = 0;
    const before = oauth.counters.tokenRequests;
    const storage = await connect(
      `onedrive://Backups/pc1?token=${encodeURIComponent(token)}&graph-url=${encodeURIComponent(graph.graphUrl)}&create-root=true`,
    );
    try {
      expect(storage.location).not.toContain(token);
      const listed = await roundTrip(storage, bytesOf(200_000, 32));
      expect(listed.map((entry) => entry.key).sort()).toEqual(["manifest.json", "vol/0001.bin"]);
      expect(handlerRequests).toBe(0);
      expect(oauth.counters.tokenRequests).toBe(before);
    } finally {
      await storage.close();
    }
  });
});
