import { randomUUID } from "node:crypto";
import { staticCredentials } from "@stowage/auth";
import { describeStorageConformance } from "@stowage/core/conformance";
import { afterAll, beforeAll } from "vitest";
import { createS3Storage } from "../src/index.js";
import {
  type RunningS3rver,
  S3RVER_ACCESS_KEY_ID,
  S3RVER_SECRET_ACCESS_KEY,
  startS3rver,
} from "./support/s3rver.js";

// AWS and every preset's server refuse parts under 5 MiB, and the storage refuses such a part size,
// so the suite runs with 5 MiB parts (s3rver itself would take smaller ones). Two parts in flight keep
// the streamed put inside the suite's memory budget (16 MiB + 4 chunks).
const partSize = 5 * 1024 * 1024;
const bucket = "conformance";
let server: RunningS3rver;

function open(bucketName: string) {
  return createS3Storage({
    bucket: bucketName,
    prefix: `t-${randomUUID()}/root`,
    endpoint: server.endpoint,
    preset: "other",
    credentials: staticCredentials({
      accessKeyId: S3RVER_ACCESS_KEY_ID,
      secretAccessKey: S3RVER_SECRET_ACCESS_KEY,
    }),
    pageSize: 7,
    partSize,
    queueSize: 2,
  });
}

beforeAll(async () => {
  server = await startS3rver();
  const admin = open(bucket);
  await admin.createRoot();
  await admin.close();
});

afterAll(async () => {
  await server?.stop();
});

describeStorageConformance(
  "s3 on s3rver",
  // A fresh prefix per test makes an empty root; a fresh bucket name makes a missing one.
  async ({ missingRoot }) => open(missingRoot ? `missing-${randomUUID()}` : bucket),
  { chunkSize: partSize, pageSize: 7 },
);
