/**
 * The three WebDAV servers the tests run against, each started on 127.0.0.1 at a random free port
 * with basic auth on, serving a fresh temporary folder, and stopped (folder removed) afterwards:
 * webdav-server 2.6.3 in this process, Apache 2.4 mod_dav_fs (Debian `apache2`) and
 * `rclone serve webdav` (Debian `rclone`) as child processes.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { v2 as webdav } from "webdav-server";

export interface TestServer {
  name: "webdav-server" | "apache" | "rclone";
  /** The WebDAV endpoint (no credentials in it). */
  url: string;
  username: string;
  password: string;
  /** The local folder the server serves. */
  folder: string;
  stop(): Promise<void>;
}

export const username = "stowage";
// Long enough to be registered as a secret, so that tests can check it never shows.
export const password = "s3cret-Pa55word";

/** A port that was free a moment ago. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Waits until something answers HTTP at `url` (any status, a 401 included). */
async function waitUntilAnswering(url: string, child?: ChildProcess, log?: () => string): Promise<void> {
  const deadline = Date.now() + 20_000;
  let exited: number | null = null;
  child?.once("exit", (code) => {
    exited = code ?? -1;
  });
  while (Date.now() < deadline) {
    if (exited !== null) throw new Error(`the server exited (${exited}) before answering: ${log?.() ?? ""}`);
    try {
      const response = await fetch(url, { method: "OPTIONS" });
      await response.arrayBuffer();
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  throw new Error(`nothing answered at ${url} within 20 s: ${log?.() ?? ""}`);
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill("SIGTERM");
  });
}

async function tempFolder(name: string): Promise<string> {
  const folder = await mkdtemp(join(tmpdir(), `stowage-${name}-`));
  // Apache drops to an unprivileged user when started as root; it must reach and write the folder.
  await chmod(folder, 0o755);
  return folder;
}

/** webdav-server 2.6.3 (v2 API) in this process, on a physical folder, with a user manager and basic auth. */
export async function startWebdavServer(): Promise<TestServer> {
  const folder = await tempFolder("webdav-server");
  const port = await freePort();
  const users = new webdav.SimpleUserManager();
  const user = users.addUser(username, password, false);
  const privileges = new webdav.SimplePathPrivilegeManager();
  privileges.setRights(user, "/", ["all"]);
  const server = new webdav.WebDAVServer({
    hostname: "127.0.0.1",
    port,
    httpAuthentication: new webdav.HTTPBasicAuthentication(users, "stowage"),
    privilegeManager: privileges,
    rootFileSystem: new webdav.PhysicalFileSystem(folder),
  });
  await new Promise<void>((resolve) => server.start(() => resolve()));
  const url = `http://127.0.0.1:${port}`;
  await waitUntilAnswering(url);
  return {
    name: "webdav-server",
    url,
    username,
    password,
    folder,
    async stop() {
      await new Promise<void>((resolve) => server.stop(() => resolve()));
      await rm(folder, { recursive: true, force: true });
    },
  };
}

const apacheModules = "/usr/lib/apache2/modules";

/** The Apache modules the generated httpd.conf loads (unixd and the log modules are built in). */
const apacheModuleNames = [
  "mpm_event",
  "authz_core",
  "authz_user",
  "authn_core",
  "authn_file",
  "auth_basic",
  "alias",
  "dav",
  "dav_fs",
] as const;

function apacheBinary(): string {
  return existsSync("/usr/sbin/apache2") ? "/usr/sbin/apache2" : "apache2";
}

/**
 * Apache 2.4 with mod_dav_fs, from a minimal httpd.conf generated in a temporary folder: the DAV
 * folder at /dav, basic auth from an htpasswd file (an {SHA} entry, so no htpasswd binary is
 * needed), DavLockDB and the pid file in the temporary folder. Started as root, it serves as
 * www-data, so the folders are made writable for it.
 */
