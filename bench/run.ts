/**
 * `pnpm bench [name…]`: runs the named benchmarks (all when none is named), one after another so that
 * they do not share the two cores, and writes each one's section of docs/benchmarks.md.
 *
 * Each provider benchmark is a script of its own (bench/<name>.ts, runnable alone with the command in
 * its header) that writes its report to docs/benchmarks-<name>.md; this runner moves that report into
 * docs/benchmarks.md.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile, rm } from "node:fs/promises";
import { benchFs } from "./fs.js";
import { writeSection } from "./report.js";

function runScript(name: string, args: string[], reportName = name): () => Promise<void> {
  return async () => {
    const script = new URL(`./${name}.ts`, import.meta.url).pathname;
    const result = spawnSync(
      process.execPath,
      ["--conditions=@stowage/source", "--import", "tsx", script, ...args],
      {
        stdio: "inherit",
      },
    );
    if (result.status !== 0)
      throw new Error(`bench/${name}.ts exited with ${result.status ?? result.signal}`);
    const report = new URL(`../docs/benchmarks-${reportName}.md`, import.meta.url);
    if (!existsSync(report)) throw new Error(`bench/${name}.ts wrote no docs/benchmarks-${reportName}.md`);
    const markdown = (await readFile(report, "utf8")).replace(/^# /m, "## ");
    await writeSection(reportName, markdown);
    await rm(report);
  };
}

const benches: Record<string, () => Promise<void>> = {
  fs: () => benchFs(),
  s3: runScript("s3", ["--repeats", "3"], "s3-run"),
  webdav: runScript("webdav", []),
  onedrive: runScript("onedrive", []),
  gdrive: runScript("gdrive", []),
  handler: runScript("handler", []),
};

const names = process.argv.slice(2);
for (const name of names.length ? names : Object.keys(benches)) {
  const bench = benches[name];
  if (!bench) {
    console.error(`unknown benchmark '${name}'; known: ${Object.keys(benches).join(", ")}`);
    process.exit(2);
  }
  console.log(`== ${name}`);
  await bench();
}
