/**
 * WebDAV, side by side on one Apache 2.4 mod_dav_fs (started here, as in the tests): Stowage, the raw
 * `webdav` 5.11 client, OpenDAL 0.49.2 and the rclone client, each workload in a fresh process,
 * whole-process wall time and peak RSS (GNU time's %M), 3 repeats, medians. Workloads: a 256 MiB put
 * (local file → server) and get (server → local file), and 2,000 puts of 4 KiB at concurrency 16.
 * Stowage runs with atomicPut on (the default) and off, which measures what atomicPut costs.
 *
 * Run: node --conditions=@stowage/source --import tsx bench/webdav.ts
 * Writes docs/benchmarks-webdav.md; `pnpm bench webdav` moves it into docs/benchmarks.md.
 */
import { execFile, execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { build } from "tsup";
import {
  password,
  startApache,
  startRclone,
  type TestServer,
  username,
} from "../packages/webdav/test/support/servers.js";
import { machine, median } from "./report.js";
import { SMALL_CONCURRENCY, SMALL_COUNT, SMALL_SIZE, smallObject } from "./webdav-worker.js";

const BIG = 256 * 1024 * 1024;
const REPEATS = 5;
const clients = ["stowage", "stowage-direct", "undici", "raw", "opendal", "rclone", "rclone-single"] as const;
type Client = (typeof clients)[number];
type Op = "put" | "get" | "small" | "start";
type Server = "apache" | "apache-tmpfs" | "rclone-serve";
const label: Record<Client, string> = {
  stowage: "Stowage (atomicPut on, default)",
  "stowage-direct": "Stowage (atomicPut off)",
  undici: "bare undici request, piped (Node's floor; Stowage's HTTP library)",
  raw: "`webdav` 5.11 client",
  opendal: "OpenDAL 0.49.2",
  rclone: "rclone 1.60 client",
  "rclone-single": "rclone 1.60 client, one stream (`--multi-thread-streams 0`)",
};

/** Which clients run which workload, on which server. */
function plan(server: Server, op: Op): Client[] {
  // rclone serve is there to measure what atomicPut's temporary name and MOVE cost, since Apache's
  // mod_dav_fs needs neither (its own PUT is atomic).
  if (server === "rclone-serve") return op === "put" || op === "small" ? ["stowage", "stowage-direct"] : [];
  // Apache with its folder on tmpfs takes the server's disk out of the small puts, leaving the
  // clients' own cost (rclone, at a minute a run, is left out there).
  if (server === "apache-tmpfs") return op === "small" ? ["stowage", "raw", "opendal"] : [];
  if (op === "get") return ["stowage", "undici", "raw", "opendal", "rclone", "rclone-single"];
  if (op === "put") return ["stowage", "stowage-direct", "undici", "raw", "opendal", "rclone"];
  return ["stowage", "stowage-direct", "raw", "opendal", "rclone"];
}

interface Measure {
  seconds: number;
  /** User + system CPU time: the client's own cost, steadier than wall time on a shared machine. */
  cpuSeconds: number;
  rssMiB: number;
}

const sha256File = (path: string) =>
  new Promise<string>((resolve, reject) => {
    const hash = createHash("sha256");
    createReadStream(path)
      .on("data", (chunk) => hash.update(chunk))
      .on("end", () => resolve(hash.digest("hex")))
      .on("error", reject);
  });

/** Runs a command under GNU time; resolves with its wall time (measured here) and peak RSS. */
function measured(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeFile: string,
): Promise<Measure> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    execFile(
      "/usr/bin/time",
      ["-f", "%M %U %S", "-o", timeFile, command, ...args],
      { env, maxBuffer: 16 * 1024 * 1024 },
      async (err, _stdout, stderr) => {
        const seconds = (performance.now() - started) / 1000;
        if (err) return reject(new Error(`${command} ${args.join(" ")} failed: ${stderr}`));
        const [kib, user, system] = (await readFile(timeFile, "utf8"))
          .trim()
          .split("\n")
          .at(-1)!
          .split(" ")
          .map(Number);
        resolve({ seconds, cpuSeconds: user! + system!, rssMiB: kib! / 1024 });
      },
    );
  });
}