export async function startApache(): Promise<TestServer> {
  const base = await tempFolder("apache");
  const folder = join(base, "data");
  const run = join(base, "run");
  await mkdir(folder);
  await mkdir(run);
  await mkdir(join(base, "readonly"));
  await mkdir(join(base, "plain"));
  await chmod(folder, 0o777);
  await chmod(run, 0o777);
  const port = await freePort();
  const sha = createHash("sha1").update(password).digest("base64");
  await writeFile(join(base, "htpasswd"), `${username}:{SHA}${sha}\n`, { mode: 0o644 });
  // As root, Apache must switch to an unprivileged user (it refuses to serve as root); otherwise it
  // keeps the current user and the User directive is left out.
  const asRoot = process.getuid?.() === 0;
  const conf = [
    `ServerRoot ${base}`,
    "ServerName 127.0.0.1",
    `Listen 127.0.0.1:${port}`,
    `PidFile ${run}/httpd.pid`,
    `DefaultRuntimeDir ${run}`,
    `ErrorLog ${run}/error.log`,
    "LogLevel warn",
    ...apacheModuleNames.map((name) => `LoadModule ${name}_module ${apacheModules}/mod_${name}.so`),
    ...(asRoot ? ["User www-data", "Group www-data"] : []),
    `DavLockDB ${run}/davlock`,
    "LimitRequestBody 0",
    "KeepAliveTimeout 30",
    "MaxKeepAliveRequests 0",
    "<Directory />",
    "  Require all denied",
    "</Directory>",
    `Alias /dav ${folder}`,
    `<Directory ${folder}>`,
    "  Dav On",
    "  AuthType Basic",
    '  AuthName "stowage"',
    "  AuthBasicProvider file",
    `  AuthUserFile ${base}/htpasswd`,
    "  Require valid-user",
    "</Directory>",
    // For the error tests: a DAV folder where this user may only read (writes are 403), and a
    // folder served without DAV (PROPFIND is 405).
    `Alias /dav-readonly ${base}/readonly`,
    `<Directory ${base}/readonly>`,
    "  Dav On",
    "  AuthType Basic",
    '  AuthName "stowage"',
    "  AuthBasicProvider file",
    `  AuthUserFile ${base}/htpasswd`,
    "  <RequireAll>",
    "    Require valid-user",
    "    Require method GET HEAD OPTIONS PROPFIND",
    "  </RequireAll>",
    "</Directory>",
    `Alias /plain ${base}/plain`,
    `<Directory ${base}/plain>`,
    "  Require all granted",
    "</Directory>",
  ].join("\n");
  await writeFile(join(base, "httpd.conf"), `${conf}\n`);
  let log = "";
  const child = spawn(apacheBinary(), ["-f", join(base, "httpd.conf"), "-DFOREGROUND"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout?.on("data", (chunk: Buffer) => {
    log += chunk.toString();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    log += chunk.toString();
  });
  const url = `http://127.0.0.1:${port}/dav`;
  try {
    await waitUntilAnswering(
      url,
      child,
      () => log + readFileSync(join(run, "error.log"), { encoding: "utf8", flag: "a+" }),
    );
  } catch (err) {
    await stopChild(child);
    await rm(base, { recursive: true, force: true });
    throw err;
  }
  return {
    name: "apache",
    url,
    username,
    password,
    folder,
    async stop() {
      await stopChild(child);
      await rm(base, { recursive: true, force: true });
    },
  };
}

/** `rclone serve webdav` (Debian rclone) on a temporary folder, with --user/--pass. */
export async function startRclone(): Promise<TestServer> {
  const folder = await tempFolder("rclone");
  const port = await freePort();
  let log = "";
  const child = spawn(
    "rclone",
    ["serve", "webdav", folder, "--addr", `127.0.0.1:${port}`, "--user", username, "--pass", password],
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, RCLONE_CONFIG: `${folder}.no-config` } },
  );
  child.stdout?.on("data", (chunk: Buffer) => {
    log += chunk.toString();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    log += chunk.toString();
  });
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitUntilAnswering(url, child, () => log);
  } catch (err) {
    await stopChild(child);
    await rm(folder, { recursive: true, force: true });
    throw err;
  }
  return {
    name: "rclone",
    url,
    username,
    password,
    folder,
    async stop() {
      await stopChild(child);
      await rm(folder, { recursive: true, force: true });
    },
  };
}
