import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createInterface } from "node:readline";
import { oauthRefreshToken } from "@stowage/auth";
import type { TokenSource } from "@stowage/core";
import {
  DRIVE_FILE_SCOPE,
  type DriveEmulator,
  type DriveEmulatorOptions,
  defaultOAuthClient,
  type OAuthProvider,
  type OAuthProviderOptions,
  startDriveEmulator,
  startOAuthProvider,
} from "@stowage/emulators";
import { expect } from "vitest";
import type { EmulatorProcessInfo } from "./emulator-process.js";

/** An OAuth provider in Google's manner (no rotation) and a Drive emulator checking its tokens. */
export interface Emulators {
  oauth: OAuthProvider;
  drive: DriveEmulator;
  /** A token source refreshing a new `drive.file` grant of the default client, as an app holds one. */
  tokenSource(scopes?: readonly string[]): TokenSource;
  close(): Promise<void>;
}

export async function startEmulators(
  options: { oauth?: OAuthProviderOptions; drive?: Partial<DriveEmulatorOptions> } = {},
): Promise<Emulators> {
  const oauth = await startOAuthProvider({ rotateRefreshTokens: false, ...options.oauth });
  const drive = await startDriveEmulator({ oauth, ...options.drive });
  return {
    oauth,
    drive,
    tokenSource(scopes = [DRIVE_FILE_SCOPE]) {
      return oauthRefreshToken({
        tokenUrl: oauth.tokenUrl,
        clientId: defaultOAuthClient.clientId,
        clientSecret: defaultOAuthClient.clientSecret,
        refreshToken: oauth.issueRefreshToken({ scopes }),
        onRotate: () => {
          throw new Error("Google does not rotate refresh tokens");
        },
        retry: { minDelayMs: 5, maxDelayMs: 50 },
      });
    },
    async close() {
      await drive.close();
      await oauth.close();
    },
  };
}

/** Deterministic bytes that differ per seed. */
export function bytesOf(size: number, seed = 1): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed * 2654435761;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

/** A body the storage can read only once, in pieces, like a file stream. */
export async function* streamOf(bytes: Uint8Array, pieceSize = 65_536): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.byteLength; i += pieceSize) yield bytes.slice(i, i + pieceSize);
}

/** Checks that Drive holds exactly one file at `path`, with exactly `bytes`. */
export function expectOneFile(drive: DriveEmulator, path: string, bytes: Uint8Array): void {
  const found = drive.find(path);
  expect(found, `files at ${path}`).toHaveLength(1);
  const stored = drive.content(found[0]!.id);
  expect(stored.length, `size of ${path}`).toBe(bytes.byteLength);
  expect(createHash("md5").update(stored).digest("hex"), `md5 of ${path}`).toBe(
    createHash("md5").update(bytes).digest("hex"),
  );
}

/** The emulators in a child process (see emulator-process.ts): their URLs, credentials, and a stop. */
export async function startEmulatorProcess(): Promise<EmulatorProcessInfo & { stop(): Promise<void> }> {
  const script = new URL("./emulator-process.ts", import.meta.url).pathname;
  const child = spawn(process.execPath, ["--conditions=@stowage/source", "--import", "tsx", script], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once("line", resolve);
    child.once("exit", (code) => reject(new Error(`the emulator process exited with ${code}`)));
  });
  const info = JSON.parse(line) as EmulatorProcessInfo;
  return {
    ...info,
    async stop() {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.stdin!.end();
      await exited;
    },
  };
}
