import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isStorageError, redact } from "@stowage/core";
import { afterAll, describe, expect, it } from "vitest";
import { createHandler, loadConfigFile, parseConfig } from "../src/index.js";

const dir = mkdtempSync(join(tmpdir(), "stowage-handler-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const minimal = {
  providers: { onedrive: { type: "microsoft", clientId: "client-1", clientSecret: "secret-value-1" } },
};

/** The message of the InvalidConfig error that parsing `input` throws. */
function problems(input: unknown, env: NodeJS.ProcessEnv = {}): string {
  try {
    parseConfig(input, { env });
  } catch (err) {
    expect(isStorageError(err, "InvalidConfig")).toBe(true);
    return (err as Error).message;
  }
  throw new Error("the configuration was accepted");
}

describe("parseConfig", () => {
  it("fills Microsoft's endpoints, scopes and defaults from a minimal configuration", () => {
    const config = parseConfig(minimal);
    expect(config.providers.onedrive).toMatchObject({
      id: "onedrive",
      name: "onedrive",
      authorizeUrl: "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
      tokenUrl: "https://login.microsoftonline.com/common/oauth2/v2.0/token",
      scopes: ["Files.ReadWrite", "offline_access"],
      pkce: true,
      clientAuth: "client_secret_post",
    });
    expect(config.providers.onedrive!.revokeUrl).toBeUndefined();
    expect(config.store).toBe("sqlite:./stowage-handler.db");
    expect(config.purgeAfterDays).toBe(365);
    expect(config.limits.refresh.perKey).toEqual({ perMinute: 60, burst: 60 });
  });

  it("sets Google's offline access, consent prompt and revocation endpoint", () => {
    const config = parseConfig(
      {
        providers: { gdrive: { type: "google", clientId: "g-client", clientSecret: { env: "G_SECRET" } } },
      },
      { env: { G_SECRET: "google-secret-1" } },
    );
    expect(config.providers.gdrive).toMatchObject({
      clientSecret: "google-secret-1",
      scopes: ["https://www.googleapis.com/auth/drive.file"],
      revokeUrl: "https://oauth2.googleapis.com/revoke",
      authorizeParams: { access_type: "offline", prompt: "consent" },
    });
  });

  it("reads a client secret from a file and a tenant into Microsoft's URLs", () => {
    const secretFile = join(dir, "ms-secret");
    writeFileSync(secretFile, "from-a-file-123\n");
    const config = parseConfig({
      providers: {
        od: { type: "microsoft", clientId: "c", clientSecret: { file: secretFile }, tenant: "consumers" },
      },
    });
    expect(config.providers.od!.clientSecret).toBe("from-a-file-123");
    expect(config.providers.od!.tokenUrl).toBe(
      "https://login.microsoftonline.com/consumers/oauth2/v2.0/token",
    );
  });

  it("names every invalid field in one error, with suggestions for misspelt ones", () => {
    const message = problems({
      publicUrl: "ftp://handler.example.com",
      stor: "sqlite:x.db",
      providers: {
        onedrive: { type: "microsoft", clientId: "", scops: ["x"] },
        Bad: { type: "oauth2", clientId: "c" },
      },
      limits: { refresh: { perIp: { perMinute: 0 } } },
      purgeAfterDays: -1,
      allowedOrigins: ["https://app.example.com/path"],
    });
    expect(message).toMatch(/^handler config: the handler configuration has \d+ problems: /);
    for (const expected of [
      "publicUrl: must be an absolute http:// or https:// URL",
      "stor: unknown field (did you mean 'store'?)",
      "providers.onedrive.clientId: must be a non-empty string",
      "providers.onedrive.scops: unknown field (did you mean 'scopes'?)",
      "providers.Bad: provider ids are 1-32 lower-case letters, digits, '-' or '_'",
      "limits.refresh.perIp.perMinute: must be more than 0",
      "purgeAfterDays: must be more than 0",
      "allowedOrigins.0: must be an origin such as https://app.example.com (no path)",
    ]) {
      expect(message).toContain(expected);
    }
    expect(message).toContain("(fix each field named above; docs/handler.md lists every field)");
  });

  it("says which provider types exist", () => {
    expect(problems({ providers: { x: { type: "dropbox", clientId: "c" } } })).toContain(
      'providers.x.type: must be "microsoft", "google" or "oauth2"',
    );
  });

  it("requires at least one provider", () => {
    expect(problems({})).toContain("providers: is required");
    expect(problems({ providers: {} })).toContain("providers: configure at least one provider");
  });

  it("refuses a plain-http public URL off loopback, and a path in it", () => {
    const message = problems({ ...minimal, publicUrl: "http://handler.example.com/oauth" });
    expect(message).toContain(
      "publicUrl: must be https:// (OAuth providers refuse plain http redirect URIs except on loopback)",
    );
    expect(message).toContain("publicUrl: must have no path or query");
    expect(parseConfig({ ...minimal, publicUrl: "http://127.0.0.1:8080" }).publicUrl).toBe(
      "http://127.0.0.1:8080",
    );
  });

  it("names a missing environment variable or file without showing any secret", () => {
    const message = problems({
      providers: {
        a: {
          type: "oauth2",
          clientId: "c",
          clientSecret: { env: "NOT_SET" },
          authorizeUrl: "https://a/x",
          tokenUrl: "https://a/t",
          scopes: ["s"],
        },
        b: { type: "google", clientId: "c", clientSecret: { file: join(dir, "missing") } },
      },
      apiKeys: [{ nope: 1 }],
    });
    expect(message).toContain('apiKeys.0: must be a string, {"env": "NAME"} or {"file": "/path"}');
    const second = problems({
      providers: {
        a: {
          type: "oauth2",
          clientId: "c",
          clientSecret: { env: "NOT_SET" },
          authorizeUrl: "https://a/x",
          tokenUrl: "https://a/t",
          scopes: ["s"],
        },
        b: { type: "google", clientId: "c", clientSecret: { file: join(dir, "missing") } },
      },
    });
    expect(second).toContain(
      "providers.a.clientSecret: the environment variable NOT_SET is not set or is empty",
    );
    expect(second).toContain(`providers.b.clientSecret: cannot read ${join(dir, "missing")} (ENOENT)`);
  });

  it("requires a client secret where the client authentication needs one", () => {
    expect(
      problems({
        providers: {
          a: {
            type: "oauth2",
            clientId: "c",
            clientAuth: "client_secret_basic",
            authorizeUrl: "https://a/x",
            tokenUrl: "https://a/t",
            scopes: ["s"],
          },
          g: { type: "google", clientId: "c" },
        },
      }),
    ).toMatch(
      /providers\.a\.clientSecret: is required with clientAuth "client_secret_basic".*providers\.g\.clientSecret: is required for Google/,
    );
  });

  it("makes an oauth2 provider without a secret a public client", () => {
    const config = parseConfig({
      providers: {
        p: {
          type: "oauth2",
          clientId: "c",
          authorizeUrl: "https://a/x",
          tokenUrl: "https://a/t",
          scopes: ["s"],
        },
      },
    });
    expect(config.providers.p).toMatchObject({ clientAuth: "none", pkce: true });
  });

  it("rejects an unknown store URL", () => {
    expect(problems({ ...minimal, store: "mysql://x" })).toContain(
      "store: must be sqlite:<path>, postgres://user@host/db or memory:",
    );
  });
});

describe("loadConfigFile", () => {
  it("reads a JSON file", () => {
    const file = join(dir, "ok.json");
    writeFileSync(file, JSON.stringify(minimal));
    expect(loadConfigFile(file).providers.onedrive!.clientId).toBe("client-1");
  });

  it("says where invalid JSON is without quoting it", () => {
    const file = join(dir, "broken.json");
    writeFileSync(file, '{"providers": {"x": {"clientSecret": "do-not-show-me" ,}}}');
    expect(() => loadConfigFile(file)).toThrow(
      new RegExp(
        `^handler config: the configuration file ${file} is not valid JSON near character \\d+ \\(check for a trailing comma`,
      ),
    );
    try {
      loadConfigFile(file);
    } catch (err) {
      expect(String(err)).not.toContain("do-not-show-me");
    }
  });

  it("names the file in validation errors", () => {
    const file = join(dir, "invalid.json");
    writeFileSync(file, "{}");
    expect(() => loadConfigFile(file)).toThrow(
      `the handler configuration ${file} has a problem: providers: is required`,
    );
  });

  it("says when the file cannot be read", () => {
    expect(() => loadConfigFile(join(dir, "absent.json"))).toThrow(
      `cannot read the configuration file ${join(dir, "absent.json")} (ENOENT)`,
    );
  });
});

describe("createHandler", () => {
  it("validates a raw configuration before anything starts", () => {
    expect(() => createHandler({ providers: {} })).toThrow("providers: configure at least one provider");
  });

  it("registers client secrets for redaction, so an error quoting one is cleaned", () => {
    parseConfig({
      providers: {
        p: {
          type: "oauth2",
          clientId: "c",
          clientSecret: "very-secret-client-value",
          authorizeUrl: "https://a/x",
          tokenUrl: "https://a/t",
          scopes: ["s"],
        },
      },
    });
    expect(redact("the provider said: bad client very-secret-client-value")).toBe(
      "the provider said: bad client [redacted]",
    );
  });
});
