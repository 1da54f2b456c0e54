import { randomUUID } from "node:crypto";
import { createMemoryStorage, MemoryVolume } from "@stowage/core";
import { describeStorageConformance } from "@stowage/core/conformance";

const volume = new MemoryVolume();

describeStorageConformance(
  "memory",
  async ({ missingRoot }) => {
    const storage = createMemoryStorage({ root: `t/${randomUUID()}`, volume, pageSize: 7 });
    if (!missingRoot) await storage.createRoot();
    return storage;
  },
  { chunkSize: 16 * 1024, pageSize: 7, memoryBudget: false },
);
