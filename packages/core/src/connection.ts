import { StorageError } from "./errors.js";
import { redactUrl } from "./redact.js";
import type { Logger, Storage } from "./types.js";

/** One documented connection parameter (kebab-case in URLs, camelCase also accepted in `options`). */
export interface ParamSpec {
  description: string;
  /** How the value is read; default "string". */
  type?: "string" | "boolean" | "integer";
  /** Held secret: never echoed in diagnostics or errors. */
  secret?: boolean;
}

/** How a provider plugs into {@link connect}. */
export interface ProviderDescriptor {
  /** The provider name, as in `Storage.provider`. */
  provider: string;
  /** URL schemes that open this provider, e.g. `["webdav", "webdavs"]`. */
  schemes: readonly string[];
  /** The string parameters a URL (or `options`, or `STOWAGE_*` variables) may set. */
  params: Readonly<Record<string, ParamSpec>>;
  /** Options that only the `options` argument can carry, since they are objects (`auth`, `logger`, …). */
  objectOptions?: readonly string[];
  open(connection: ParsedConnection): Storage | Promise<Storage>;
}

export interface Diagnostic {
  level: "warn" | "info";
  /** The parameter concerned, when there is one. */
  param?: string;
  message: string;
}

/** A connection URL taken apart, with parameters merged from the URL, `options` and the environment. */
export interface ParsedConnection {
  provider: string;
  scheme: string;
  /** The URL's host (with port), decoded; `""` when the URL has none (`file:///…`). */
  host: string;
  /** The URL's path, each segment percent-decoded once, without the leading `/`. */
  path: string;
  /** Merged string parameters: URL > options > environment. */
  params: Record<string, string>;
  /** Where each parameter came from. */
  sources: Record<string, "url" | "options" | "env">;
  /** Object options (`auth`, `logger`, …) from the `options` argument. */
  objects: Record<string, unknown>;
  diagnostics: Diagnostic[];
  /** The URL with every secret removed. */
  url: string;
}

const registry = new Map<string, ProviderDescriptor>();

/** Packages that register a scheme when imported; `connect` loads them on demand. */
const packageForScheme: Record<string, string> = {
  s3: "@stowage/s3",
  webdav: "@stowage/webdav",
  webdavs: "@stowage/webdav",
  onedrive: "@stowage/onedrive",
  gdrive: "@stowage/gdrive",
};

/** Makes a provider's schemes available to {@link connect}. Registering a scheme again replaces it. */
export function registerProvider(descriptor: ProviderDescriptor): void {
  for (const scheme of descriptor.schemes) registry.set(scheme.toLowerCase(), descriptor);
}

/** The descriptor registered for a scheme, if any. */
export function providerForScheme(scheme: string): ProviderDescriptor | undefined {
  return registry.get(scheme.toLowerCase());
}

function configError(message: string, hint?: string, cause?: unknown): StorageError {
  return new StorageError({ code: "InvalidConfig", operation: "connect", message, hint, cause });
}

/** camelCase or snake_case to kebab-case: `createRoot` → `create-root`. */
export function toKebab(name: string): string {
  return name
    .replace(/([a-z0-9])([A-Z])/g, "$1-$2")
    .replace(/_/g, "-")
    .toLowerCase();
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}

/** The closest of `candidates` to `name`, when it is close enough to be a likely typo. */
export function closestName(name: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const candidate of candidates) {
    const distance = editDistance(name, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined;
}

function unknownParam(name: string, provider: string, valid: readonly string[], where: string): StorageError {
  const suggestion = closestName(name, valid);
  return configError(
    `unknown parameter '${name}' in the ${where} for ${provider}; valid parameters: ${valid.join(", ")}`,
    suggestion ? `did you mean '${suggestion}'?` : `see the @stowage/${provider} README for each parameter`,
  );
}

function decodeOnce(text: string, what: string): string {
  try {
    return decodeURIComponent(text);
  } catch (err) {
    throw configError(`${what} has a malformed percent-encoding`, "encode '%' as '%25'", err);
  }
}

/** Splits a query string by hand: URLSearchParams would turn '+' into a space and break tokens. */
function queryPairs(search: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const part of search.replace(/^\?/, "").split("&")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    const rawName = eq < 0 ? part : part.slice(0, eq);
    const name = decodeOnce(rawName, `the parameter name '${rawName}'`);
    const value = eq < 0 ? "true" : decodeOnce(part.slice(eq + 1), `the value of '${name}'`);
    out.push([name, value]);
  }
  return out;
}

