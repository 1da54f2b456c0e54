import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import os from "node:os";

const file = new URL("../docs/benchmarks.md", import.meta.url);

const header = `# Benchmarks

Every figure here was written by \`pnpm bench\` (or the command named in its section) on the machine
described in the section, side by side in one run: compare the ratios, not the absolute times.
Sections are replaced in place when their benchmark runs again.
`;

/** The machine a figure was measured on, in one line. */
export function machine(): string {
  const cpu = os.cpus()[0]?.model ?? "unknown CPU";
  return `${os.cpus().length} × ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${os.platform()} ${os.release()}`;
}

/** Replaces (or appends) the section `name` of docs/benchmarks.md. */
export async function writeSection(name: string, markdown: string): Promise<void> {
  const start = `<!-- bench:${name} -->`;
  const end = `<!-- /bench:${name} -->`;
  let text = existsSync(file) ? await readFile(file, "utf8") : header;
  const block = `${start}\n${markdown.trim()}\n${end}`;
  const from = text.indexOf(start);
  const to = text.indexOf(end);
  text =
    from >= 0 && to > from
      ? text.slice(0, from) + block + text.slice(to + end.length)
      : `${text.trimEnd()}\n\n${block}\n`;
  await writeFile(file, text);
}

/** The median of some numbers. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Runs a bench worker in a fresh Node process and returns its JSON result line. */
export function runWorker<T>(script: string, args: string[]): T {
  const out = execFileSync(
    process.execPath,
    ["--conditions=@stowage/source", "--import", "tsx", new URL(script, import.meta.url).pathname, ...args],
    { encoding: "utf8", maxBuffer: 16 * 1024 * 1024, stdio: ["ignore", "pipe", "inherit"] },
  );
  const line = out.trim().split("\n").at(-1)!;
  return JSON.parse(line) as T;
}
