import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createFsStorage } from "@stowage/core";
import { describeStorageConformance } from "@stowage/core/conformance";

describeStorageConformance(
  "fs",
  async ({ missingRoot }) => {
    const dir = await mkdtemp(join(tmpdir(), "stowage-fs-"));
    const storage = createFsStorage({ root: join(dir, "root", "nested"), pageSize: 7 });
    if (!missingRoot) await storage.createRoot();
    return { storage, cleanup: () => rm(dir, { recursive: true, force: true }) };
  },
  { chunkSize: 16 * 1024, pageSize: 7 },
);
