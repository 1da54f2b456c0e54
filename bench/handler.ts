/**
 * Refresh throughput and latency of @stowage/handler on loopback, for the cached path and the
 * provider-call path, on SQLite and PostgreSQL. Writes docs/benchmarks-handler.md; `pnpm bench handler` moves it into docs/benchmarks.md.
 *
 *   node --conditions=@stowage/source --import tsx bench/handler.ts
 *
 * The handler and the provider emulator run in a child process (bench/handler-server.ts); this process
 * only sends requests: CONCURRENCY at a time, over keep-alive connections, each with the X-AuthID
 * header exactly as Duplicati sends it, cycling through AUTHIDS AuthIDs.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { Agent, request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { startPostgres } from "../packages/handler/test/support/postgres.js";
import { machine, median } from "./report.js";

const CONCURRENCY = 16;
const AUTHIDS = 100;
const REQUESTS = { cache: 5_000, provider: 1_500 } as const;
const WARMUP = 200;
// Each cell is measured this many times, each time in a fresh server process; the table shows medians.
const RUNS = 3;

type Path = keyof typeof REQUESTS;

interface Run {
  throughput: number;
  p50: number;
  p99: number;
}

interface Result {
  store: string;
  path: Path;
  runs: Run[];
}

async function startServer(
  store: string,
  path: Path,
): Promise<{ url: string; authIds: string[]; stop(): Promise<void> }> {
  const child = spawn(
    process.execPath,
    [
      "--conditions=@stowage/source",
      "--import",
      "tsx",
      new URL("./handler-server.ts", import.meta.url).pathname,
    ],
    {
      env: { ...process.env, STORE: store, MODE: path, AUTHIDS: String(AUTHIDS) },
      stdio: ["pipe", "pipe", "inherit"],
    },
  );
  const lines = createInterface({ input: child.stdout });
  // A server that dies before it is ready must fail the bench, not leave it waiting for a line.
  const exited = once(child, "exit").then(([code]) => {
    throw new Error(`bench/handler-server.ts exited with ${code} before it was ready`);
  });
  const [first] = (await Promise.race([once(lines, "line"), exited])) as [string];
  exited.catch(() => {});
  const { url, authIds } = JSON.parse(first) as { url: string; authIds: string[] };
  return {
    url,
    authIds,
    async stop() {
      child.stdin.end();
      await once(child, "exit");
    },
  };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

// node:http rather than fetch: the client must cost less than the server it measures.
const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });

function refresh(url: string, authId: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}/refresh`, { agent, headers: { "X-AuthID": authId } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => {
        if (res.statusCode === 200) resolve();
        else reject(new Error(`refresh answered ${res.statusCode}: ${Buffer.concat(chunks).toString()}`));
      });
    });
    req.on("error", reject);
    req.end();
  });
}

async function load(
  url: string,
  authIds: string[],
  requests: number,
): Promise<{ seconds: number; latencies: number[] }> {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    while (next < requests) {
      const i = next++;
      const sent = performance.now();
      await refresh(url, authIds[i % authIds.length]!);
      latencies.push(performance.now() - sent);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return { seconds: (performance.now() - started) / 1000, latencies };
}

async function measure(store: string, path: Path): Promise<Run> {
  const server = await startServer(store, path);
  try {
    await load(server.url, server.authIds, WARMUP);
    const { seconds, latencies } = await load(server.url, server.authIds, REQUESTS[path]);
    latencies.sort((a, b) => a - b);
    return {
      throughput: REQUESTS[path] / seconds,
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
    };
  } finally {
    await server.stop();
  }
}

const cell = (runs: Run[], field: keyof Run) => median(runs.map((run) => run[field]));

const dir = mkdtempSync(join(tmpdir(), "stowage-bench-handler-"));
const postgres = await startPostgres({ durable: true });
const results: Result[] = [];
try {
  let n = 0;
  for (const path of ["cache", "provider"] as const) {
    for (const [name, store] of [
      ["SQLite", () => `sqlite:${join(dir, `vault-${n++}.db`)}`],
      ["PostgreSQL", () => postgres.url],
    ] as const) {
      const runs: Run[] = [];
      for (let run = 0; run < RUNS; run++) runs.push(await measure(store(), path));
      results.push({ store: name, path, runs });
      const shown = runs.map(
        (r) => `${Math.round(r.throughput)} req/s (p50 ${r.p50.toFixed(2)}, p99 ${r.p99.toFixed(2)} ms)`,
      );
      console.log(`${name.padEnd(10)} ${path.padEnd(8)} ${shown.join("; ")}`);
    }
  }
} finally {
  agent.destroy();
  await postgres.stop();
  rmSync(dir, { recursive: true, force: true });
}

const rows = results.map((r) => {
  const throughputs = r.runs.map((run) => Math.round(run.throughput));
  return `| ${r.store} | ${r.path === "cache" ? "cached token" : "provider call"} | ${REQUESTS[r.path]} | ${Math.round(cell(r.runs, "throughput"))} (${Math.min(...throughputs)}–${Math.max(...throughputs)}) | ${cell(r.runs, "p50").toFixed(2)} ms | ${cell(r.runs, "p99").toFixed(2)} ms |`;
});
const markdown = `# handler: /refresh throughput and latency on loopback

Command: \`node --conditions=@stowage/source --import tsx bench/handler.ts\` — the handler and the OAuth
provider emulator in one child process, the load from another: ${CONCURRENCY} requests in flight over
keep-alive connections, each \`GET /refresh\` with \`X-AuthID\` as Duplicati sends it, cycling through
${AUTHIDS} AuthIDs made through the real sign-in flow; ${WARMUP} warm-up requests first. Each row is the
median of ${RUNS} runs, each in a fresh server process (the range of throughputs in brackets). *Cached token*: the
record is read and its cached access token decrypted. *Provider call*: the handler's clock moves one hour
per reading, so every refresh calls the provider's token endpoint (in-process emulator, rotating refresh
tokens) and writes the record (new sealed refresh and access tokens) before answering. SQLite with WAL
and \`synchronous = FULL\`; PostgreSQL 15 on the same machine with its default durability (fsync on).
Client, server and PostgreSQL share the machine's cores: compare the rows with each other, not with another
machine.

Machine: ${machine()}; measured ${new Date().toISOString().slice(0, 10)}.

| store | path | requests per run | throughput (req/s) | p50 | p99 |
|---|---|---|---|---|---|
${rows.join("\n")}
`;
writeFileSync(new URL("../docs/benchmarks-handler.md", import.meta.url), markdown);
console.log("wrote docs/benchmarks-handler.md");
