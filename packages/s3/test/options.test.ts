import { inspect } from "node:util";
import { staticCredentials } from "@stowage/auth";
import { connect, isStorageError, type Logger, parseConnectionUrl, type StorageError } from "@stowage/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createS3Storage,
  parseByteSize,
  presetSettings,
  resolveS3Options,
  type S3StorageOptions,
  s3Presets,
} from "../src/index.js";
import { collect, MiB, s3rverCredentials } from "./support/fixture.js";
import {
  type RunningS3rver,
  S3RVER_ACCESS_KEY_ID,
  S3RVER_SECRET_ACCESS_KEY,
  startS3rver,
} from "./support/s3rver.js";

function configError(fn: () => unknown): StorageError {
  try {
    fn();
  } catch (err) {
    if (isStorageError(err, "InvalidConfig")) return err;
    throw err;
  }
  throw new Error("expected InvalidConfig");
}

const base: S3StorageOptions = { bucket: "my-bucket", endpoint: "http://127.0.0.1:9000" };

describe("options", () => {
  it("fills in defaults: 8 MiB parts, 4 in flight, 1,000 keys a page, the other preset with an endpoint", () => {
    const options = resolveS3Options(base);
    expect(options).toMatchObject({
      preset: "other",
      partSize: 8 * MiB,
      queueSize: 4,
      pageSize: 1000,
      concurrency: 8,
      prefix: "",
      createRoot: false,
      forcePathStyle: true,
      checksums: "when-required",
      conditionalPut: false,
      region: "us-east-1",
    });
    expect(resolveS3Options({ bucket: "my-bucket" })).toMatchObject({
      preset: "aws",
      forcePathStyle: false,
      checksums: "when-supported",
      conditionalPut: true,
    });
  });

  it("normalises the prefix leniently, as roots are", () => {
    expect(resolveS3Options({ ...base, prefix: "/backups//pc1/" }).prefix).toBe("backups/pc1");
    expect(configError(() => resolveS3Options({ ...base, prefix: "a/../b" })).message).toContain(
      "'..' segment",
    );
  });

  const invalid: Array<[string, Partial<S3StorageOptions> & Record<string, unknown>, string]> = [
    [
      "a part size under 5 MiB",
      { partSize: MiB },
      "partSize must be at least 5242880 (5 MiB), the smallest part S3 accepts",
    ],
    ["a part size over 5 GiB", { partSize: 6 * 1024 * MiB }, "partSize must be at most 5368709120 (5 GiB)"],
    ["a page size over 1,000", { pageSize: 5000 }, "pageSize must be 1 to 1000"],
    ["a bucket with a slash", { bucket: "bucket/folder" }, "bucket must be 3 to 255 letters"],
    [
      "an endpoint that is no http URL",
      { endpoint: "ftp://host" },
      "endpoint must be an http:// or https:// URL",
    ],
    [
      "an unknown preset",
      { preset: "gcs" as never },
      "preset must be one of aws, minio, r2, b2, wasabi, ceph, other",
    ],
    ["an unknown option", { partsize: 5 }, "unknown option 'partsize'"],
    [
      "credentials that are not staticCredentials",
      { credentials: { accessKeyId: "a", secretAccessKey: "b" } as never },
      "credentials must come from staticCredentials()",
    ],
  ];
  for (const [what, options, message] of invalid) {
    it(`refuses ${what} with InvalidConfig`, () => {
      const error = configError(() => createS3Storage({ ...base, ...options } as S3StorageOptions));
      expect(error.message).toContain(message);
      expect(error.provider).toBe("s3");
    });
  }

  it("needs an endpoint for every preset but aws", () => {
    expect(configError(() => createS3Storage({ bucket: "my-bucket", preset: "minio" })).message).toContain(
      "the minio preset needs an endpoint",
    );
  });

  it("sets path style, checksum mode and conditional puts per preset", () => {
    const table = Object.fromEntries(
      s3Presets.map((preset) => {
        const o = resolveS3Options({ ...base, preset });
        return [
          preset,
          `${o.forcePathStyle ? "path" : "vhost"} ${o.checksums} ${o.conditionalPut ? "conditional" : "check-then-write"}`,
        ];
      }),
    );
    expect(table).toEqual({
      aws: "vhost when-supported conditional",
      minio: "path when-supported conditional",
      r2: "path when-required conditional",
      b2: "path when-required conditional",
      wasabi: "path when-required check-then-write",
      ceph: "path when-required check-then-write",
      other: "path when-required check-then-write",
    });
    expect(presetSettings.r2.region).toBe("auto");
  });

  it("lets explicit options override the preset", () => {
    const options = resolveS3Options({
      ...base,
      preset: "minio",
      forcePathStyle: false,
      checksums: "when-required",
      conditionalPut: false,
    });
    expect(options).toMatchObject({
      forcePathStyle: false,
      checksums: "when-required",
      conditionalPut: false,
    });
  });

  it("takes the signing region from B2 and Wasabi endpoints", () => {
    expect(
      resolveS3Options({
        bucket: "b2-bucket",
        preset: "b2",
        endpoint: "https://s3.us-west-004.backblazeb2.com",
      }).region,
    ).toBe("us-west-004");
    expect(
      resolveS3Options({
        bucket: "w-bucket",
        preset: "wasabi",
        endpoint: "https://s3.eu-central-1.wasabisys.com",
      }).region,
    ).toBe("eu-central-1");
    expect(
      resolveS3Options({
        bucket: "w-bucket",
        preset: "wasabi",
        endpoint: "https://s3.eu-central-1.wasabisys.com",
        region: "x-1",
      }).region,
    ).toBe("x-1");
  });

  it("parses part sizes with units", () => {
    expect(parseByteSize("5242880", "part-size")).toBe(5 * MiB);
    expect(parseByteSize("8MiB", "part-size")).toBe(8 * MiB);
    expect(parseByteSize("16m", "part-size")).toBe(16 * MiB);
    expect(parseByteSize("1GiB", "part-size")).toBe(1024 * MiB);
    expect(configError(() => parseByteSize("8 megs", "part-size")).message).toContain(
      "part-size must be a size in bytes",
    );
  });
});

