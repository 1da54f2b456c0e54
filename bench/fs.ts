/**
 * fs provider: a 1 GiB streamed put and get through Stowage, next to plain Node streams doing the same
 * work (write a generated stream to a file; read a file into a hash), each in a fresh process.
 * Acceptance (issue 2): Stowage's peak RSS stays under 150 MiB.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { machine, median, runWorker, writeSection } from "./report.js";

interface Result {
  ms: number;
  maxRssMiB: number;
  sha256: string;
}

export async function benchFs(options: { sizeMiB?: number; repeats?: number } = {}): Promise<void> {
  const size = (options.sizeMiB ?? 1024) * 1024 * 1024;
  const repeats = options.repeats ?? 3;
  const rows: string[] = [];
  const results: Record<string, Result[]> = {};
  for (let r = 0; r < repeats; r++) {
    for (const client of ["raw", "stowage"] as const) {
      const folder = await mkdtemp(join(tmpdir(), "stowage-bench-fs-"));
      try {
        for (const op of ["put", "get"] as const) {
          const result = runWorker<Result>("./fs-worker.ts", [client, op, folder, String(size)]);
          const name = `${client} ${op}`;
          results[name] = [...(results[name] ?? []), result];
        }
      } finally {
        await rm(folder, { recursive: true, force: true });
      }
    }
  }
  for (const op of ["put", "get"] as const) {
    const raw = results[`raw ${op}`]!;
    const ours = results[`stowage ${op}`]!;
    if (new Set([...raw, ...ours].map((r) => r.sha256)).size !== 1)
      throw new Error(`${op}: the bytes differ between runs`);
    const rawMs = median(raw.map((r) => r.ms));
    const oursMs = median(ours.map((r) => r.ms));
    const rss = Math.max(...ours.map((r) => r.maxRssMiB));
    rows.push(
      `| ${op} | ${(oursMs / 1000).toFixed(2)} s | ${(rawMs / 1000).toFixed(2)} s | ${(rawMs / oursMs).toFixed(2)}× | ${rss.toFixed(0)} MiB | ${Math.max(...raw.map((r) => r.maxRssMiB)).toFixed(0)} MiB |`,
    );
  }
  await writeSection(
    "fs",
    `## fs: ${size / 2 ** 20} MiB streamed put and get

Command: \`pnpm bench fs\` — ${repeats} runs each, medians; each transfer in a fresh process; peak RSS is the
process's maximum resident set (\`process.resourceUsage().maxRSS\`). "Plain Node" is a generated stream
piped to \`fs.createWriteStream\` (put) and \`fs.createReadStream\` into a SHA-256 (get); Stowage does the same
through \`createFsStorage\` (temporary file, fsync, rename; size verified). Speed ratio = plain time ÷ Stowage
time (1.00× = as fast as plain Node). Bound to meet: Stowage's peak RSS under 150 MiB.

Machine: ${machine()}; measured ${new Date().toISOString().slice(0, 10)}.

| op | Stowage | plain Node | speed ratio | Stowage peak RSS | plain peak RSS |
|---|---|---|---|---|---|
${rows.join("\n")}
`,
  );
  console.log(rows.join("\n"));
}