function describeValue(spec: ParamSpec | undefined, value: string): string {
  return spec?.secret ? "(secret)" : `'${value}'`;
}

function checkType(name: string, spec: ParamSpec | undefined, value: string): void {
  if (spec?.type === "boolean" && !/^(true|false|1|0|yes|no)$/i.test(value)) {
    throw configError(`parameter '${name}' must be true or false, not ${describeValue(spec, value)}`);
  }
  if (spec?.type === "integer" && !/^-?\d+$/.test(value)) {
    throw configError(`parameter '${name}' must be a whole number, not ${describeValue(spec, value)}`);
  }
}

export interface ParseOptions {
  /** Environment to read `STOWAGE_<PARAM>` from; default `process.env`. */
  env?: Record<string, string | undefined>;
}

/**
 * Takes a connection URL apart and merges its parameters with `options` and the environment.
 *
 * Precedence: URL query > `options` > `STOWAGE_<PARAM>` > defaults. When the URL and `options`
 * disagree, the URL wins with a diagnostic. A parameter repeated in the URL with equal values is
 * accepted with a diagnostic; with different values it is `InvalidConfig` naming it. An unknown
 * parameter is `InvalidConfig` listing the valid names and the closest one. Percent-encoding is
 * decoded exactly once (`abc%3A123` is `abc:123`; `+` stays `+`).
 *
 * @example
 * parseConnectionUrl("memory://scratch?create-root=true").params // { "create-root": "true" }
 */
export function parseConnectionUrl(
  url: string | URL,
  options: Record<string, unknown> = {},
  parseOptions: ParseOptions = {},
): ParsedConnection {
  const text = typeof url === "string" ? url.trim() : url.href;
  let parsed: URL;
  try {
    parsed = new URL(text);
  } catch (err) {
    const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(text)?.[1];
    throw configError(
      `'${redactUrl(text)}' is not a valid URL`,
      scheme
        ? "check the URL for spaces or stray characters; percent-encode reserved characters in values"
        : "a connection URL starts with a scheme, e.g. file:///srv/backups or s3://bucket/prefix",
      err,
    );
  }
  const scheme = parsed.protocol.replace(/:$/, "").toLowerCase();
  const descriptor = registry.get(scheme);
  if (!descriptor) {
    const known = [...new Set([...registry.keys(), ...Object.keys(packageForScheme)])].sort();
    const pkg = packageForScheme[scheme];
    throw configError(
      pkg
        ? `the ${scheme}:// scheme needs ${pkg}, which is not loaded`
        : `unknown URL scheme '${scheme}:'; known schemes: ${known.join(", ")}`,
      pkg
        ? `install ${pkg} to use ${scheme}:// URLs`
        : closestName(scheme, known)
          ? `did you mean '${closestName(scheme, known)}://'?`
          : undefined,
    );
  }
  return parseWith(descriptor, parsed, scheme, options, parseOptions);
}

