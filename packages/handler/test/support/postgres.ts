import { execFile } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Debian's PostgreSQL 15 (apt package postgresql-15). */
export const PG_BIN = process.env.STOWAGE_PG_BIN ?? "/usr/lib/postgresql/15/bin";

export interface TestPostgres {
  /** `postgres://postgres@127.0.0.1:<port>/postgres` */
  readonly url: string;
  /** A plain-SQL `pg_dump` of the database, as bytes. */
  dump(): Promise<Buffer>;
  stop(): Promise<void>;
}

/** A free TCP port on 127.0.0.1 (the server binds it right after, so a clash is unlikely). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** initdb refuses root: as root, the cluster belongs to `postgres` (or `nobody` where it is missing). */
async function clusterUser(): Promise<{ name: string; uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  for (const name of ["postgres", "nobody"]) {
    try {
      const uid = Number((await run("id", ["-u", name])).stdout.trim());
      const gid = Number((await run("id", ["-g", name])).stdout.trim());
      return { name, uid, gid };
    } catch {
      // Try the next one.
    }
  }
  throw new Error("running as root, but neither the postgres nor the nobody user exists to own the cluster");
}

export interface StartPostgresOptions {
  /** Keep PostgreSQL's default durability (fsync, synchronous commit), as a benchmark must. Default false. */
  durable?: boolean;
}

/**
 * Starts a throw-away PostgreSQL server: `initdb` in a temporary folder, `pg_ctl start` on a free port
 * of 127.0.0.1 with its socket in that folder. Durability is switched off unless asked for: the data
 * is thrown away.
 */
export async function startPostgres(options: StartPostgresOptions = {}): Promise<TestPostgres> {
  if (!existsSync(join(PG_BIN, "initdb"))) {
    throw new Error(`PostgreSQL 15 is not installed (no ${PG_BIN}/initdb): apt-get install postgresql-15`);
  }
  const dir = mkdtempSync(join(tmpdir(), "stowage-pg-"));
  const data = join(dir, "data");
  const user = await clusterUser();
  if (user) chownSync(dir, user.uid, user.gid);
  const asCluster = (command: string, args: string[]) =>
    user ? run("runuser", ["-u", user.name, "--", command, ...args]) : run(command, args);
  const port = await freePort();
  try {
    await asCluster(join(PG_BIN, "initdb"), [
      "-D",
      data,
      "-U",
      "postgres",
      "--auth=trust",
      "-E",
      "UTF8",
      "-N",
    ]);
    const serverOptions = [
      `-p ${port}`,
      `-k ${dir}`,
      "-c listen_addresses=127.0.0.1",
      "-c max_connections=60",
      ...(options.durable ? [] : ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]),
    ].join(" ");
    await asCluster(join(PG_BIN, "pg_ctl"), [
      "-D",
      data,
      "-l",
      join(dir, "server.log"),
      "-o",
      serverOptions,
      "-w",
      "start",
    ]);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  return {
    url,
    async dump() {
      const { stdout } = await run(
        join(PG_BIN, "pg_dump"),
        ["-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "-d", "postgres"],
        { encoding: "buffer", maxBuffer: 64 * 1024 * 1024 },
      );
      return stdout;
    },
    async stop() {
      try {
        await asCluster(join(PG_BIN, "pg_ctl"), ["-D", data, "-m", "immediate", "-w", "stop"]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