describe("connection URLs and secrets", () => {
  let server: RunningS3rver;
  const secret = "Secret-For-The-URL-Test-0987654321";

  beforeAll(async () => {
    server = await startS3rver();
  });

  afterAll(async () => {
    await server?.stop();
  });

  it("opens s3://bucket/prefix with kebab-case parameters and works against s3rver", async () => {
    const url = `s3://url-bucket/backups/pc1?endpoint=${encodeURIComponent(server.endpoint)}&access-key-id=${S3RVER_ACCESS_KEY_ID}&secret-access-key=${secret}&part-size=5MiB&queue-size=2&page-size=2&create-root=true&preset=other`;
    const storage = await connect(url);
    expect(storage.provider).toBe("s3");
    await storage.put("a/b.txt", "hello");
    await storage.put("c.txt", "world");
    expect((await collect(storage.list())).map((e) => `${e.kind}:${e.key}`).sort()).toEqual([
      "file:c.txt",
      "folder:a",
    ]);
    expect(await (await storage.get("a/b.txt")).text()).toBe("hello");
    expect(storage.location).toBe(
      `s3://url-bucket/backups/pc1?endpoint=${encodeURIComponent(server.endpoint)}&region=us-east-1&preset=other`,
    );
    await storage.close();
  });

  it("declares the secrets of a URL as secret, so diagnostics never echo them", () => {
    const parsed = parseConnectionUrl(
      `s3://b-bucket/p?endpoint=http://127.0.0.1:1&access-key-id=AKID&secret-access-key=${secret}&session-token=${secret}-token`,
      { secretAccessKey: "other-secret-value" },
    );
    expect(parsed.url).not.toContain(secret);
    expect(JSON.stringify(parsed.diagnostics)).not.toContain(secret);
    expect(JSON.stringify(parsed.diagnostics)).not.toContain("other-secret-value");
  });

  it("needs both halves of a key pair in a URL", async () => {
    const error = await connect("s3://b-bucket?endpoint=http://127.0.0.1:1&access-key-id=AKID").then(
      () => undefined,
      (err: StorageError) => err,
    );
    expect(error?.code).toBe("InvalidConfig");
    expect(error?.message).toContain("secret-access-key is missing");
  });

  it("suggests the closest parameter for a typo", async () => {
    const error = await connect("s3://b-bucket?endpoint=http://127.0.0.1:1&part_size=5MiB").then(
      () => undefined,
      (err: StorageError) => err,
    );
    expect(error?.code).toBe("InvalidConfig");
    expect(error?.hint).toBe("did you mean 'part-size'?");
  });

  it("keeps the secret out of location, toString, JSON, inspect, errors and log lines", async () => {
    const lines: unknown[] = [];
    const logger: Logger = {
      debug: (obj, msg) => void lines.push(obj, msg),
      info: (obj, msg) => void lines.push(obj, msg),
      warn: (obj, msg) => void lines.push(obj, msg),
      error: (obj, msg) => void lines.push(obj, msg),
    };
    const storage = createS3Storage({
      bucket: "no-such-bucket-here",
      endpoint: server.endpoint,
      credentials: staticCredentials({ accessKeyId: S3RVER_ACCESS_KEY_ID, secretAccessKey: secret }),
      logger,
    });
    const error = await storage.stat("a.txt").then(
      () => undefined,
      (err: StorageError) => err,
    );
    expect(error?.code).toBe("FolderMissing");
    const report = await storage.test({ write: true });
    for (const text of [
      storage.location,
      String(storage),
      JSON.stringify(storage),
      inspect(storage, { depth: 10 }),
      error?.message ?? "",
      JSON.stringify(error),
      JSON.stringify(report),
      JSON.stringify(lines),
    ]) {
      expect(text).not.toContain(secret);
    }
    expect(lines.length).toBeGreaterThan(0);
  });

  it("uses the AWS default provider chain without credentials (here: AWS_ACCESS_KEY_ID in the environment)", async () => {
    const saved = { id: process.env.AWS_ACCESS_KEY_ID, key: process.env.AWS_SECRET_ACCESS_KEY };
    process.env.AWS_ACCESS_KEY_ID = S3RVER_ACCESS_KEY_ID;
    process.env.AWS_SECRET_ACCESS_KEY = S3RVER_SECRET_ACCESS_KEY;
    try {
      const storage = createS3Storage({
        bucket: "chain-bucket",
        endpoint: server.endpoint,
        createRoot: true,
      });
      await storage.put("chain.txt", "via the default chain");
      expect(await (await storage.get("chain.txt")).text()).toBe("via the default chain");
      await storage.close();
      process.env.AWS_ACCESS_KEY_ID = "NOT-A-KEY";
      const wrong = createS3Storage({ bucket: "chain-bucket", endpoint: server.endpoint });
      const error = await wrong.stat("chain.txt").then(
        () => undefined,
        (err: StorageError) => err,
      );
      expect(error?.code).toBe("Unauthenticated");
    } finally {
      if (saved.id === undefined) delete process.env.AWS_ACCESS_KEY_ID;
      else process.env.AWS_ACCESS_KEY_ID = saved.id;
      if (saved.key === undefined) delete process.env.AWS_SECRET_ACCESS_KEY;
      else process.env.AWS_SECRET_ACCESS_KEY = saved.key;
    }
  });

  it("reads the credentials through staticCredentials' get(), so a function form can rotate them", async () => {
    let calls = 0;
    const storage = createS3Storage({
      bucket: "rotate-bucket",
      endpoint: server.endpoint,
      createRoot: true,
      credentials: staticCredentials(() => {
        calls++;
        return s3rverCredentials().get();
      }),
    });
    await storage.put("r.txt", "x");
    expect(calls).toBeGreaterThan(0);
  });
});
