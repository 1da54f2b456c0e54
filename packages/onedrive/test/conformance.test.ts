import { randomUUID } from "node:crypto";
import { personalAccessToken } from "@stowage/auth";
import { describeStorageConformance } from "@stowage/core/conformance";
import { type GraphEmulator, startGraphEmulator } from "@stowage/emulators";
import { afterAll } from "vitest";
import { createOneDriveStorage, FRAGMENT_MULTIPLE } from "../src/index.js";

// One fragment is the smallest legal size, and the simple-upload cutoff is below it, so that the
// suite's sizes around the chunk size (and the many-chunk stream) all go through upload sessions.
const fragmentSize = FRAGMENT_MULTIPLE;
const simpleUploadCutoff = 64 * 1024;
const pageSize = 50;

let graph: Promise<GraphEmulator> | undefined;

afterAll(async () => {
  await (await graph)?.close();
}, 30_000);

describeStorageConformance(
  "onedrive (Graph emulator)",
  async ({ missingRoot }) => {
    graph ??= startGraphEmulator();
    const emulator = await graph;
    const storage = createOneDriveStorage({
      auth: personalAccessToken("conformance-token"),
      graphUrl: emulator.graphUrl,
      root: `conformance/${randomUUID()}/root`,
      fragmentSize,
      simpleUploadCutoff,
      pageSize,
    });
    if (!missingRoot) await storage.createRoot();
    return storage;
  },
  { chunkSize: fragmentSize, pageSize, streamSize: 24 * fragmentSize },
);
