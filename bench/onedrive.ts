/**
 * OneDrive through the Graph emulator (in its own child process): Stowage against the plainest
 * correct client, a sequential-fragment uploader and redirect-following downloader written on undici
 * in bench/onedrive-worker.ts. Each workload runs in a fresh process (whole-process wall time and
 * peak RSS from GNU time's %M), 5 repeats, medians. Workloads: a 256 MiB put (local file → drive, in
 * 10 MiB fragments) and a 256 MiB get (drive → local file).
 *
 * Run: node --conditions=@stowage/source --import tsx bench/onedrive.ts
 * Writes docs/benchmarks-onedrive.md; `pnpm bench onedrive` moves it into docs/benchmarks.md.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { build } from "tsup";
import { TOKEN } from "./onedrive-worker.js";
import { machine, median } from "./report.js";

const BIG = 256 * 1024 * 1024;
const REPEATS = 7;
const clients = ["stowage", "stowage-noverify", "stowage-spool", "plain"] as const;
type Client = (typeof clients)[number];
type Op = "put" | "get";
/** The clients each workload runs: spoolDir only concerns puts. */
const clientsFor = (op: Op): readonly Client[] =>
  op === "put" ? clients : clients.filter((c) => c !== "stowage-spool");
const label: Record<Client, string> = {
  stowage: "Stowage (default: quickXorHash verified)",
  "stowage-noverify": "Stowage, `verify: false`",
  "stowage-spool": "Stowage, `spoolDir` set (a copy of the body for restarts, on tmpfs)",
  plain: "plain undici client (sequential fragments, no retry, no hash)",
};

interface Measure {
  seconds: number;
  rssMiB: number;
}

const sha256 = (stream: NodeJS.ReadableStream | AsyncIterable<Uint8Array>) =>
  (async () => {
    const hash = createHash("sha256");
    for await (const chunk of stream) hash.update(chunk as Uint8Array);
    return hash.digest("hex");
  })();

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
      ["-f", "%M", "-o", timeFile, command, ...args],
      { env },
      async (err, _out, stderr) => {
        const seconds = (performance.now() - started) / 1000;
        if (err) return reject(new Error(`${args.join(" ")} failed: ${stderr}`));
        const kib = Number((await readFile(timeFile, "utf8")).trim().split("\n").at(-1));
        resolve({ seconds, rssMiB: kib / 1024 });
      },
    );
  });
}

/** Bundles the worker, Stowage from source included, so that it runs as plain JavaScript (as the built package would). */
async function bundleWorker(scratch: string): Promise<string> {
  const outDir = join(scratch, "worker");
  await build({
    entry: { "onedrive-worker": new URL("./onedrive-worker.ts", import.meta.url).pathname },
    outDir,
    format: "esm",
    platform: "node",
    target: "node20",
    noExternal: [/.*/],
    // Bundled CommonJS dependencies (undici) require Node's built-in modules.
    banner: {
      js: 'import { createRequire as bundleRequire } from "node:module"; const require = bundleRequire(import.meta.url);',
    },
    esbuildOptions(options) {
      options.conditions = ["@stowage/source"];
    },
    silent: true,
  });
  return join(outDir, "onedrive-worker.js");
}

/** Starts the emulator's process and resolves with its Graph URL. */
async function startEmulator(env: NodeJS.ProcessEnv): Promise<{ child: ChildProcess; graphUrl: string }> {
  const child = spawn(
    process.execPath,
    [
      "--conditions=@stowage/source",
      "--import",
      "tsx",
      new URL("./onedrive-emulator.ts", import.meta.url).pathname,
    ],
    { env, stdio: ["ignore", "pipe", "inherit"] },
  );
  const first = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once("line", resolve);
    child.once("exit", (code) => reject(new Error(`the emulator exited (${code})`)));
  });
  return { child, graphUrl: (JSON.parse(first) as { graphUrl: string }).graphUrl };
}

/** The stored object's SHA-256, read back by the plain path (302 then the download host). */
async function storedHash(graphUrl: string, key: string): Promise<string> {
  const redirect = await fetch(`${graphUrl}/me/drive/root:/bench/${key}:/content`, {
    headers: { authorization: `Bearer ${TOKEN}` },
    redirect: "manual",
  });
  const download = await fetch(redirect.headers.get("location")!);
  return sha256(download.body as unknown as AsyncIterable<Uint8Array>);
}

async function main(): Promise<void> {
  // Local files (and Stowage's temporary copy) on tmpfs: a disk's write-back would add noise.
  if (existsSync("/dev/shm")) process.env.TMPDIR = "/dev/shm";
  const loadBefore = loadavg()[0]!;
  const scratch = await mkdtemp(join(tmpdir(), "stowage-bench-onedrive-"));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    BENCH_CORE_PACKAGE: new URL("../packages/core/package.json", import.meta.url).pathname,
  };
  const worker = await bundleWorker(scratch);
  const { child, graphUrl } = await startEmulator(env);
  const timeFile = join(scratch, "time.txt");
  const results = new Map<string, Measure[]>();
  try {
    const source = join(scratch, "source.bin");
    await writeFile(source, randomBytes(BIG));
    const sourceHash = await sha256(createReadStream(source));
    const run = (client: Client, op: Op, key: string, local: string) =>
      measured(process.execPath, [worker, client, op, graphUrl, key, local], env, timeFile);
    // The folders, and the object every get reads, made once (unmeasured).
    for (const [parent, name] of [
      ["root", "bench"],
      ["root:/bench:", "get"],
      ["root:/bench:", "put"],
    ]) {
      const made = await fetch(`${graphUrl}/me/drive/${parent}/children`, {
        method: "POST",
        headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({ name, folder: {} }),
      });
      if (made.status !== 201) throw new Error(`creating ${name}: ${made.status}`);
    }
    await run("plain", "put", "get/big.bin", source);
    for (let round = 0; round < REPEATS; round++) {
      for (const op of ["put", "get"] as const) {
        for (const client of clientsFor(op)) {
          const out = join(scratch, "out.bin");
          const key = op === "put" ? `put/${client}.bin` : "get/big.bin";
          const m = await run(client, op, key, op === "put" ? source : out);
          // Every run is checked: the same bytes arrived.
          const hash = op === "put" ? await storedHash(graphUrl, key) : await sha256(createReadStream(out));
          if (hash !== sourceHash) throw new Error(`${client} ${op} moved different bytes`);
          await rm(out, { force: true });
          const name = `${client}/${op}`;
          results.set(name, [...(results.get(name) ?? []), m]);
          console.log(`${name}: ${m.seconds.toFixed(2)} s, ${m.rssMiB.toFixed(0)} MiB`);
        }
      }
    }
  } finally {
    child.kill();
    await rm(scratch, { recursive: true, force: true });
  }
  await writeReport(results, [loadBefore, loadavg()[0]!]);
}