/**
 * Bundles the worker (Stowage from source included) into one JavaScript file, so that every Node
 * client runs as plain compiled JavaScript, as it would in production: running TypeScript through
 * tsx costs Stowage about 0.3 s of start-up that its built package does not have. The competitors
 * (`webdav`, OpenDAL) are loaded from node_modules as published.
 */
async function bundleWorker(scratch: string): Promise<string> {
  const outDir = join(scratch, "worker");
  await build({
    entry: { "webdav-worker": new URL("./webdav-worker.ts", import.meta.url).pathname },
    outDir,
    format: "esm",
    platform: "node",
    target: "node20",
    noExternal: [/^(?!opendal$)/],
    external: ["opendal"],
    // Bundled CommonJS dependencies (undici) require Node's built-in modules.
    banner: {
      js: 'import { createRequire as bundleRequire } from "node:module"; const require = bundleRequire(import.meta.url);',
    },
    esbuildOptions(options) {
      options.conditions = ["@stowage/source"];
    },
    silent: true,
  });
  return join(outDir, "webdav-worker.js");
}

async function main(): Promise<void> {
  const loadBefore = loadavg()[0]!;
  // Apache and rclone serve keep their folders on disk, as a real server does (and as issue 6
  // measured); a second Apache keeps its folder on tmpfs. The local files are on tmpfs, so that the
  // clients' side of the disk adds no noise.
  const disk = tmpdir();
  const shm = existsSync("/dev/shm") ? "/dev/shm" : disk;
  const startIn = async (folder: string, start: () => Promise<TestServer>): Promise<TestServer> => {
    process.env.TMPDIR = folder;
    try {
      return await start();
    } finally {
      process.env.TMPDIR = disk;
    }
  };
  const servers: Record<Server, TestServer> = {
    apache: await startIn(disk, startApache),
    "apache-tmpfs": await startIn(shm, startApache),
    "rclone-serve": await startIn(disk, startRclone),
  };
  const scratch = await mkdtemp(join(shm, "stowage-bench-webdav-"));
  const obscured = execFileSync("rclone", ["obscure", password], { encoding: "utf8" }).trim();
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    BENCH_ROOT_PACKAGE: new URL("../package.json", import.meta.url).pathname,
    BENCH_CORE_PACKAGE: new URL("../packages/core/package.json", import.meta.url).pathname,
    BENCH_WEBDAV_PACKAGE: new URL("../packages/webdav/package.json", import.meta.url).pathname,
    BENCH_USER: username,
    BENCH_PASS: password,
    RCLONE_CONFIG: join(scratch, "no-such.conf"),
    RCLONE_CONFIG_DAV_TYPE: "webdav",
    RCLONE_CONFIG_DAV_URL: servers.apache.url,
    RCLONE_CONFIG_DAV_VENDOR: "other",
    RCLONE_CONFIG_DAV_USER: username,
    RCLONE_CONFIG_DAV_PASS: obscured,
  };
  const authorization = `Basic ${Buffer.from(`${username}:${password}`).toString("base64")}`;
  const dav = async (server: Server, method: string, path: string) => {
    const response = await fetch(`${servers[server].url}/${path}`, { method, headers: { authorization } });
    await response.arrayBuffer();
    if (response.status >= 300 && response.status !== 404)
      throw new Error(`${method} ${path}: ${response.status}`);
  };
  const node = [process.execPath, await bundleWorker(scratch)];
  const timeFile = join(scratch, "time.txt");
  try {
    const source = join(scratch, "source.bin");
    await writeFile(source, randomBytes(BIG));
    const sourceHash = await sha256File(source);
    const smallDir = join(scratch, "small");
    await mkdir(smallDir);
    for (let i = 0; i < SMALL_COUNT; i++) await writeFile(join(smallDir, `${i}.bin`), smallObject(i));
    // The object every get reads, placed on Apache's disk directly.
    await mkdir(join(servers.apache.folder, "get"));
    await copyFile(source, join(servers.apache.folder, "get", "big.bin"));

    const results = new Map<string, Measure[]>();
    const runOnce = async (server: Server, client: Client, op: Op, round: number): Promise<void> => {
      const folder = `run-${client}-${op}-${round}`;
      // Made over WebDAV, so that rclone serve's directory cache knows them.
      await dav(server, "MKCOL", `${folder}/`);
      await dav(server, "MKCOL", `${folder}/small/`);
      const out = join(scratch, "out.bin");
      await rm(out, { force: true });
      const remote = op === "get" ? "get" : folder;
      let m: Measure;
      if (client === "rclone" || client === "rclone-single") {
        const args =
          op === "put"
            ? ["copyto", source, `dav:${remote}/big.bin`]
            : op === "get"
              ? [
                  "copyto",
                  `dav:${remote}/big.bin`,
                  out,
                  ...(client === "rclone-single" ? ["--multi-thread-streams", "0"] : []),
                ]
              : op === "small"
                ? [
                    "copy",
                    smallDir,
                    `dav:${remote}/small`,
                    "--transfers",
                    String(SMALL_CONCURRENCY),
                    "--checkers",
                    String(SMALL_CONCURRENCY),
                  ]
                : ["version"];
        m = await measured("rclone", args, env, timeFile);
      } else {
        const local = op === "put" ? source : out;
        m = await measured(
          node[0]!,
          [...node.slice(1), client, op, servers[server].url, remote, local],
          env,
          timeFile,
        );
      }
      // Every run is checked: the same bytes arrived.
      const stored = join(servers[server].folder, folder);
      if (op === "put") {
        if ((await sha256File(join(stored, "big.bin"))) !== sourceHash)
          throw new Error(`${client} put stored different bytes`);
      } else if (op === "get") {
        if ((await sha256File(out)) !== sourceHash) throw new Error(`${client} get returned different bytes`);
      } else if (op === "small") {
        const names = (await readdir(join(stored, "small"))).filter((n) => n.endsWith(".bin"));
        if (names.length !== SMALL_COUNT) throw new Error(`${client} small: ${names.length} objects landed`);
        if (!(await readFile(join(stored, "small", "1234.bin"))).equals(smallObject(1234))) {
          throw new Error(`${client} small: object 1234 differs`);
        }
      }
      const name = `${server}/${client}/${op}`;
      results.set(name, [...(results.get(name) ?? []), m]);
      console.log(
        `${name}: ${m.seconds.toFixed(2)} s, ${m.cpuSeconds.toFixed(2)} s CPU, ${m.rssMiB.toFixed(0)} MiB`,
      );
      await dav(server, "DELETE", `${folder}/`);
    };

    const ops: Op[] = ["start", "put", "get", "small"];
    for (let round = 0; round < REPEATS; round++) {
      for (const server of ["apache", "apache-tmpfs", "rclone-serve"] as const) {
        for (const op of ops) for (const client of plan(server, op)) await runOnce(server, client, op, round);
      }
    }
    await writeReport(results, [loadBefore, loadavg()[0]!]);
  } finally {
    await rm(scratch, { recursive: true, force: true });
    await Promise.all(Object.values(servers).map((server) => server.stop()));
  }
}

