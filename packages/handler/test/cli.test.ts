import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type OAuthProvider, startOAuthProvider } from "@stowage/emulators";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CliIo, runCli } from "../src/cli.js";
import { createHandler, SqliteStore } from "../src/index.js";
import { emulatorProvider, login, noLimits } from "./support/handler.js";
import { freePort } from "./support/postgres.js";

const dir = mkdtempSync(join(tmpdir(), "stowage-handler-cli-"));
let provider: OAuthProvider;

beforeAll(async () => {
  provider = await startOAuthProvider({ autoApprove: true });
});
afterAll(async () => {
  await provider.close();
  rmSync(dir, { recursive: true, force: true });
});

let files = 0;
function configFile(overrides: Record<string, unknown> = {}): { path: string; store: string } {
  const store = join(dir, `vault-${files}.db`);
  const path = join(dir, `config-${files++}.json`);
  writeFileSync(
    path,
    JSON.stringify({
      store: `sqlite:${store}`,
      providers: { emu: emulatorProvider(provider) },
      limits: noLimits,
      ...overrides,
    }),
  );
  return { path, store };
}

async function cli(args: string[], stdin = ""): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const io: CliIo = {
    out: (text) => {
      out += text;
    },
    err: (text) => {
      err += text;
    },
    stdin: () => stdin,
    env: {},
  };
  const code = await runCli(args, io);
  return { code, out, err };
}

describe("stowage-handler", () => {
  it("prints its usage with --help", async () => {
    const { code, out } = await cli(["--help"]);
    expect(code).toBe(0);
    expect(out).toContain("stowage-handler serve        [--config <file>]");
    expect(out).toContain("stowage-handler check-config [--config <file>]");
  });

  it("exits 2 with the usage when no command is given", async () => {
    const { code, out } = await cli([]);
    expect(code).toBe(2);
    expect(out).toContain("Usage:");
  });

  it("exits 2 on an unknown command or option", async () => {
    expect(await cli(["start"])).toEqual({
      code: 2,
      out: "",
      err: "stowage-handler: unknown command 'start'; the commands are serve, purge, revoke, check-config\nRun stowage-handler --help for usage.\n",
    });
    const option = await cli(["serve", "--port", "1"]);
    expect(option.code).toBe(2);
    expect(option.err).toMatch(/^stowage-handler: Unknown option '--port'/);
  });

  it("check-config prints what the configuration sets up, without secrets", async () => {
    const { path } = configFile({ publicUrl: "https://handler.example.com" });
    const { code, out } = await cli(["check-config", "--config", path]);
    expect(code).toBe(0);
    expect(out).toContain(`${path} is valid.`);
    expect(out).toContain(
      "redirect URI to register with each provider: https://handler.example.com/logged-in",
    );
    expect(out).toContain(
      'emu (oauth2): scopes "files.readwrite offline_access", PKCE on, client auth client_secret_basic, revocation yes',
    );
    expect(out).not.toContain("stowage-test-client-secret");
  });

  it("check-config exits 2 and names each problem", async () => {
    const path = join(dir, "bad.json");
    writeFileSync(path, JSON.stringify({ providers: { emu: { type: "oauth2", clientId: "c" } } }));
    const { code, err } = await cli(["check-config", "--config", path]);
    expect(code).toBe(2);
    expect(err).toContain(
      `stowage-handler: handler config: the handler configuration ${path} has 3 problems: providers.emu.scopes: is required; providers.emu.authorizeUrl: is required; providers.emu.tokenUrl: is required`,
    );
  });

  it("purge deletes records unused for purgeAfterDays", async () => {
    const { path, store } = configFile({ purgeAfterDays: 10 });
    const vault = new SqliteStore(store);
    await vault.insert({
      keyId: "a".repeat(32),
      provider: "emu",
      createdAt: 0,
      usedAt: 0,
      grant: Buffer.from("x"),
    });
    await vault.insert({
      keyId: "b".repeat(32),
      provider: "emu",
      createdAt: 0,
      usedAt: Date.now(),
      grant: Buffer.from("y"),
    });
    await vault.close();
    const { code, out } = await cli(["purge", "--config", path]);
    expect(code).toBe(0);
    expect(out).toBe("purged 1 record(s) unused for 10 days and 0 expired login(s) or fetch token(s)\n");
  });

  it("revoke reads the AuthID from standard input and revokes it at the provider", async () => {
    const { path, store } = configFile();
    const handler = createHandler({
      store: `sqlite:${store}`,
      providers: { emu: emulatorProvider(provider) },
      limits: noLimits,
    });
    const url = await handler.listen(0, "127.0.0.1");
    const authId = await login(url);
    await handler.close();
    const before = provider.counters.revokeRequests;
    const { code, out } = await cli(["revoke", "-", "--config", path], `${authId}\n`);
    expect({ code, out }).toEqual({
      code: 0,
      out: "revoked: the record is deleted and emu revoked the refresh token\n",
    });
    expect(provider.counters.revokeRequests).toBe(before + 1);
    const again = await cli(["revoke", authId, "--config", path]);
    expect(again.code).toBe(1);
    expect(again.err).toMatch(
      /^stowage-handler: This AuthID was revoked on \d{4}-\d{2}-\d{2} \(create a new AuthID at /,
    );
  });

  it("revoke --keyid deletes a record without the AuthID, and says what that cannot do", async () => {
    const { path, store } = configFile();
    const vault = new SqliteStore(store);
    await vault.insert({
      keyId: "c".repeat(32),
      provider: "emu",
      createdAt: 0,
      usedAt: 0,
      grant: Buffer.from("x"),
    });
    await vault.close();
    const { code, out } = await cli(["revoke", "--keyid", "c".repeat(32), "--config", path]);
    expect(code).toBe(0);
    expect(out).toContain(
      `deleted record ${"c".repeat(32)}; the provider's refresh token was not revoked (that needs the AuthID)`,
    );
    expect(await cli(["revoke", "--keyid", "c".repeat(32), "--config", path])).toMatchObject({
      code: 1,
      out: `no record ${"c".repeat(32)}\n`,
    });
    expect((await cli(["revoke", "--keyid", "xyz", "--config", path])).err).toContain(
      "a KEYID is 32 hex digits",
    );
  });

  it("serve runs until SIGTERM, logging JSON lines", async () => {
    const port = await freePort();
    const { path } = configFile({ listen: { host: "127.0.0.1", port } });
    const root = join(import.meta.dirname, "..", "..", "..");
    const child = spawn(
      process.execPath,
      [
        "--conditions=@stowage/source",
        "--import",
        "tsx",
        join(import.meta.dirname, "..", "src", "cli.ts"),
        "serve",
        "--config",
        path,
      ],
      { cwd: root, stdio: ["ignore", "pipe", "pipe"] },
    );
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    for (let i = 0; i < 200 && !output.includes("stowage-handler listening"); i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(await health.json()).toEqual({ status: "ok", store: "sqlite" });
    child.kill("SIGTERM");
    const [exitCode] = await once(child, "exit");
    expect(exitCode).toBe(0);
    const lines = output
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines).toContainEqual(
      expect.objectContaining({
        level: "info",
        msg: "stowage-handler listening",
        url: `http://127.0.0.1:${port}`,
      }),
    );
    // It purges at start, then every 6 hours.
    expect(lines).toContainEqual(
      expect.objectContaining({ level: "info", msg: "purge", records: 0, expired: 0 }),
    );
    expect(lines).toContainEqual(
      expect.objectContaining({
        level: "info",
        msg: "request",
        method: "GET",
        path: "/healthz",
        status: 200,
      }),
    );
  });
});