async function writeReport(results: Map<string, Measure[]>, load: number[]): Promise<void> {
  const med = (client: Client, op: Op) => {
    const runs = results.get(`${client}/${op}`)!;
    return { seconds: median(runs.map((r) => r.seconds)), rssMiB: median(runs.map((r) => r.rssMiB)), runs };
  };
  const s = (seconds: number) => `${seconds.toFixed(2)} s`;
  const ratio = (op: Op, client: Client) => med("plain", op).seconds / med(client, op).seconds;
  const table = (title: string, op: Op) => `### ${title}

| client | whole process, median (runs) | peak RSS, median | speed vs the plain client |
|---|---|---|---|
${clientsFor(op)
  .map((client) => {
    const m = med(client, op);
    const runs = m.runs.map((r) => r.seconds.toFixed(2)).join(" / ");
    return `| ${label[client]} | ${s(m.seconds)} (${runs}) | ${m.rssMiB.toFixed(0)} MiB | ${ratio(op, client).toFixed(2)}× |`;
  })
  .join("\n")}
`;
  const markdown = `## onedrive: Stowage and a plain undici client on the Graph emulator

Command: \`node --conditions=@stowage/source --import tsx bench/onedrive.ts\`. It starts the Graph
emulator (\`startGraphEmulator()\`, strict mode: 320 KiB multiples, no Authorization on upload and
download URLs) in a child process of its own, on 127.0.0.1. ${REPEATS} runs of each workload, medians;
every run is a fresh process, timed from spawn to exit (start-up included); peak RSS is GNU time's
maximum resident set. Both clients run from one worker script bundled by tsup, under plain \`node\`.
Every run's bytes are checked (SHA-256 of the stored object, read back, or of the fetched file).
"Speed vs the plain client" = the plain client's median time ÷ this client's (above 1.00×, faster).

Workloads: a 256 MiB put (local file → drive, 10 MiB fragments in order: Stowage's default; Stowage
gets a file stream of known size, as \`putFile\` sends) and a 256 MiB get (drive → local file, by the
302 to the download host). The plain client (bench/onedrive-worker.ts) is the least a correct client
does: one createUploadSession, each fragment read into one reused buffer and PUT, nothing else.
Stowage also hashes what it sends and receives (quickXorHash, compared with the service's), copies
the file stream's 1 MiB pieces into fragment buffers (so that a fragment can be retried), reads the
next fragment while the current one is on the wire, and, with \`spoolDir\` set (not the default),
writes each fragment to a temporary file so that it can restart a lost session without the caller.
(\`spoolDir\` only concerns puts, so the get table has no row for it.)

Machine: ${machine()}; measured ${new Date().toISOString().slice(0, 10)}. Other work shared the machine
(the 1-minute load average was ${load.map((l) => l.toFixed(1)).join(" at the start and ")} at the end), so
single runs vary: compare medians.

${table("256 MiB put", "put")}
${table("256 MiB get", "get")}
### Reading the figures

- Put: Stowage at ${ratio("put", "stowage").toFixed(2)}× the plain client's speed (${ratio("put", "stowage-noverify").toFixed(2)}× without
  verification), peak RSS ${med("stowage", "put").rssMiB.toFixed(0)} MiB against ${med("plain", "put").rssMiB.toFixed(0)} MiB: memory is bounded by a few
  fragments, not by the object (256 MiB).
- Get: ${ratio("get", "stowage").toFixed(2)}× (${ratio("get", "stowage-noverify").toFixed(2)}× without verification), peak RSS
  ${med("stowage", "get").rssMiB.toFixed(0)} MiB against ${med("plain", "get").rssMiB.toFixed(0)} MiB.
- \`spoolDir\` costs ${(med("stowage-spool", "put").seconds - med("stowage", "put").seconds).toFixed(2)} s on the put here, on tmpfs (whose pages are not
  counted in the process's RSS); on a disk it is one more sequential write of the object. It is off
  by default: bytes and Blob bodies are read again instead, and a lost session (rare: sessions live about 24 h)
  otherwise fails the put for the caller to repeat, as rclone and Duplicati do.
- Where the CPU goes (a profile of the put): the garbage collector, for the 256 one-MiB buffers the
  file stream allocates; copying them into fragments; the hash. The plain client reads into one
  buffer it reuses and hashes nothing.
`;
  await writeFile(new URL("../docs/benchmarks-onedrive.md", import.meta.url), `${markdown.trim()}\n`);
  console.log(markdown);
}

await main();
