import { readdirSync } from "node:fs";
import { defineConfig } from "vitest/config";

// Tests import workspace packages from source through the "@stowage/source" export condition,
// so `pnpm test` needs no build first.
const conditions = ["@stowage/source", "module", "node", "import", "default"];
const packages = readdirSync(new URL("./packages", import.meta.url));

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions, externalConditions: conditions } },
  test: {
    testTimeout: 30_000,
    // The conformance suite collects garbage before sampling memory, to measure what is really held.
    execArgv: ["--expose-gc"],
    hookTimeout: 60_000,
    projects: packages.map((name) => ({
      extends: true,
      test: { name, root: `packages/${name}`, include: ["test/**/*.test.ts"] },
    })),
  },
});