async function writeReport(results: Map<string, Measure[]>, load: number[]): Promise<void> {
  const med = (client: Client, op: Op, server: Server = "apache") => {
    const runs = results.get(`${server}/${client}/${op}`);
    if (!runs) return undefined;
    return {
      seconds: median(runs.map((r) => r.seconds)),
      cpuSeconds: median(runs.map((r) => r.cpuSeconds)),
      rssMiB: median(runs.map((r) => r.rssMiB)),
      runs,
    };
  };
  const s = (seconds: number) => `${seconds.toFixed(2)} s`;
  const speed = (op: Op, other: Client, server: Server = "apache") =>
    med(other, op, server)!.seconds / med("stowage", op, server)!.seconds;
  const rows = (op: Op, server: Server = "apache") =>
    plan(server, op)
      .map((c) => {
        const m = med(c, op, server)!;
        const runs = m.runs.map((r) => r.seconds.toFixed(2)).join(" / ");
        return `| ${label[c]} | ${s(m.seconds)} (${runs}) | ${speed(op, c, server).toFixed(2)}× | ${s(m.cpuSeconds)} | ${m.rssMiB.toFixed(0)} MiB |`;
      })
      .join("\n");
  const table = (title: string, op: Op, server: Server = "apache") => `### ${title}

| client | whole process, median (runs) | Stowage's speed vs this client | CPU (user + system), median | peak RSS, median |
|---|---|---|---|---|
${rows(op, server)}
`;
  const atomic = (server: Server, op: Op) => {
    const on = med("stowage", op, server)!;
    const off = med("stowage-direct", op, server)!;
    const cost = on.seconds - off.seconds;
    return `| ${server === "apache" ? "Apache mod_dav_fs" : "rclone serve"} | ${op === "put" ? "256 MiB put" : `${SMALL_COUNT} × 4 KiB puts`} | ${s(on.seconds)} | ${s(off.seconds)} | ${cost >= 0 ? "+" : "−"}${s(Math.abs(cost))} (${atomicDelta(server, op)}) |`;
  };
  const start = med("stowage", "start")!.seconds;
  const nodeCpu = (["stowage", "undici", "raw"] as const).map((c) => med(c, "get")!.cpuSeconds);
  const nodeGetCpu = `${Math.min(...nodeCpu).toFixed(2)}–${s(Math.max(...nodeCpu))}`;
  const atomicDelta = (server: Server, op: Op) => {
    const change = med("stowage", op, server)!.seconds / med("stowage-direct", op, server)!.seconds - 1;
    return `${change >= 0 ? "+" : "−"}${Math.abs(change * 100).toFixed(0)} %`;
  };
  const markdown = `## webdav: Stowage, the \`webdav\` client, OpenDAL and rclone on Apache mod_dav_fs

Command: \`node --conditions=@stowage/source --import tsx bench/webdav.ts\` (starts its own Apache 2.4
mod_dav_fs and \`rclone serve webdav\` on 127.0.0.1 with basic auth, as the tests do). ${REPEATS} runs of each
workload, medians; every run is a fresh process, timed from spawn to exit (start-up included, since a
backup job pays it too); peak RSS is GNU time's maximum resident set. The Node clients run as one
worker script bundled by tsup (Stowage from its TypeScript source, as its built package would run)
under plain \`node\`; the \`webdav\` client and OpenDAL load from node_modules as published; rclone is a
Go binary. Every run's bytes are checked (SHA-256 of the stored or fetched file; the count and a
sample of the small objects). "Stowage's speed" = the client's median time ÷ Stowage's (above 1.00×,
Stowage is faster). CPU is the process's user + system time: on a shared machine it tells a client's
own cost more steadily than wall time.

Workloads: a 256 MiB put (local file → server; Stowage and the \`webdav\` client send Content-Length,
the latter by a hand-set header since 5.11 drops it for streams; OpenDAL's WebDAV writer takes the
object in one buffer), a 256 MiB get (server → local file), and ${SMALL_COUNT} puts of ${SMALL_SIZE / 1024} KiB at
concurrency ${SMALL_CONCURRENCY} into an existing folder (rclone: \`rclone copy\` of ${SMALL_COUNT} local files with
\`--transfers ${SMALL_CONCURRENCY}\`). "Start-up" is loading the client and opening it, with no request: the fixed
cost inside every other figure (Stowage: ${s(start)}).

Machine: ${machine()}; measured ${new Date().toISOString().slice(0, 10)}. The servers keep their folders on
disk, as issue 6 measured, except the one table marked tmpfs; the clients' local files are on tmpfs
(/dev/shm). Other work shared the machine (the 1-minute load average was
${load.map((l) => l.toFixed(1)).join(" at the start and ")} at the end), so single runs vary: compare medians.

${table("256 MiB put", "put")}
${table("256 MiB get", "get")}
${table(`${SMALL_COUNT} puts of 4 KiB, concurrency ${SMALL_CONCURRENCY}`, "small")}
${table(`${SMALL_COUNT} puts of 4 KiB, concurrency ${SMALL_CONCURRENCY}, Apache's folder on tmpfs`, "small", "apache-tmpfs")}
${table("Start-up only", "start")}
### What atomicPut costs

With atomicPut (the default), Stowage uploads to a temporary name and MOVEs it into place, except on
Apache mod_dav_fs, whose own PUT already writes a hidden temporary file and renames it (Stowage
recognises it by its property namespace and sends one PUT). rclone serve writes in place, so there
atomicPut costs the MOVE.

| server | workload | atomicPut on | atomicPut off | cost |
|---|---|---|---|---|
${atomic("apache", "put")}
${atomic("apache", "small")}
${atomic("rclone-serve", "put")}
${atomic("rclone-serve", "small")}

### Reading the figures

- Large transfers against the \`webdav\` client: ${speed("put", "raw").toFixed(2)}× on the put and
  ${speed("get", "raw").toFixed(2)}× on the get by wall time (target ≥ 0.95×); by CPU, Stowage spends
  ${s(med("stowage", "put")!.cpuSeconds)} / ${s(med("stowage", "get")!.cpuSeconds)} (put / get) against its ${s(med("raw", "put")!.cpuSeconds)} / ${s(med("raw", "get")!.cpuSeconds)}. Peak RSS stays
  bounded by a few buffers whatever the size (OpenDAL holds the whole object on a put:
  ${med("opendal", "put")!.rssMiB.toFixed(0)} MiB). Stowage runs on undici: a bare undici request piped to or from the file
  takes ${s(med("undici", "put")!.seconds)} / ${s(med("undici", "get")!.seconds)} (CPU ${s(med("undici", "put")!.cpuSeconds)} / ${s(med("undici", "get")!.cpuSeconds)}); the \`webdav\` client runs on Node's http module.
- Noise: on Apache, atomicPut on and off send the same requests (one PUT per object, since mod_dav_fs's
  PUT is atomic), so the difference between those two rows
  (${atomicDelta("apache", "put")} on the large put, ${atomicDelta("apache", "small")} on the small ones) is this shared machine's run-to-run
  noise, not a cost.
- rclone's get is ahead (${s(med("rclone", "get")!.seconds)} against Stowage's ${s(med("stowage", "get")!.seconds)}), and stays ahead with one
  stream (${s(med("rclone-single", "get")!.seconds)}), so its parallel ranged GETs are not the reason: Go moves the
  256 MiB from socket to file with ${s(med("rclone-single", "get")!.cpuSeconds)} of CPU against ${nodeGetCpu} for the Node clients
  (each 16–64 KiB piece crosses streams, promises and the thread pool's file writes), and starts in
  ${s(med("rclone", "start")!.seconds)} against ${s(start)}.
- Small puts, server on disk: Stowage against OpenDAL ${speed("small", "opendal").toFixed(2)}×, against rclone
  ${speed("small", "rclone").toFixed(2)}×, against the \`webdav\` client ${speed("small", "raw").toFixed(2)}×. Stowage sends one PUT per object on
  Apache; OpenDAL sends a PROPFIND of the folder before each PUT; rclone checks each file before and
  after its upload. With the server on tmpfs, Stowage against OpenDAL is
  ${speed("small", "opendal", "apache-tmpfs").toFixed(2)}× (the \`webdav\` client ${speed("small", "raw", "apache-tmpfs").toFixed(2)}×): once the server's disk is out, each
  request's cost is the client's, and Node makes every socket write on its one event-loop thread (a
  CPU profile of Stowage's run shows about 0.2 ms per write on loopback under this load, where the
  kernel also runs the server's side of the TCP exchange), while OpenDAL's runtime spreads them over
  both cores.
`;
  await writeFile(new URL("../docs/benchmarks-webdav.md", import.meta.url), `${markdown.trim()}\n`);
  console.log(markdown);
}

await main();
