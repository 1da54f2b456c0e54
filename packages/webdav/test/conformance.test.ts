import { randomUUID } from "node:crypto";
import { basicCredentials } from "@stowage/auth";
import { describeStorageConformance } from "@stowage/core/conformance";
import { afterAll } from "vitest";
import { createWebDavStorage, type WebDavStorageOptions } from "../src/index.js";
import { startApache, startRclone, startWebdavServer, type TestServer } from "./support/servers.js";

const chunkSize = 16 * 1024;

/**
 * Runs the shared suite against one server, started once for the file. Each test gets a fresh root
 * folder on it. `serverOptions` are what this server needs (see the README's server table).
 */
function conformance(
  name: string,
  start: () => Promise<TestServer>,
  serverOptions: Partial<WebDavStorageOptions>,
) {
  let server: Promise<TestServer> | undefined;
  afterAll(async () => {
    await (await server)?.stop();
  }, 30_000);
  describeStorageConformance(
    `webdav (${name})`,
    async ({ missingRoot }) => {
      server ??= start();
      const { url, username, password } = await server;
      const storage = createWebDavStorage({
        url,
        root: `conformance/${randomUUID()}/root`,
        auth: basicCredentials({ username, password }),
        bufferSize: chunkSize,
        ...serverOptions,
      });
      if (!missingRoot) await storage.createRoot();
      return storage;
    },
    // WebDAV has no listing pages (a folder is one PROPFIND answer): the default pageSize only sizes
    // the listing test (2,003 objects in one folder).
    { chunkSize },
  );
}

conformance("webdav-server", startWebdavServer, { reservedCharacters: "\\" });
conformance("apache", startApache, {});
conformance("rclone", startRclone, { conditionalPut: true });
// The path without atomicPut (one PUT, If-None-Match for ifNotExists). On Apache, whose own PUT is
// atomic: on a server that writes in place, an aborted put leaves its partial object, which the
// suite's abort test does not allow even where atomicPut is false (see the README).
conformance("apache, atomicPut off", startApache, { atomicPut: false });
