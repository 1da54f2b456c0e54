import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

// The pinned SDK warns once per process that its releases after January 2027 need Node 22; in test
// output that is noise (the README tells users how to silence it).
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";

/** s3rver's built-in key pair (s3rver checks the key id, but not SigV4 signatures). */
export const S3RVER_ACCESS_KEY_ID = "S3RVER";
export const S3RVER_SECRET_ACCESS_KEY = "S3RVER";

export interface RunningS3rver {
  endpoint: string;
  port: number;
  /** The server's process id, e.g. to read its CPU time. */
  pid: number;
  directory: string;
  stop(): Promise<void>;
}

const childScript = fileURLToPath(new URL("./s3rver-child.cjs", import.meta.url));

/**
 * Starts s3rver in a child process (`node --openssl-legacy-provider`, see s3rver-child.cjs) on
 * 127.0.0.1 and a random port, storing into a fresh temporary directory (or `parentDirectory`), and
 * resolves once it listens. `stop()` ends it and removes the directory.
 */
export async function startS3rver(parentDirectory: string = tmpdir()): Promise<RunningS3rver> {
  const directory = await mkdtemp(join(parentDirectory, "stowage-s3rver-"));
  const child: ChildProcess = spawn(process.execPath, ["--openssl-legacy-provider", childScript, directory], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr?.on("data", (data: Buffer) => {
    stderr += data.toString();
  });
  const port = await new Promise<number>((resolve, reject) => {
    let stdout = "";
    const onData = (data: Buffer) => {
      stdout += data.toString();
      const line = stdout.split("\n").find((l) => l.startsWith("{"));
      if (line) {
        child.stdout?.off("data", onData);
        resolve((JSON.parse(line) as { port: number }).port);
      }
    };
    child.stdout?.on("data", onData);
    child.once("exit", (code) => reject(new Error(`s3rver exited (${code}) before listening: ${stderr}`)));
    child.once("error", reject);
  });
  let stopped: Promise<void> | undefined;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    pid: child.pid!,
    directory,
    stop() {
      stopped ??= (async () => {
        if (child.exitCode === null) {
          const exited = new Promise((resolve) => child.once("exit", resolve));
          child.stdin?.end();
          const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
          await exited;
          clearTimeout(timer);
        }
        await rm(directory, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}
