import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type OAuthProvider, startOAuthProvider } from "@stowage/emulators";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  duplicatiRefresh,
  emulatorProvider,
  login,
  type Setup,
  startSetup,
  startTokenRecorder,
  type TokenRecorder,
} from "./support/handler.js";
import { startPostgres, type TestPostgres } from "./support/postgres.js";

const HOUR = 3_600_000;
let postgres: TestPostgres;
const dir = mkdtempSync(join(tmpdir(), "stowage-handler-multi-"));

beforeAll(async () => {
  postgres = await startPostgres();
});
afterAll(async () => {
  await postgres?.stop();
  rmSync(dir, { recursive: true, force: true });
});

interface Fleet {
  provider: OAuthProvider;
  recorder: TokenRecorder;
  instances: Setup[];
  advance(ms: number): void;
  close(): Promise<void>;
}

/** Handler instances sharing one store and one (rotating) provider, behind a token recorder. */
async function fleet(store: string, count: number, publicUrl?: string): Promise<Fleet> {
  const provider = await startOAuthProvider({ autoApprove: true, rotateRefreshTokens: true });
  const recorder = await startTokenRecorder(provider);
  let now = Date.now();
  const instances: Setup[] = [];
  for (let i = 0; i < count; i++) {
    instances.push(
      await startSetup({
        sharedProvider: provider,
        config: {
          store,
          publicUrl,
          providers: { emu: emulatorProvider(provider, { tokenUrl: recorder.tokenUrl }) },
        },
        handler: { now: () => now },
      }),
    );
  }
  return {
    provider,
    recorder,
    instances,
    advance: (ms) => {
      now += ms;
    },
    async close() {
      await Promise.all(instances.map((instance) => instance.close()));
      await recorder.close();
      await provider.close();
    },
  };
}

const refreshCalls = (provider: OAuthProvider) =>
  provider.tokenRequestLog.filter((entry) => entry.grantType === "refresh_token").length;

async function accessToken(response: Response): Promise<string> {
  const text = await response.text();
  expect(response.status, text).toBe(200);
  return (JSON.parse(text) as { access_token: string }).access_token;
}

/** Whether any of the values occurs in the bytes, as UTF-8 (how a database would hold plain text). */
function occurrences(bytes: Buffer, values: readonly string[]): string[] {
  return values.filter((value) => bytes.includes(Buffer.from(value, "utf8")));
}

describe("two handler instances on one PostgreSQL", () => {
  it("make exactly one provider call for 50 concurrent refreshes of one AuthID, which keeps working", async () => {
    const { provider, instances, advance, close } = await fleet(postgres.url, 2);
    try {
      const [first, second] = instances as [Setup, Setup];
      const authId = await login(first.url);
      advance(HOUR);
      const answers = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          duplicatiRefresh((i % 2 === 0 ? first : second).url, authId).then(accessToken),
        ),
      );
      expect(refreshCalls(provider)).toBe(1);
      expect(new Set(answers).size).toBe(1);
      expect(provider.validate(answers[0]!).valid).toBe(true);
      // The rotated refresh token was stored: the next refresh, through the other instance, works.
      advance(HOUR);
      const later = await accessToken(await duplicatiRefresh(second.url, authId));
      expect(provider.validate(later).valid).toBe(true);
      expect(await accessToken(await duplicatiRefresh(first.url, authId))).toBe(later);
      expect(refreshCalls(provider)).toBe(2);
      expect(provider.tokenRequestLog.every((entry) => entry.outcome === "ok")).toBe(true);
    } finally {
      await close();
    }
  });

  it("share logins: a sign-in started on one instance completes on the other", async () => {
    // Behind a load balancer every instance has the same public URL (here one nobody listens on).
    const { instances, close } = await fleet(postgres.url, 2, "http://127.0.0.1:8099");
    try {
      const [first, second] = instances as [Setup, Setup];
      const authorize = (await fetch(`${first.listenUrl}/login?id=emu`, { redirect: "manual" })).headers.get(
        "location",
      )!;
      const callback = new URL((await fetch(authorize, { redirect: "manual" })).headers.get("location")!);
      expect(`${callback.origin}${callback.pathname}`).toBe("http://127.0.0.1:8099/logged-in");
      const response = await fetch(`${second.listenUrl}/logged-in${callback.search}`);
      expect(response.status).toBe(200);
      const authId = /<pre id="authid">([^<]+)<\/pre>/.exec(await response.text())![1]!;
      expect(await accessToken(await duplicatiRefresh(first.listenUrl, authId))).toBeTruthy();
    } finally {
      await close();
    }
  });
});

describe("at rest", () => {
  async function signInAndRefresh(store: string) {
    const flock = await fleet(store, 1);
    const instance = flock.instances[0]!;
    const authId = await login(instance.url);
    await accessToken(await duplicatiRefresh(instance.url, authId));
    flock.advance(HOUR);
    await accessToken(await duplicatiRefresh(instance.url, authId));
    expect(flock.recorder.refreshTokens).toHaveLength(2);
    expect(flock.recorder.accessTokens).toHaveLength(2);
    return { ...flock, authId };
  }

  it("no refresh or access token is in the SQLite files after login and refresh", async () => {
    const file = join(dir, "vault.db");
    const { recorder, authId, close } = await signInAndRefresh(`sqlite:${file}`);
    try {
      const files = [file, `${file}-wal`, `${file}-shm`].filter((path) => existsSync(path));
      const bytes = Buffer.concat(files.map((path) => readFileSync(path)));
      // The search looks in the right place: the record's KEYID is there.
      expect(bytes.includes(Buffer.from(authId.split(":")[0]!))).toBe(true);
      expect(
        occurrences(bytes, [...recorder.refreshTokens, ...recorder.accessTokens, authId.split(":")[1]!]),
      ).toEqual([]);
    } finally {
      await close();
    }
  });

  it("no refresh or access token is in a pg_dump after login and refresh", async () => {
    const { recorder, authId, close } = await signInAndRefresh(postgres.url);
    try {
      const dump = await postgres.dump();
      expect(dump.includes(Buffer.from(authId.split(":")[0]!))).toBe(true);
      // bytea is dumped as hex: look for the hex form as well as the text.
      const hex = (value: string) => Buffer.from(value, "utf8").toString("hex");
      const secrets = [...recorder.refreshTokens, ...recorder.accessTokens, authId.split(":")[1]!];
      expect(occurrences(dump, secrets)).toEqual([]);
      expect(occurrences(dump, secrets.map(hex))).toEqual([]);
    } finally {
      await close();
    }
  });
});
