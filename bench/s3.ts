/**
 * Stowage's S3 provider against the raw AWS SDK (@aws-sdk/client-s3 + lib-storage Upload) and Apache
 * OpenDAL's Node binding, side by side in one run against one s3rver:
 *
 *   node --conditions=@stowage/source --import tsx bench/s3.ts [--repeats 3] [--only large,small,settings,stream]
 *
 * - 256 MiB put (from a file) and get, 2,000 puts of 4 KiB at concurrency 16, for each client;
 * - small puts under client settings (checksum mode, keep-alive, sockets, middleware cache, SDK
 *   retry), against s3rver and against a null server that answers at once (the client's own cost);
 * - a 1 GiB streamed put (unknown length) with Stowage's defaults, peak RSS against
 *   partSize × queueSize + 100 MiB.
 *
 * Each run is a child process (bench/s3-client.ts, bundled first with Stowage's sources the way a
 * built package ships them and run with plain node, so no run pays for a TypeScript loader):
 * timings are whole-process (spawn to exit) and in-process (the operation alone); peak RSS is the
 * child's maxRSS. Medians of the repeats are
 * printed as Markdown; raw numbers go to $TMPDIR/stowage-bench-s3.json. s3rver (a child process too)
 * stores into /dev/shm when it exists, so the disk does not set the pace; its CPU time per run is
 * reported to show when it is the bottleneck. Everything listens on 127.0.0.1.
 */
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, open, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { staticCredentials } from "../packages/auth/src/index.js";
import { createS3Storage } from "../packages/s3/src/index.js";
import { startS3rver } from "../packages/s3/test/support/s3rver.js";

const MiB = 1024 * 1024;
const args = process.argv.slice(2);
const repeats = Number(args[args.indexOf("--repeats") + 1] ?? 3) || 3;
const only = args.includes("--only") ? new Set(args[args.indexOf("--only") + 1]!.split(",")) : undefined;
const wants = (section: string) => only === undefined || only.has(section);
const clientSource = fileURLToPath(new URL("./s3-client.ts", import.meta.url));
// Inside packages/s3, so that the bundle resolves the AWS SDK (a dependency of packages/s3) as installed.
const bundleDir = fileURLToPath(new URL("../packages/s3/.bench/", import.meta.url));
const clientScript = join(bundleDir, "s3-client.mjs");
const scratch = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
// The SDK warns on Node 20 that releases after January 2027 need Node 22; noise in a benchmark.
const childEnv = { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true" };

interface RunResult {
  wallMs: number;
  opMs: number;
  setupMs: number;
  cpuMs: number;
  maxRssMiB: number;
  serverCpuMs: number;
  sockets: number;
}

/** CPU time (user + system) of a process, from /proc. */
function processCpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return Number.NaN;
  }
}

interface EsbuildLike {
  build(options: Record<string, unknown>): Promise<unknown>;
}

/**
 * Bundles the client with Stowage's TypeScript sources (as tsup builds the packages), leaving the
 * AWS SDK and opendal to be loaded from node_modules like any installed dependency. esbuild is the
 * one tsup (a root devDependency) uses.
 */
async function bundleClient(): Promise<void> {
  const requireHere = createRequire(import.meta.url);
  const esbuild = createRequire(requireHere.resolve("tsup"))("esbuild") as EsbuildLike;
  await mkdir(bundleDir, { recursive: true });
  await esbuild.build({
    entryPoints: [clientSource],
    outfile: clientScript,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    conditions: ["@stowage/source"],
    external: ["@aws-sdk/*", "opendal"],
    // Bundled CommonJS dependencies (undici) call require(); give the ES module one.
    banner: {
      js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);",
    },
    logLevel: "error",
  });
}

