/**
 * One benchmark run in a process of its own, started by bench/s3.ts, so that each run is timed and
 * measured (peak RSS, CPU) as a whole process: module loading, client setup and JIT warm-up count.
 *
 * bench/s3.ts bundles this file (with Stowage's sources, as a built package would ship them) into
 * packages/s3/.bench/ and runs it with plain node, so that no run pays for a TypeScript loader:
 *
 *   node packages/s3/.bench/s3-client.mjs <client> <scenario> <endpoint> <json-settings>
 *
 * client: stowage | raw | opendal | direct; scenario: put-large | get-large | small-puts | stream-1g.
 * `direct` is a measuring prototype, not shipped code: PutObject signed by the SDK's own SigV4 signer
 * and sent with node:http, skipping the SDK's middleware stack (small puts only).
 * Prints one JSON line: { opMs, cpuMs, maxRssMiB, setupMs, bytes, sockets }.
 */

import { createHash } from "node:crypto";
import { subscribe } from "node:diagnostics_channel";
import { createReadStream } from "node:fs";
import { Agent, request } from "node:http";
import { createRequire } from "node:module";
import { Readable } from "node:stream";

const started = performance.now();
let sockets = 0;
// Every TCP connection the client opens (keep-alive reuse shows as few sockets).
subscribe("net.client.socket", () => {
  sockets++;
});

interface Settings {
  /** The large source file (put-large). */
  file?: string;
  /** The object to read (get-large). */
  key?: string;
  size?: number;
  partSize?: number;
  queueSize?: number;
  count?: number;
  objectSize?: number;
  concurrency?: number;
  /** Stowage: storage concurrency; raw: agent maxSockets. */
  limit?: number;
  checksums?: "when-supported" | "when-required";
  keepAlive?: boolean;
  cacheMiddleware?: boolean;
  maxAttempts?: number;
  verify?: boolean;
  prefix?: string;
}

const [clientArg, scenarioArg, endpointArg, json] = process.argv.slice(2);
if (clientArg === undefined || scenarioArg === undefined || endpointArg === undefined) {
  throw new Error("usage: s3-client.mjs <stowage|raw|opendal|direct> <scenario> <endpoint> [json-settings]");
}
const client: string = clientArg;
const scenario: string = scenarioArg;
const endpoint: string = endpointArg;
const settings: Settings = JSON.parse(json ?? "{}");
const bucket = "bench";
const MiB = 1024 * 1024;
const partSize = settings.partSize ?? 8 * MiB;
const queueSize = settings.queueSize ?? 4;
const credentials = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };

// Bundled into packages/s3/.bench/, this resolves the AWS SDK from packages/s3 (whose dependency it
// is) and opendal from the repository root, as installed: every client loads the same SDK files.
const requireInstalled = createRequire(import.meta.url);
type ClientS3 = typeof import("../packages/s3/node_modules/@aws-sdk/client-s3");
type LibStorage = typeof import("../packages/s3/node_modules/@aws-sdk/lib-storage");

interface Bench {
  putLarge(key: string, source: Readable | AsyncIterable<Uint8Array>, size?: number): Promise<void>;
  getLarge(key: string): Promise<number>;
  putSmall(key: string, body: Uint8Array): Promise<void>;
}

async function stowageBench(): Promise<Bench> {
  const { createS3Storage } = await import("../packages/s3/src/index.js");
  const { staticCredentials } = await import("../packages/auth/src/index.js");
  const storage = createS3Storage({
    bucket,
    endpoint,
    preset: "other",
    credentials: staticCredentials(credentials),
    partSize,
    queueSize,
    concurrency: settings.limit ?? 16,
    ...(settings.checksums ? { checksums: settings.checksums } : {}),
  });
  const verify = settings.verify ?? true;
  return {
    async putLarge(key, source, size) {
      await storage.put(key, source, { size, verify });
    },
    async getLarge(key) {
      let bytes = 0;
      for await (const piece of (await storage.get(key, { verify })).body) bytes += piece.byteLength;
      return bytes;
    },
    async putSmall(key, body) {
      await storage.put(key, body, { verify });
    },
  };
}

async function rawBench(): Promise<Bench> {
  const { S3Client, GetObjectCommand, PutObjectCommand } = requireInstalled("@aws-sdk/client-s3") as ClientS3;
  const { Upload } = requireInstalled("@aws-sdk/lib-storage") as LibStorage;
  const checksum = settings.checksums === "when-required" ? "WHEN_REQUIRED" : undefined;
  const s3 = new S3Client({
    region: "us-east-1",
    endpoint,
    forcePathStyle: true,
    credentials,
    ...(checksum ? { requestChecksumCalculation: checksum, responseChecksumValidation: checksum } : {}),
    ...(settings.cacheMiddleware ? { cacheMiddleware: true } : {}),
    ...(settings.maxAttempts ? { maxAttempts: settings.maxAttempts } : {}),
    ...(settings.keepAlive !== undefined || settings.limit !== undefined
      ? {
          requestHandler: {
            httpAgent: new Agent({ keepAlive: settings.keepAlive ?? true, maxSockets: settings.limit ?? 50 }),
          },
        }
      : {}),
  });
  return {
    async putLarge(key, source) {
      // lib-storage takes streams but not async iterables.
      const body = source instanceof Readable ? source : Readable.from(source);
      await new Upload({
        client: s3,
        params: { Bucket: bucket, Key: key, Body: body },
        partSize,
        queueSize,
      }).done();
    },
    async getLarge(key) {
      const output = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      let bytes = 0;
      for await (const piece of output.Body as AsyncIterable<Uint8Array>) bytes += piece.byteLength;
      return bytes;
    },
    async putSmall(key, body) {
      await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    },
  };
}

