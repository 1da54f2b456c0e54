import { readdirSync } from "node:fs";
import { defaultClientConditions, defaultServerConditions } from "vite";
import { defineConfig } from "vitest/config";

// Tests import workspace packages from source through the "@stowage/source" export condition,
// so `pnpm test` needs no build first.
// Vitest hands the server conditions to its workers as --conditions, so they stay Vite's defaults plus
// ours: forcing "import" there would make CommonJS packages (pg) require their ESM halves.
const source = "@stowage/source";
const packages = readdirSync(new URL("./packages", import.meta.url));
// .ci/run asks for a JSON report (to print "N passed, N failed") through the environment, so that it
// runs the README's own command, `pnpm test`, unchanged.
const jsonReport = process.env.STOWAGE_TEST_REPORT;

export default defineConfig({
  resolve: { conditions: [source, ...defaultClientConditions] },
  ssr: {
    resolve: {
      // "module" would select bundler-only builds (the AWS SDK's dist-es) that Node cannot load.
      conditions: [source, ...defaultServerConditions.filter((condition) => condition !== "module")],
      externalConditions: [source],
    },
  },
  test: {
    ...(jsonReport ? { reporters: ["default", "json"], outputFile: { json: jsonReport } } : {}),
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