function parseWith(
  descriptor: ProviderDescriptor,
  parsed: URL,
  scheme: string,
  options: Record<string, unknown>,
  parseOptions: ParseOptions,
): ParsedConnection {
  const valid = Object.keys(descriptor.params);
  const objectNames = descriptor.objectOptions ?? [];
  const diagnostics: Diagnostic[] = [];
  const params: Record<string, string> = {};
  const sources: Record<string, "url" | "options" | "env"> = {};
  const objects: Record<string, unknown> = {};

  const fromUrl: Record<string, string> = {};
  const userinfo: Array<[string, string]> = [];
  if (parsed.username) userinfo.push(["username", decodeOnce(parsed.username, "the URL's user name")]);
  if (parsed.password) userinfo.push(["password", decodeOnce(parsed.password, "the URL's password")]);
  for (const [name, value] of [...userinfo, ...queryPairs(parsed.search)]) {
    const key = name.toLowerCase();
    const spec = descriptor.params[key];
    if (!spec) throw unknownParam(name, descriptor.provider, valid, "URL");
    checkType(key, spec, value);
    if (key in fromUrl) {
      if (fromUrl[key] !== value) {
        throw configError(
          `parameter '${key}' appears twice in the URL with different values`,
          `keep one '${key}' in the URL`,
        );
      }
      diagnostics.push({
        level: "warn",
        param: key,
        message: `parameter '${key}' appears twice in the URL with the same value`,
      });
      continue;
    }
    fromUrl[key] = value;
  }

  const fromOptions: Record<string, string> = {};
  for (const [name, value] of Object.entries(options)) {
    if (value === undefined) continue;
    const key = toKebab(name);
    const objectName = objectNames.find((o) => o === name || toKebab(o) === key);
    // The provider validates its object options (a TokenSource, a logger, `retry: false`, …).
    if (objectName) {
      objects[objectName] = value;
      continue;
    }
    const spec = descriptor.params[key];
    if (!spec) throw unknownParam(name, descriptor.provider, [...valid, ...objectNames], "options");
    if (typeof value !== "string" && typeof value !== "number" && typeof value !== "boolean") {
      throw configError(`option '${name}' must be a string, number or boolean, not ${typeof value}`);
    }
    checkType(key, spec, String(value));
    fromOptions[key] = String(value);
  }

  const env = parseOptions.env ?? process.env;
  for (const key of valid) {
    const envName = `STOWAGE_${key.toUpperCase().replace(/-/g, "_")}`;
    const spec = descriptor.params[key];
    if (key in fromUrl) {
      params[key] = fromUrl[key]!;
      sources[key] = "url";
      if (key in fromOptions && fromOptions[key] !== fromUrl[key]) {
        diagnostics.push({
          level: "warn",
          param: key,
          message: `parameter '${key}' is set in both the URL and options; the URL's value is used`,
        });
      }
    } else if (key in fromOptions) {
      params[key] = fromOptions[key]!;
      sources[key] = "options";
    } else {
      const value = env[envName];
      if (value !== undefined && value !== "") {
        checkType(key, spec, value);
        params[key] = value;
        sources[key] = "env";
        diagnostics.push({
          level: "info",
          param: key,
          message: `parameter '${key}' is taken from ${envName}`,
        });
      }
    }
  }

  const host = decodeOnce(parsed.host, "the URL's host");
  const path = parsed.pathname
    .split("/")
    .map((segment) => decodeOnce(segment, "the URL's path"))
    .join("/")
    .replace(/^\//, "");
  return {
    provider: descriptor.provider,
    scheme,
    host,
    path,
    params,
    sources,
    objects,
    diagnostics,
    url: redactUrl(parsed),
  };
}

/** Reads a boolean parameter (`true/false/1/0/yes/no`). */
export function paramBoolean(connection: ParsedConnection, name: string): boolean | undefined {
  const value = connection.params[name];
  return value === undefined ? undefined : /^(true|1|yes)$/i.test(value);
}

/** Reads a whole-number parameter. */
export function paramInteger(connection: ParsedConnection, name: string): number | undefined {
  const value = connection.params[name];
  return value === undefined ? undefined : Number.parseInt(value, 10);
}

export interface ConnectOptions extends Record<string, unknown> {
  logger?: Logger;
}

/**
 * Opens a storage from a connection URL. The provider is found by scheme; provider packages register
 * themselves when imported, and `connect` imports `@stowage/<provider>` on demand when it is installed.
 * Diagnostics are logged at `warn` (or `info`) on `options.logger`.
 *
 * @example
 * const storage = await connect("file:///srv/backups/pc1?create-root=true");
 * const s3 = await connect("s3://my-bucket/pc1?region=eu-west-1");
 */
export async function connect(url: string | URL, options: ConnectOptions = {}): Promise<Storage> {
  const scheme = /^\s*([a-z][a-z0-9+.-]*):/i
    .exec(typeof url === "string" ? url : url.href)?.[1]
    ?.toLowerCase();
  if (scheme && !registry.has(scheme) && packageForScheme[scheme]) await loadProviderPackage(scheme);
  const connection = parseConnectionUrl(url, options);
  const logger = options.logger;
  for (const diagnostic of connection.diagnostics) {
    logger?.[diagnostic.level]({ param: diagnostic.param, url: connection.url }, diagnostic.message);
  }
  return registry.get(connection.scheme)!.open(connection);
}

async function loadProviderPackage(scheme: string): Promise<void> {
  const pkg = packageForScheme[scheme]!;
  try {
    await import(pkg);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === "ERR_MODULE_NOT_FOUND" || code === "MODULE_NOT_FOUND") {
      throw configError(
        `the ${scheme}:// scheme needs ${pkg}, which is not installed`,
        `install ${pkg} to use ${scheme}:// URLs`,
        err,
      );
    }
    throw err;
  }
  if (!registry.has(scheme)) {
    throw configError(
      `${pkg} was loaded but did not register ${scheme}://`,
      `check that ${pkg} and @stowage/core versions match`,
    );
  }
}