async function opendalBench(): Promise<Bench> {
  const { Operator } = requireInstalled("opendal") as typeof import("opendal");
  const op = new Operator("s3", {
    bucket,
    endpoint,
    region: "us-east-1",
    access_key_id: credentials.accessKeyId,
    secret_access_key: credentials.secretAccessKey,
    disable_config_load: "true",
    disable_ec2_metadata: "true",
  });
  return {
    async putLarge(key, source) {
      const writer = await op.writer(key, { chunk: BigInt(partSize), concurrent: queueSize });
      for await (const piece of source)
        await writer.write(Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength));
      await writer.close();
    },
    async getLarge(key) {
      const reader = await op.reader(key);
      let bytes = 0;
      for await (const piece of reader.createReadStream() as AsyncIterable<Uint8Array>)
        bytes += piece.byteLength;
      return bytes;
    },
    async putSmall(key, body) {
      await op.write(key, Buffer.from(body.buffer, body.byteOffset, body.byteLength));
    },
  };
}

/**
 * What a PutObject costs without the SDK's middleware stack: the same SigV4 signer (the client's),
 * the same payload hash, a keep-alive agent, and nothing else (no retries, no error parsing). It
 * bounds what a direct path in Stowage could reach; see the s3 section of docs/benchmarks.md.
 */
async function directBench(): Promise<Bench> {
  const { S3Client } = requireInstalled("@aws-sdk/client-s3") as ClientS3;
  const s3 = new S3Client({ region: "us-east-1", endpoint, forcePathStyle: true, credentials });
  interface Signer {
    sign(request: object, options: object): Promise<{ headers: Record<string, string> }>;
  }
  const signerOf = s3.config.signer as unknown as (scheme: object) => Promise<Signer>;
  const signer = await signerOf({ name: "sigv4", signingName: "s3", signingRegion: "us-east-1" });
  const target = new URL(endpoint);
  const agent = new Agent({ keepAlive: true });
  const unsupported = async (): Promise<never> => {
    throw new Error("the direct prototype only does small puts");
  };
  return {
    putLarge: unsupported,
    getLarge: unsupported,
    async putSmall(key, body) {
      const path = `/${bucket}/${key.split("/").map(encodeURIComponent).join("/")}`;
      const headers = {
        host: target.host,
        "content-length": String(body.byteLength),
        "x-amz-content-sha256": createHash("sha256").update(body).digest("hex"),
      };
      const signed = await signer.sign(
        {
          method: "PUT",
          protocol: target.protocol,
          hostname: target.hostname,
          port: Number(target.port),
          path,
          query: {},
          headers,
          body,
        },
        {},
      );
      await new Promise<void>((resolve, reject) => {
        const req = request(
          { host: target.hostname, port: target.port, method: "PUT", path, headers: signed.headers, agent },
          (res) => {
            res.resume();
            res.on("end", () =>
              res.statusCode === 200 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`)),
            );
          },
        );
        req.on("error", reject);
        req.end(body);
      });
    },
  };
}

/** A stream of unknown length: `total` bytes in 1 MiB pieces of one random block. */
async function* generated(total: number): AsyncGenerator<Uint8Array> {
  const block = new Uint8Array(MiB);
  for (let i = 0; i < block.length; i++) block[i] = (i * 2654435761) >>> 24;
  for (let sent = 0; sent < total; sent += block.length)
    yield block.subarray(0, Math.min(block.length, total - sent));
}

const makers: Record<string, () => Promise<Bench>> = {
  stowage: stowageBench,
  raw: rawBench,
  opendal: opendalBench,
  direct: directBench,
};
const bench = await makers[client]!();
const setupMs = performance.now() - started;
const opStart = performance.now();
let bytes = 0;
const prefix = settings.prefix ?? client;
if (scenario === "put-large") {
  await bench.putLarge(
    `large/${prefix}`,
    createReadStream(settings.file!, { highWaterMark: MiB }),
    settings.size,
  );
  bytes = settings.size ?? 0;
} else if (scenario === "get-large") {
  bytes = await bench.getLarge(settings.key!);
} else if (scenario === "small-puts") {
  const count = settings.count ?? 2000;
  const body = new Uint8Array(settings.objectSize ?? 4096).fill(7);
  let next = 0;
  await Promise.all(
    Array.from({ length: settings.concurrency ?? 16 }, async () => {
      while (next < count) {
        const i = next++;
        await bench.putSmall(`small/${prefix}/${i}`, body);
      }
    }),
  );
  bytes = count * body.byteLength;
} else if (scenario === "stream-1g") {
  const total = settings.size ?? 1024 * MiB;
  await bench.putLarge(`stream/${prefix}`, generated(total));
  bytes = total;
} else {
  throw new Error(`unknown scenario ${scenario}`);
}
const opMs = performance.now() - opStart;
const cpu = process.cpuUsage();
process.stdout.write(
  `${JSON.stringify({
    opMs: Math.round(opMs),
    setupMs: Math.round(setupMs),
    cpuMs: Math.round((cpu.user + cpu.system) / 1000),
    maxRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
    bytes,
    sockets,
  })}\n`,
);
process.exit(0);
