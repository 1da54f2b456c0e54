/** The S3-compatible servers Stowage has settings for; `other` is the safe choice for anything else. */
export const s3Presets = ["aws", "minio", "r2", "b2", "wasabi", "ceph", "other"] as const;

export type S3Preset = (typeof s3Presets)[number];

/**
 * How the SDK computes request checksums (`x-amz-checksum-*`): `when-supported` on every upload,
 * `when-required` only where the operation demands one.
 */
export type S3ChecksumMode = "when-supported" | "when-required";

export interface S3PresetSettings {
  /** Path-style URLs (`https://host/bucket/key`) instead of virtual-hosted ones (`https://bucket.host/key`). */
  forcePathStyle: boolean;
  checksums: S3ChecksumMode;
  /** Whether the server honours `If-None-Match: *` on PutObject and CompleteMultipartUpload. */
  conditionalPut: boolean;
  /** The signing region when none is given; `undefined` leaves it to the AWS default chain. */
  region?: string;
  /** Follow a 301 to the bucket's real region (AWS only: other servers have one region). */
  followRegionRedirects: boolean;
}

/**
 * What each preset sets, and why (packages/s3/README.md explains each row with sources):
 * - aws: virtual-hosted URLs (AWS is deprecating path style), flexible checksums (AWS verifies them),
 *   conditional writes (since 2024), region from the AWS chain, region redirects.
 * - minio: path style (virtual hosts need MINIO_DOMAIN); MinIO verifies checksums and honours
 *   If-None-Match.
 * - r2, b2: reject or mishandle `x-amz-checksum-*` headers (cloudflare-docs#13132, B2's
 *   "unsupported features" list), so checksums only when required; both honour If-None-Match.
 *   R2 signs with region "auto".
 * - wasabi: rejects the SDK's default checksums (stonith404/pingvin-share#788).
 * - ceph: RGW before Squid (19) rejects the trailer checksums; virtual hosts need rgw_dns_name.
 * - other: the settings that work on the most servers.
 */
export const presetSettings: Readonly<Record<S3Preset, Readonly<S3PresetSettings>>> = {
  aws: {
    forcePathStyle: false,
    checksums: "when-supported",
    conditionalPut: true,
    followRegionRedirects: true,
  },
  minio: {
    forcePathStyle: true,
    checksums: "when-supported",
    conditionalPut: true,
    region: "us-east-1",
    followRegionRedirects: false,
  },
  r2: {
    forcePathStyle: true,
    checksums: "when-required",
    conditionalPut: true,
    region: "auto",
    followRegionRedirects: false,
  },
  b2: {
    forcePathStyle: true,
    checksums: "when-required",
    conditionalPut: true,
    region: "us-east-1",
    followRegionRedirects: false,
  },
  wasabi: {
    forcePathStyle: true,
    checksums: "when-required",
    conditionalPut: false,
    region: "us-east-1",
    followRegionRedirects: false,
  },
  ceph: {
    forcePathStyle: true,
    checksums: "when-required",
    conditionalPut: false,
    region: "us-east-1",
    followRegionRedirects: false,
  },
  other: {
    forcePathStyle: true,
    checksums: "when-required",
    conditionalPut: false,
    region: "us-east-1",
    followRegionRedirects: false,
  },
};

/**
 * The signing region a B2 or Wasabi endpoint implies: both sign with the region in their host name
 * (`s3.us-west-004.backblazeb2.com`, `s3.eu-central-1.wasabisys.com`) and refuse any other.
 */
export function regionFromEndpoint(preset: S3Preset, endpoint: string | undefined): string | undefined {
  if (endpoint === undefined) return undefined;
  let host: string;
  try {
    host = new URL(endpoint).hostname;
  } catch {
    return undefined;
  }
  if (preset === "b2") return /^s3\.([a-z0-9-]+)\.backblazeb2\.com$/i.exec(host)?.[1];
  if (preset === "wasabi") return /^s3\.([a-z0-9-]+)\.wasabisys\.com$/i.exec(host)?.[1];
  return undefined;
}
