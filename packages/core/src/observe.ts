import { channel } from "node:diagnostics_channel";
import { redact } from "./redact.js";
import type { Logger } from "./types.js";

/** The default logger: says nothing. */
export const silentLogger: Logger = Object.freeze({
  debug() {},
  info() {},
  warn() {},
  error() {},
});

/**
 * The diagnostics channels Stowage publishes on. Subscribing costs the publisher nothing until someone
 * listens; every message is redacted before it is published.
 */
export const channels = {
  request: channel("stowage:request"),
  retry: channel("stowage:retry"),
  token: channel("stowage:token"),
} as const;

/** Publishes a redacted message on a channel, only when it has subscribers. */
export function publish(name: keyof typeof channels, message: Record<string, unknown>): void {
  const target = channels[name];
  if (target.hasSubscribers) target.publish(redact(message));
}

/** Wraps a logger so that everything it receives is redacted first. */
export function redactingLogger(logger: Logger | undefined): Logger {
  if (!logger) return silentLogger;
  const wrap =
    (level: keyof Logger) =>
    (obj: object, msg?: string): void =>
      logger[level](redact(obj) as object, msg === undefined ? undefined : redact(msg));
  return { debug: wrap("debug"), info: wrap("info"), warn: wrap("warn"), error: wrap("error") };
}
