/**
 * The server side of bench/handler.ts, in its own process so that the load generator does not share
 * its event loop: an OAuth provider emulator and a handler in front of it, with AUTHIDS AuthIDs made
 * through the real sign-in flow. Prints one JSON line `{ url, authIds }`, then serves until stdin closes.
 *
 * MODE=cache serves cached tokens. MODE=provider gives the handler a clock that moves one hour per
 * reading, so every cached token is stale and every refresh calls the provider (which rotates the
 * refresh token, so each call also writes the record).
 */
// Relative imports: the root package depends only on @stowage/core, and the bench needs no build.
import { defaultOAuthClient, startOAuthProvider } from "../packages/emulators/src/index.js";
import { createHandler } from "../packages/handler/src/index.js";

const store = process.env.STORE ?? "memory:";
const mode = process.env.MODE === "provider" ? "provider" : "cache";
const count = Number(process.env.AUTHIDS ?? "100");

const HOUR = 3_600_000;
let skew = 0;
let skewing = false;
// The clock starts moving once the AuthIDs exist: a sign-in must finish within 10 minutes.
const now = () => {
  if (skewing) skew += HOUR;
  return Date.now() + skew;
};

const provider = await startOAuthProvider({ autoApprove: true, rotateRefreshTokens: true });
const off = { perIp: false, perKey: false } as const;
const handler = createHandler(
  {
    store,
    providers: {
      emu: {
        type: "oauth2",
        clientId: defaultOAuthClient.clientId,
        clientSecret: defaultOAuthClient.clientSecret,
        clientAuth: "client_secret_basic",
        authorizeUrl: provider.authorizeUrl,
        tokenUrl: provider.tokenUrl,
        scopes: ["files"],
      },
    },
    limits: { refresh: off, login: { perIp: false }, revoke: off, fetch: { perIp: false } },
  },
  { now },
);
const url = await handler.listen(0, "127.0.0.1");

const step = async (target: string) => {
  const response = await fetch(target, { redirect: "manual" });
  if (response.status !== 302) throw new Error(`sign-in step ${target} answered ${response.status}`);
  return response.headers.get("location")!;
};
const authIds: string[] = [];
for (let i = 0; i < count; i++) {
  const callback = await step(await step(`${url}/login?id=emu`));
  const html = await (await fetch(callback)).text();
  authIds.push(/<pre id="authid">([^<]+)<\/pre>/.exec(html)![1]!);
}
skewing = mode === "provider";
process.stdout.write(`${JSON.stringify({ url, authIds })}\n`);

process.stdin.resume();
process.stdin.on("end", async () => {
  await handler.close();
  await provider.close();
  process.exit(0);
});
