#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { isStorageError, type Logger, redactUrl } from "@stowage/core";
import { type HandlerConfig, loadConfigFile } from "./config.js";
import { HandlerError } from "./errors.js";
import { createHandler } from "./index.js";
import { purgeStore } from "./purge.js";
import { openStore } from "./stores/index.js";

const HELP = `stowage-handler: the self-hostable Stowage OAuth handler

Usage:
  stowage-handler serve        [--config <file>]   run the handler (purges unused records every 6 h)
  stowage-handler purge        [--config <file>]   delete records unused for purgeAfterDays, expired logins
  stowage-handler revoke <authid | -> [--config <file>]
                                                   revoke an AuthID ("-" reads it from standard input,
                                                   which keeps it out of the shell history)
  stowage-handler revoke --keyid <KEYID> [--config <file>]
                                                   delete a record by its KEYID (an operator without the
                                                   AuthID; the provider's token cannot be revoked then)
  stowage-handler check-config [--config <file>]   validate the configuration and print what it sets up

Options:
  --config <file>   the JSON configuration (default: $STOWAGE_HANDLER_CONFIG, else ./stowage-handler.json)
  --help            show this text (also: stowage-handler <command> --help)

Exit status: 0 done, 1 failed, 2 invalid usage or configuration.
See docs/handler.md for every configuration field.`;

/** One JSON object per line on standard output, with pino's field names. */
function jsonLogger(write: (line: string) => void): Logger {
  const at =
    (level: string) =>
    (obj: object, msg?: string): void => {
      write(`${JSON.stringify({ level, time: new Date().toISOString(), msg, ...obj })}\n`);
    };
  return { debug: () => {}, info: at("info"), warn: at("warn"), error: at("error") };
}

class UsageError extends Error {}

export interface CliIo {
  out: (text: string) => void;
  err: (text: string) => void;
  stdin: () => string;
  env: NodeJS.ProcessEnv;
}

const defaultIo: CliIo = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  stdin: () => readFileSync(0, "utf8"),
  env: process.env,
};

/** Runs one command line; resolves with the exit status (`serve` resolves when it is stopped). */
export async function runCli(argv: readonly string[], io: CliIo = defaultIo): Promise<number> {
  try {
    const { values, positionals } = parseArgs({
      args: [...argv],
      options: {
        config: { type: "string" },
        keyid: { type: "string" },
        help: { type: "boolean" },
      },
      allowPositionals: true,
      strict: true,
    });
    const [command, ...rest] = positionals;
    if (values.help || command === undefined || command === "help") {
      io.out(`${HELP}\n`);
      return command === undefined && !values.help ? 2 : 0;
    }
    const configPath = values.config ?? io.env.STOWAGE_HANDLER_CONFIG ?? "./stowage-handler.json";
    const config = () => loadConfigFile(configPath, { env: io.env });
    switch (command) {
      case "serve":
        expectArgs(rest, 0, command);
        return await serve(config(), io);
      case "purge":
        expectArgs(rest, 0, command);
        return await purge(config(), io);
      case "revoke":
        return await revoke(config(), rest, values.keyid, io);
      case "check-config":
        expectArgs(rest, 0, command);
        return checkConfig(config(), configPath, io);
      default:
        throw new UsageError(
          `unknown command '${command}'; the commands are serve, purge, revoke, check-config`,
        );
    }
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: unknown }).code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
      io.err(`stowage-handler: ${(err as Error).message}\nRun stowage-handler --help for usage.\n`);
      return 2;
    }
    if (isStorageError(err, "InvalidConfig")) {
      io.err(`stowage-handler: ${err.message}\n`);
      return 2;
    }
    const message =
      err instanceof HandlerError
        ? `${err.reason}${err.hint ? ` (${err.hint})` : ""}`
        : String((err as Error).message ?? err);
    io.err(`stowage-handler: ${message}\n`);
    return 1;
  }
}