async function run(
  client: string,
  scenario: string,
  endpoint: string,
  settings: object,
  serverPid?: number,
): Promise<RunResult> {
  const serverBefore = serverPid === undefined ? 0 : processCpuMs(serverPid);
  const started = performance.now();
  const child = spawn(
    process.execPath,
    [clientScript, client, scenario, endpoint, JSON.stringify(settings)],
    { stdio: ["ignore", "pipe", "pipe"], env: childEnv },
  );
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
  const wallMs = performance.now() - started;
  if (code !== 0) throw new Error(`${client} ${scenario} failed (${code}): ${stderr.slice(-2000)}`);
  const result = JSON.parse(stdout.trim().split("\n").at(-1)!) as Omit<RunResult, "wallMs" | "serverCpuMs">;
  const serverCpuMs = serverPid === undefined ? Number.NaN : processCpuMs(serverPid) - serverBefore;
  return { ...result, wallMs: Math.round(wallMs), serverCpuMs: Math.round(serverCpuMs) };
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

function summarize(results: RunResult[]): RunResult {
  const keys = ["wallMs", "opMs", "setupMs", "cpuMs", "maxRssMiB", "serverCpuMs", "sockets"] as const;
  return Object.fromEntries(
    keys.map((k) => [k, Math.round(median(results.map((r) => r[k])))]),
  ) as unknown as RunResult;
}

const all: Record<string, RunResult[]> = {};
function record(label: string, result: RunResult) {
  all[label] = [...(all[label] ?? []), result];
  process.stderr.write(`${label}: ${JSON.stringify(result)}\n`);
}

/** A null S3: answers every request at once (PUT with the MD5 ETag), so only the client's cost is left. */
async function startNullServer(): Promise<{ endpoint: string; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    const hash = createHash("md5");
    req.on("data", (piece: Buffer) => hash.update(piece));
    req.on("end", () => {
      if (req.method === "GET" && req.url?.includes("list-type=2")) {
        const body =
          '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>bench</Name><IsTruncated>false</IsTruncated></ListBucketResult>';
        res.writeHead(200, { "content-type": "application/xml", "content-length": Buffer.byteLength(body) });
        res.end(body);
        return;
      }
      res.writeHead(200, { etag: `"${hash.digest("hex")}"`, "content-length": 0 });
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function writeSourceFile(path: string, size: number): Promise<void> {
  const handle = await open(path, "w");
  try {
    for (let written = 0; written < size; written += 16 * MiB)
      await handle.write(randomBytes(Math.min(16 * MiB, size - written)));
  } finally {
    await handle.close();
  }
}

const clients = ["stowage", "raw", "opendal"] as const;
const fmt = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const ratio = (a: number, b: number) => (a / b).toFixed(2);

const loadBefore = loadavg();
await bundleClient();
const server = await startS3rver(scratch);
const nullServer = await startNullServer();
const sourceFile = join(scratch, `stowage-bench-256m-${process.pid}.bin`);
const largeSize = 256 * MiB;
const lines: string[] = [];
try {
  const admin = createS3Storage({
    bucket: "bench",
    endpoint: server.endpoint,
    preset: "other",
    credentials: staticCredentials({ accessKeyId: "S3RVER", secretAccessKey: "S3RVER" }),
    createRoot: true,
  });
  await admin.createRoot();

  if (wants("large")) {
    await writeSourceFile(sourceFile, largeSize);
    const { createReadStream } = await import("node:fs");
    await admin.put("large/source", createReadStream(sourceFile, { highWaterMark: MiB }), {
      size: largeSize,
    });
    for (let round = 0; round < repeats; round++) {
      // Rotate the order so that no client always runs first (or last) in a round.
      const order = clients.map((_, i) => clients[(i + round) % clients.length]!);
      for (const client of order) {
        record(
          `put-large ${client}`,
          await run(client, "put-large", server.endpoint, { file: sourceFile, size: largeSize }, server.pid),
        );
      }
      for (const client of order) {
        record(
          `get-large ${client}`,
          await run(client, "get-large", server.endpoint, { key: "large/source" }, server.pid),
        );
      }
    }
    for (let round = 0; round < repeats; round++) {
      record(
        "get-large stowage verify=false",
        await run(
          "stowage",
          "get-large",
          server.endpoint,
          { key: "large/source", verify: false },
          server.pid,
        ),
      );
    }
  }

  if (wants("small")) {
    // One unmeasured round: s3rver creates the 2,000 files (and warms up) once; measured runs overwrite.
    for (const client of clients) await run(client, "small-puts", server.endpoint, {}, server.pid);
    for (let round = 0; round < repeats; round++) {
      const order = clients.map((_, i) => clients[(i + round) % clients.length]!);
      for (const client of order)
        record(`small-puts ${client}`, await run(client, "small-puts", server.endpoint, {}, server.pid));
    }
  }

  if (wants("settings")) {
    const variants: Array<[string, string, object]> = [
      ["raw: SDK defaults (WHEN_SUPPORTED, keep-alive, maxSockets 50, 3 attempts)", "raw", {}],
      ["raw: checksums WHEN_REQUIRED", "raw", { checksums: "when-required" }],
      ["raw: keep-alive off", "raw", { keepAlive: false }],
      ["raw: maxSockets 4", "raw", { limit: 4 }],
      ["raw: maxSockets 16", "raw", { limit: 16 }],
      ["raw: cacheMiddleware", "raw", { cacheMiddleware: true }],
      ["raw: maxAttempts 1 (no SDK retry)", "raw", { maxAttempts: 1 }],
      [
        "raw: WHEN_REQUIRED + cacheMiddleware + maxAttempts 1",
        "raw",
        { checksums: "when-required", cacheMiddleware: true, maxAttempts: 1 },
      ],
      ["stowage: concurrency 16 (as in the comparison)", "stowage", {}],
      ["stowage: concurrency 8 (the default)", "stowage", { limit: 8 }],
      ["stowage: concurrency 4", "stowage", { limit: 4 }],
      ["stowage: checksums when-supported", "stowage", { checksums: "when-supported" }],
      ["stowage: verify off (no MD5)", "stowage", { verify: false }],
      ["opendal", "opendal", {}],
      ["prototype (not shipped): SDK signer + node:http, no middleware", "direct", {}],
    ];
    for (const [target, endpoint, pid] of [
      ["null", nullServer.endpoint, undefined],
      ["s3rver", server.endpoint, server.pid],
    ] as const) {
      for (let round = 0; round < repeats; round++) {
        for (const [label, client, settings] of variants) {
          record(
            `settings ${target} ${label}`,
            await run(client, "small-puts", endpoint, { ...settings, prefix: "settings" }, pid),
          );
        }
      }
    }
  }

  if (wants("stream")) {
    const streamRuns = Math.min(repeats, 2);
    for (let round = 0; round < streamRuns; round++) {
      record("stream-1g stowage 8MiB×4", await run("stowage", "stream-1g", server.endpoint, {}, server.pid));
      record("stream-1g raw 8MiB×4", await run("raw", "stream-1g", server.endpoint, {}, server.pid));
      record(
        "stream-1g stowage 16MiB×4",
        await run(
          "stowage",
          "stream-1g",
          server.endpoint,
          { partSize: 16 * MiB, prefix: "stowage16" },
          server.pid,
        ),
      );
    }
  }
} finally {
  await nullServer.close();
  await server.stop();
  await rm(sourceFile, { force: true });
  await rm(bundleDir, { recursive: true, force: true });
}
const loadAfter = loadavg();

const s = (label: string) => summarize(all[label] ?? []);
lines.push(
  `Machine: ${cpus().length} × ${cpus()[0]?.model ?? "?"}, Node ${process.version}; load average before ${loadBefore.map((l) => l.toFixed(2)).join(" ")}, after ${loadAfter.map((l) => l.toFixed(2)).join(" ")}; ${repeats} repeats, medians.`,
);
if (all["put-large stowage"]) {
  lines.push(
    "",
    "| 256 MiB | client | whole process | operation | client CPU | peak RSS | s3rver CPU |",
    "|---|---|---|---|---|---|---|",
  );
  for (const scenario of ["put-large", "get-large"]) {
    for (const client of clients) {
      const r = s(`${scenario} ${client}`);
      lines.push(
        `| ${scenario} | ${client} | ${fmt(r.wallMs)} | ${fmt(r.opMs)} | ${fmt(r.cpuMs)} | ${r.maxRssMiB} MiB | ${fmt(r.serverCpuMs)} |`,
      );
    }
  }
  const v = s("get-large stowage verify=false");
  lines.push(
    `| get-large | stowage, verify: false | ${fmt(v.wallMs)} | ${fmt(v.opMs)} | ${fmt(v.cpuMs)} | ${v.maxRssMiB} MiB | ${fmt(v.serverCpuMs)} |`,
  );
}
if (all["small-puts stowage"]) {
  lines.push(
    "",
    "| 2,000 × 4 KiB, concurrency 16 | whole process | operation | client CPU | peak RSS | s3rver CPU | sockets |",
    "|---|---|---|---|---|---|---|",
  );
  for (const client of clients) {
    const r = s(`small-puts ${client}`);
    lines.push(
      `| ${client} | ${fmt(r.wallMs)} | ${fmt(r.opMs)} | ${fmt(r.cpuMs)} | ${r.maxRssMiB} MiB | ${fmt(r.serverCpuMs)} | ${r.sockets} |`,
    );
  }
}
if (all["put-large stowage"] || all["small-puts stowage"]) {
  lines.push(
    "",
    "| ratio (time; < 1 is faster) | Stowage / raw SDK, whole process | Stowage / raw SDK, operation | Stowage / OpenDAL, whole process | Stowage / OpenDAL, operation |",
    "|---|---|---|---|---|",
  );
  for (const scenario of ["put-large", "get-large", "small-puts"]) {
    if (!all[`${scenario} stowage`]) continue;
    const st = s(`${scenario} stowage`);
    const raw = s(`${scenario} raw`);
    const od = s(`${scenario} opendal`);
    lines.push(
      `| ${scenario} | ${ratio(st.wallMs, raw.wallMs)} | ${ratio(st.opMs, raw.opMs)} | ${ratio(st.wallMs, od.wallMs)} | ${ratio(st.opMs, od.opMs)} |`,
    );
  }
}
const settingLabels = Object.keys(all).filter((k) => k.startsWith("settings null "));
if (settingLabels.length > 0) {
  lines.push(
    "",
    "| small puts (2,000 × 4 KiB, concurrency 16) | null server: operation | null server: client CPU | s3rver: whole process | s3rver: operation | s3rver: client CPU | s3rver: server CPU | sockets |",
    "|---|---|---|---|---|---|---|---|",
  );
  for (const label of settingLabels) {
    const name = label.slice("settings null ".length);
    const n = s(label);
    const r = s(`settings s3rver ${name}`);
    lines.push(
      `| ${name} | ${fmt(n.opMs)} | ${fmt(n.cpuMs)} | ${fmt(r.wallMs)} | ${fmt(r.opMs)} | ${fmt(r.cpuMs)} | ${fmt(r.serverCpuMs)} | ${r.sockets} |`,
    );
  }
}
const streamLabels = Object.keys(all).filter((k) => k.startsWith("stream-1g "));
if (streamLabels.length > 0) {
  lines.push(
    "",
    "| 1 GiB streamed put (unknown length) | whole process | operation | peak RSS | bound (partSize × queueSize + 100 MiB) |",
    "|---|---|---|---|---|",
  );
  for (const label of streamLabels) {
    const r = s(label);
    const bound = label.includes("16MiB") ? 16 * 4 + 100 : 8 * 4 + 100;
    lines.push(
      `| ${label.slice("stream-1g ".length)} | ${fmt(r.wallMs)} | ${fmt(r.opMs)} | ${r.maxRssMiB} MiB | ${bound} MiB |`,
    );
  }
}
const report = join(tmpdir(), "stowage-bench-s3.json");
await writeFile(report, JSON.stringify({ loadBefore, loadAfter, repeats, runs: all }, null, 2));
process.stdout.write(`${lines.join("\n")}\n\nRaw runs: ${report}\n`);
// `pnpm bench s3` moves this into docs/benchmarks.md (section "s3-run"), next to the analysis.
await writeFile(
  new URL("../docs/benchmarks-s3-run.md", import.meta.url),
  `# s3: the latest \`pnpm bench s3\` run\n\nCommand: \`pnpm bench s3\` (runs \`bench/s3.ts --repeats 3\`); ${cpus().length} cores, load average before ${loadBefore.map((l) => l.toFixed(1)).join(" ")}; measured ${new Date().toISOString().slice(0, 10)}. Ratios are Stowage ÷ the other client's time (below 1 is faster).\n\n${lines.join("\n")}\n`,
);
