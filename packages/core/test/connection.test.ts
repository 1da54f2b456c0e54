import {
  connect,
  type ProviderDescriptor,
  parseConnectionUrl,
  registerProvider,
  StorageError,
} from "@stowage/core";
import { describe, expect, it } from "vitest";

async function configError(promise: Promise<unknown> | (() => unknown)): Promise<StorageError> {
  try {
    await (typeof promise === "function" ? promise() : promise);
  } catch (err) {
    expect(err).toBeInstanceOf(StorageError);
    expect((err as StorageError).code).toBe("InvalidConfig");
    return err as StorageError;
  }
  throw new Error("expected InvalidConfig");
}

describe("connect and parseConnectionUrl", () => {
  it("an unknown parameter is InvalidConfig listing the valid parameters", async () => {
    const err = await configError(connect("memory://x?nosuch=1"));
    expect(err.message).toContain("unknown parameter 'nosuch'");
    expect(err.message).toContain("valid parameters: create-root, page-size");
  });

  it("a misspelt parameter suggests the closest one", async () => {
    const err = await configError(connect("memory://x?create-rot=true"));
    expect(err.hint).toBe("did you mean 'create-root'?");
  });

  it("an unknown option in the options argument is InvalidConfig too", async () => {
    const err = await configError(connect("memory://x", { createRooot: true }));
    expect(err.message).toContain("unknown parameter 'createRooot' in the options");
    expect(err.hint).toBe("did you mean 'create-root'?");
  });

  it("an identical duplicate parameter is accepted with a diagnostic", () => {
    const parsed = parseConnectionUrl("memory://x?create-root=true&create-root=true");
    expect(parsed.params["create-root"]).toBe("true");
    expect(parsed.diagnostics).toEqual([
      {
        level: "warn",
        param: "create-root",
        message: "parameter 'create-root' appears twice in the URL with the same value",
      },
    ]);
  });

  it("a conflicting duplicate parameter fails naming it", async () => {
    const err = await configError(() => parseConnectionUrl("memory://x?create-root=true&create-root=false"));
    expect(err.message).toContain("parameter 'create-root' appears twice in the URL with different values");
  });

  it("a URL parameter overrides the options argument, with a diagnostic", () => {
    const parsed = parseConnectionUrl("memory://x?page-size=5", { pageSize: 9 });
    expect(parsed.params["page-size"]).toBe("5");
    expect(parsed.sources["page-size"]).toBe("url");
    expect(parsed.diagnostics[0]?.message).toBe(
      "parameter 'page-size' is set in both the URL and options; the URL's value is used",
    );
  });

  it("options override the environment, which overrides defaults", () => {
    const env = { STOWAGE_PAGE_SIZE: "3", STOWAGE_CREATE_ROOT: "true" };
    const parsed = parseConnectionUrl("memory://x", { pageSize: 4 }, { env });
    expect(parsed.params).toEqual({ "page-size": "4", "create-root": "true" });
    expect(parsed.sources).toEqual({ "page-size": "options", "create-root": "env" });
    expect(parsed.diagnostics.map((d) => d.message)).toContain(
      "parameter 'create-root' is taken from STOWAGE_CREATE_ROOT",
    );
  });

  it("percent-encoding is decoded exactly once and '+' stays '+'", () => {
    const descriptor: ProviderDescriptor = {
      provider: "probe",
      schemes: ["probe"],
      params: { authid: { description: "an AuthID", secret: true } },
      open: () => {
        throw new Error("not opened in this test");
      },
    };
    registerProvider(descriptor);
    expect(parseConnectionUrl("probe://h/p?authid=abc%3A123").params.authid).toBe("abc:123");
    expect(parseConnectionUrl("probe://h/p?authid=abc%253A123").params.authid).toBe("abc%3A123");
    expect(parseConnectionUrl("probe://h/p?authid=a+b").params.authid).toBe("a+b");
    expect(parseConnectionUrl("probe://h/My%20Folder/x").path).toBe("My Folder/x");
  });

  it("a secret parameter is redacted in the parsed URL", () => {
    const parsed = parseConnectionUrl(
      "probe://h/p?authid=0123456789abcdef0123456789abcdef%3AsecretSecretSecret123",
    );
    expect(parsed.url).not.toContain("secretSecretSecret123");
    expect(parsed.url).toContain("authid=[redacted]");
  });

  it("a malformed percent-encoding is InvalidConfig naming the parameter", async () => {
    const err = await configError(() => parseConnectionUrl("memory://x?page-size=%ZZ"));
    expect(err.message).toBe(
      "stowage connect: the value of 'page-size' has a malformed percent-encoding (encode '%' as '%25')",
    );
  });

  it("a wrongly typed value is InvalidConfig", async () => {
    const err = await configError(() => parseConnectionUrl("memory://x?create-root=maybe"));
    expect(err.message).toContain("parameter 'create-root' must be true or false, not 'maybe'");
    const err2 = await configError(() => parseConnectionUrl("memory://x?page-size=ten"));
    expect(err2.message).toContain("parameter 'page-size' must be a whole number");
  });

  it("a string that is not a URL is InvalidConfig with a hint", async () => {
    const err = await configError(connect("not a url"));
    expect(err.message).toContain("'not a url' is not a valid URL");
    expect(err.hint).toContain("starts with a scheme");
  });

  it("an unknown scheme is InvalidConfig listing the known schemes", async () => {
    const err = await configError(connect("ftp://host/path"));
    expect(err.message).toContain("unknown URL scheme 'ftp:'");
    expect(err.message).toContain("file");
    expect(err.message).toContain("s3");
  });

  it("a misspelt scheme suggests the closest one", async () => {
    const err = await configError(connect("memroy://x"));
    expect(err.hint).toBe("did you mean 'memory://'?");
  });

  it("a file URL with a host is refused", async () => {
    const err = await configError(connect("file://server/share"));
    expect(err.message).toContain("names the host 'server'");
  });

  it("a file URL must be absolute", async () => {
    const storage = await connect("file:///tmp/stowage-never-created-root");
    expect(storage.provider).toBe("fs");
    expect(storage.location).toBe("file:///tmp/stowage-never-created-root");
  });

  it("a userinfo the provider does not take is InvalidConfig, without echoing the password", async () => {
    const err = await configError(connect("memory://user:hunter2secret@x"));
    expect(err.message).toContain("unknown parameter 'username'");
    expect(err.message).not.toContain("hunter2secret");
  });

  it("connect opens a working memory storage, and diagnostics go to the logger", async () => {
    const warnings: string[] = [];
    const logger = {
      debug() {},
      info() {},
      error() {},
      warn: (_: object, msg?: string) => warnings.push(msg ?? ""),
    };
    const storage = await connect("memory://connect-test?create-root=true&create-root=true", { logger });
    await storage.put("a.txt", "hello");
    expect(await (await storage.get("a.txt")).text()).toBe("hello");
    expect(warnings).toEqual(["parameter 'create-root' appears twice in the URL with the same value"]);
  });

  it("two memory:// connections to the same root share objects", async () => {
    const a = await connect("memory://shared-root?create-root=true");
    const b = await connect("memory://shared-root");
    await a.put("k", "v");
    expect(await (await b.get("k")).text()).toBe("v");
  });
});