function expectArgs(rest: readonly string[], count: number, command: string): void {
  if (rest.length !== count) throw new UsageError(`'${command}' takes no argument, got '${rest.join(" ")}'`);
}

async function serve(config: HandlerConfig, io: CliIo): Promise<number> {
  const handler = createHandler(config, {
    logger: jsonLogger(io.out),
    purgeEveryMs: 6 * 3_600_000,
  });
  await handler.listen();
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      resolve();
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
  await handler.close();
  return 0;
}

async function purge(config: HandlerConfig, io: CliIo): Promise<number> {
  const store = openStore(config.store);
  try {
    const result = await purgeStore(store, config.purgeAfterDays, Date.now());
    io.out(
      `purged ${result.records} record(s) unused for ${config.purgeAfterDays} days and ${result.expired} expired login(s) or fetch token(s)\n`,
    );
    return 0;
  } finally {
    await store.close();
  }
}

async function revoke(
  config: HandlerConfig,
  rest: readonly string[],
  keyId: string | undefined,
  io: CliIo,
): Promise<number> {
  if (keyId !== undefined) {
    if (rest.length > 0) throw new UsageError("give either an AuthID or --keyid, not both");
    if (!/^[0-9a-f]{32}$/.test(keyId))
      throw new UsageError("a KEYID is 32 hex digits (the AuthID's part before ':')");
    const store = openStore(config.store);
    try {
      const deleted = await store.delete(keyId, Date.now());
      io.out(
        deleted
          ? `deleted record ${keyId}; the provider's refresh token was not revoked (that needs the AuthID): ask the user to remove the app's access at the provider\n`
          : `no record ${keyId}\n`,
      );
      return deleted ? 0 : 1;
    } finally {
      await store.close();
    }
  }
  if (rest.length !== 1)
    throw new UsageError("give the AuthID to revoke (or '-' to read it from standard input)");
  const authId = rest[0] === "-" ? io.stdin().trim() : rest[0]!;
  const handler = createHandler(config);
  try {
    const result = await handler.revoke(authId);
    io.out(
      result.providerRevoked
        ? `revoked: the record is deleted and ${result.provider} revoked the refresh token\n`
        : `revoked: the record is deleted; ${result.detail ?? "the provider did not confirm"}\n`,
    );
    return 0;
  } finally {
    await handler.close();
  }
}

function checkConfig(config: HandlerConfig, path: string, io: CliIo): number {
  const base =
    config.publicUrl ?? `${config.tls ? "https" : "http"}://${config.listen.host}:${config.listen.port}`;
  const lines = [
    `${path} is valid.`,
    `public URL: ${base}${config.publicUrl === undefined ? " (no publicUrl: loopback trials only)" : ""}`,
    `listens on: ${config.listen.host}:${config.listen.port}${config.tls ? " (https)" : ""}`,
    `store: ${config.store.startsWith("postgres") ? redactUrl(config.store) : config.store}`,
    `redirect URI to register with each provider: ${base}/logged-in`,
    "providers:",
    ...Object.values(config.providers).map(
      (p) =>
        `  ${p.id} (${p.type}${p.hidden ? ", hidden" : ""}): scopes "${p.scopes.join(" ")}", ` +
        `PKCE ${p.pkce ? "on" : "off"}, client auth ${p.clientAuth}, revocation ${p.revokeUrl ? "yes" : "no"}`,
    ),
    `allowed origins for postMessage: ${config.allowedOrigins.length > 0 ? config.allowedOrigins.join(", ") : "(none)"}`,
    `records unused for ${config.purgeAfterDays} days are purged`,
  ];
  io.out(`${lines.join("\n")}\n`);
  return 0;
}

// Run only as the bin, not when imported by tests.
if (
  process.argv[1] !== undefined &&
  /(?:^|[/\\])(?:cli\.(?:js|cjs|ts)|stowage-handler)$/.test(process.argv[1])
) {
  runCli(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
