import { randomUUID } from "node:crypto";
import { oauthRefreshToken } from "@stowage/auth";
import { describeStorageConformance } from "@stowage/core/conformance";
import { afterAll, beforeAll } from "vitest";
import { createGoogleDriveStorage } from "../src/index.js";
import type { EmulatorProcessInfo } from "./support/emulator-process.js";
import { startEmulatorProcess } from "./support/emulators.js";

const CHUNK = 262_144;
let emulators: EmulatorProcessInfo & { stop(): Promise<void> };

// The emulators run in a process of their own: the suite's memory check measures this whole
// process, and the emulator's buffers (request bodies, disk writes) are not the client's.
beforeAll(async () => {
  emulators = await startEmulatorProcess();
});

afterAll(async () => {
  await emulators?.stop();
});

// A small chunk size, so that a resumable upload of a few hundred KiB already runs many chunks.
describeStorageConformance(
  "gdrive",
  async ({ missingRoot }) => {
    const storage = createGoogleDriveStorage({
      auth: oauthRefreshToken({
        tokenUrl: emulators.tokenUrl,
        clientId: emulators.clientId,
        clientSecret: emulators.clientSecret,
        refreshToken: emulators.refreshToken,
        onRotate: () => {
          throw new Error("Google does not rotate refresh tokens");
        },
      }),
      root: `t-${randomUUID()}/nested`,
      driveUrl: emulators.driveUrl,
      chunkSize: CHUNK,
      pageSize: 40,
      retry: { minDelayMs: 5, maxDelayMs: 50 },
    });
    if (!missingRoot) await storage.createRoot();
    return storage;
  },
  { chunkSize: CHUNK, pageSize: 40 },
);
