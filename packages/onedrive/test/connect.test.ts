import { personalAccessToken } from "@stowage/auth";
import { connect, isStorageError, type Storage } from "@stowage/core";
import { describe, expect, it } from "vitest";
import "../src/index.js";
import { emulator, failure, onCleanup } from "./support/setup.js";

async function open(url: string, options: Record<string, unknown> = {}): Promise<Storage> {
  const storage = await connect(url, options);
  onCleanup(() => storage.close());
  return storage;
}

async function configError(url: string, options: Record<string, unknown> = {}) {
  try {
    await open(url, options);
  } catch (err) {
    if (isStorageError(err, "InvalidConfig")) return err;
    throw err;
  }
  throw new Error("expected InvalidConfig");
}

describe("onedrive:// connection URLs", () => {
  it("opens the host and path as the root, with a token, and keeps the token out of location", async () => {
    const graph = await emulator();
    const graphUrl = encodeURIComponent(graph.graphUrl);
    const storage = await open(
      `onedrive://Backups/pc1?token=secret-pat-1&graph-url=${graphUrl}&create-root=true`,
    );
    expect(storage.provider).toBe("onedrive");
    expect(storage.location).not.toContain("secret-pat-1");
    await storage.put("a.txt", "hello");
    expect(graph.file("Backups/pc1/a.txt")?.content.toString()).toBe("hello");
    expect((await storage.stat("A.TXT")).size).toBe(5);
  });

  it("takes a root with an empty host too, decoded once", async () => {
    const graph = await emulator();
    const storage = await open(
      `onedrive:///My%20Backups/pc%25?token=t&graph-url=${encodeURIComponent(graph.graphUrl)}&create-root=true`,
    );
    await storage.put("x", "1");
    expect(graph.file("My Backups/pc%/x")).toBeDefined();
  });

  it("reads drive-id, fragment-size, page-size, simple-upload-cutoff and business", async () => {
    const graph = await emulator({ driveId: "abc123", business: true });
    const storage = await open(
      `onedrive://R?token=t&graph-url=${encodeURIComponent(graph.graphUrl)}&drive-id=abc123&fragment-size=327680&simple-upload-cutoff=0&page-size=2&business=true&create-root=true`,
    );
    await storage.put("50%", "x");
    expect(graph.list("R")).toEqual(["50％"]);
    expect(graph.counters.sessionsCreated).toBe(1);
    expect(
      graph.requests
        .filter((r) => r.host === "graph")
        .every((r) => r.path.startsWith("/v1.0/drives/abc123/")),
    ).toBe(true);
  });

  it("lets the auth option (any token source) stand in for URL credentials", async () => {
    const graph = await emulator();
    const storage = await open(
      `onedrive://R?graph-url=${encodeURIComponent(graph.graphUrl)}&create-root=true`,
      {
        auth: personalAccessToken("from-options"),
      },
    );
    await storage.put("o.txt", "x");
    expect(graph.file("R/o.txt")).toBeDefined();
  });

  it("refuses a fragment size that is not a multiple of 320 KiB, naming it", async () => {
    const err = await configError("onedrive://R?token=t&fragment-size=1000");
    expect(err.message).toContain("'fragmentSize'");
    expect(err.message).toContain("327,680");
  });

  it("refuses an unknown parameter and suggests the closest", async () => {
    const err = await configError("onedrive://R?token=t&fragment-sise=327680");
    expect(err.hint).toBe("did you mean 'fragment-size'?");
  });

  it("refuses a URL without credentials, saying how to give them", async () => {
    const err = await configError("onedrive://R");
    expect(err.message).toBe(
      "onedrive connect: onedrive needs credentials (give an AuthID (parameters authid and oauth-url, your handler's /refresh URL), a personal access token (parameter token), or direct OAuth (client-id and refresh-token))",
    );
  });

  it("reports a missing root as FolderMissing until create-root", async () => {
    const graph = await emulator();
    const storage = await open(`onedrive://Nope/pc1?token=t&graph-url=${encodeURIComponent(graph.graphUrl)}`);
    const err = await failure(storage.put("a", "x"));
    expect(err.code).toBe("FolderMissing");
    expect(err.hint).toContain("create-root=true");
  });
});
