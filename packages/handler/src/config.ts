import { readFileSync } from "node:fs";
import { closestName, registerSecret, StorageError } from "@stowage/core";
import { z } from "zod";

/**
 * A secret in the configuration: inline (only for tests and local trials), or read at start-up from
 * an environment variable or a file, so that the configuration file itself can be shared or committed.
 */
export type SecretRef = string | { env: string } | { file: string };

const nonEmpty = z.string().trim().min(1, "must be a non-empty string");

const secretRefSchema = z.union([
  nonEmpty,
  z.strictObject({ env: nonEmpty }),
  z.strictObject({ file: nonEmpty }),
]);

const absoluteUrl = z
  .string()
  .trim()
  .refine((value) => URL.canParse(value) && /^https?:$/.test(new URL(value).protocol), {
    message: "must be an absolute http:// or https:// URL",
  });

const scopesSchema = z.array(nonEmpty).min(1, "must list at least one scope");

const endpointsSchema = z.strictObject({
  authorizeUrl: absoluteUrl,
  tokenUrl: absoluteUrl,
  revokeUrl: absoluteUrl.optional(),
});

const providerCommon = {
  /** Shown on the chooser page; default: the provider's id. */
  name: nonEmpty.optional(),
  clientId: nonEmpty,
  clientSecret: secretRefSchema.optional(),
  scopes: scopesSchema.optional(),
  /** Left off the chooser page unless `/?type=<id>` asks for it. */
  hidden: z.boolean().optional(),
};

const microsoftSchema = z.strictObject({
  type: z.literal("microsoft"),
  ...providerCommon,
  /** `common`, `consumers`, `organizations` or a tenant id. */
  tenant: nonEmpty.default("common"),
  /** Another identity platform host (a national cloud), or an emulator in tests. */
  authority: absoluteUrl.default("https://login.microsoftonline.com"),
});

const googleSchema = z.strictObject({
  type: z.literal("google"),
  ...providerCommon,
  /** Replaces Google's endpoints, for tests against an emulator. */
  endpoints: endpointsSchema.optional(),
});

const oauth2Schema = z.strictObject({
  type: z.literal("oauth2"),
  ...providerCommon,
  scopes: scopesSchema,
  authorizeUrl: absoluteUrl,
  tokenUrl: absoluteUrl,
  revokeUrl: absoluteUrl.optional(),
  pkce: z.boolean().default(true),
  /** Default: `client_secret_post` with a client secret, `none` (a public client) without one. */
  clientAuth: z.enum(["client_secret_basic", "client_secret_post", "none"]).optional(),
  /** Extra query parameters for the authorize URL (`access_type`, `prompt`, …). */
  authorizeParams: z.record(z.string(), z.string()).optional(),
});

const providerSchema = z.discriminatedUnion("type", [microsoftSchema, googleSchema, oauth2Schema], {
  error: (issue) =>
    issue.code === "invalid_union" ? 'must be "microsoft", "google" or "oauth2"' : undefined,
});

const bucketSchema = z.union([
  z.literal(false),
  z.strictObject({
    perMinute: z.number().positive("must be more than 0"),
    /** Requests allowed at once after a quiet spell; default `perMinute`. */
    burst: z.number().int().positive("must be a whole number more than 0").optional(),
  }),
]);

const bucket = (perMinute: number, burst?: number) => bucketSchema.default({ perMinute, burst });

const limitsSchema = z
  .strictObject({
    refresh: z
      .strictObject({ perIp: bucket(600, 200), perKey: bucket(60, 60) })
      .default({ perIp: { perMinute: 600, burst: 200 }, perKey: { perMinute: 60, burst: 60 } }),
    login: z.strictObject({ perIp: bucket(30, 10) }).default({ perIp: { perMinute: 30, burst: 10 } }),
    revoke: z
      .strictObject({ perIp: bucket(20, 10), perKey: bucket(10, 5) })
      .default({ perIp: { perMinute: 20, burst: 10 }, perKey: { perMinute: 10, burst: 5 } }),
    fetch: z.strictObject({ perIp: bucket(120, 60) }).default({ perIp: { perMinute: 120, burst: 60 } }),
    failedPassword: z
      .strictObject({
        /** Wrong passwords for one KEYID that are answered at once before the backoff starts. */
        freeAttempts: z.number().int().nonnegative().default(5),
        /** The backoff doubles from 1 s up to this. */
        maxBackoffSec: z.number().int().positive().default(300),
      })
      .default({ freeAttempts: 5, maxBackoffSec: 300 }),
  })
  .default({
    refresh: { perIp: { perMinute: 600, burst: 200 }, perKey: { perMinute: 60, burst: 60 } },
    login: { perIp: { perMinute: 30, burst: 10 } },
    revoke: { perIp: { perMinute: 20, burst: 10 }, perKey: { perMinute: 10, burst: 5 } },
    fetch: { perIp: { perMinute: 120, burst: 60 } },
    failedPassword: { freeAttempts: 5, maxBackoffSec: 300 },
  });

const storeUrl = z
  .string()
  .trim()
  .refine((value) => /^(sqlite:.+|postgres(ql)?:\/\/.+|memory:)$/.test(value), {
    message: "must be sqlite:<path>, postgres://user@host/db or memory:",
  });

const providerId = z
  .string()
  .regex(/^[a-z][a-z0-9_-]{0,31}$/, "provider ids are 1-32 lower-case letters, digits, '-' or '_'");

const configSchema = z.strictObject({
  /**
   * The URL users reach the handler at, without a trailing path; the OAuth redirect URI is this plus
   * `/logged-in`. Default: the address `listen` binds to, which only suits a trial on loopback.
   */
  publicUrl: absoluteUrl.optional(),
  /** Where `stowage-handler serve` listens. */
  listen: z
    .strictObject({
      host: nonEmpty.default("127.0.0.1"),
      port: z.number().int().min(0).max(65535).default(8080),
    })
    .default({ host: "127.0.0.1", port: 8080 }),
  store: storeUrl.default("sqlite:./stowage-handler.db"),
  providers: z
    .record(providerId, providerSchema)
    .refine((providers) => Object.keys(providers).length > 0, { message: "configure at least one provider" }),
  /** Origins (scheme://host[:port]) the logged-in page may send the AuthID to with postMessage. */
  allowedOrigins: z
    .array(
      z
        .string()
        .refine(
          (value) => URL.canParse(value) && new URL(value).origin === value.replace(/\/$/, ""),
          "must be an origin such as https://app.example.com (no path)",
        ),
    )
    .default([]),
  /** When set, `/refresh` requires one of these in `X-API-Key` (Duplicati cannot send one: leave empty for it). */
  apiKeys: z.array(secretRefSchema).default([]),
  /** How many reverse proxies in front of the handler append to X-Forwarded-For (0: none, use the peer). */
  trustProxy: z.number().int().min(0).max(10).default(0),
  /** Serve https directly (most deployments terminate TLS at a reverse proxy instead). */
  tls: z.strictObject({ certFile: nonEmpty, keyFile: nonEmpty }).optional(),
  limits: limitsSchema,
  /** Records not used for this many days are deleted. */
  purgeAfterDays: z.number().int("must be a whole number").positive("must be more than 0").default(365),
  /** Shown in page titles. */
  appName: nonEmpty.default("Stowage"),
  /** A contact line on the privacy page (an address or a URL). */
  contact: nonEmpty.optional(),
});

/** The configuration as written in the file (defaults not applied yet). */
export type HandlerConfigInput = z.input<typeof configSchema>;
type ParsedConfig = z.output<typeof configSchema>;
type ParsedProvider = z.output<typeof providerSchema>;

export type BucketLimit = false | { perMinute: number; burst?: number };
export type LimitsConfig = ParsedConfig["limits"];

/** How the handler sends its client credentials to the token endpoint (RFC 6749 §2.3.1). */
export type ClientAuthMethod = "client_secret_basic" | "client_secret_post" | "none";

/** One provider, resolved: endpoints filled in and the client secret read. */
export interface ProviderConfig {
  /** The id used in `/?type=`, `/login?id=`, the refresh response's `type` and v2 AuthIDs. */
  id: string;
  type: "microsoft" | "google" | "oauth2";
  name: string;
  clientId: string;
  clientSecret?: string;
  scopes: readonly string[];
  authorizeUrl: string;
  tokenUrl: string;
  revokeUrl?: string;
  pkce: boolean;
  clientAuth: ClientAuthMethod;
  authorizeParams: Readonly<Record<string, string>>;
  hidden: boolean;
  /** Where a user removes the app's access by hand, for providers without a revocation endpoint. */
  deauthorizeUrl?: string;
}

/** The validated configuration with defaults applied and secrets resolved. */
export interface HandlerConfig extends Omit<ParsedConfig, "providers" | "apiKeys"> {
  providers: Readonly<Record<string, ProviderConfig>>;
  apiKeys: readonly string[];
}

const MICROSOFT_SCOPES = ["Files.ReadWrite", "offline_access"];
const GOOGLE_SCOPES = ["https://www.googleapis.com/auth/drive.file"];

function configError(problems: string[], source: string | undefined): StorageError {
  const where = source === undefined ? "the handler configuration" : `the handler configuration ${source}`;
  const count = problems.length === 1 ? "a problem" : `${problems.length} problems`;
  return new StorageError({
    provider: "handler",
    operation: "config",
    code: "InvalidConfig",
    message: `${where} has ${count}: ${problems.join("; ")}`,
    hint: "fix each field named above; docs/handler.md lists every field",
  });
}

function fieldPath(path: readonly PropertyKey[]): string {
  return path.length === 0 ? "(top level)" : path.map(String).join(".");
}

/** Every zod issue as `field.path: what is wrong`, unknown fields with a suggestion. */
function describeIssues(issues: readonly z.core.$ZodIssue[], input: unknown): string[] {
  const problems: string[] = [];
  for (const issue of issues) {
    if (issue.code === "unrecognized_keys") {
      const known = knownKeysAt(issue.path, input);
      for (const key of issue.keys) {
        const guess = closestName(key, known);
        const suggestion = guess === undefined ? "" : ` (did you mean '${guess}'?)`;
        problems.push(`${fieldPath([...issue.path, key])}: unknown field${suggestion}`);
      }
      continue;
    }
    if (issue.code === "invalid_key") {
      problems.push(`${fieldPath(issue.path)}: ${issue.issues[0]?.message ?? "is not a valid name"}`);
      continue;
    }
    if (issue.code === "invalid_union" && issue.errors.length > 0 && issue.message.startsWith("Invalid")) {
      // A secret reference failed every form: say which forms exist rather than listing three failures.
      problems.push(`${fieldPath(issue.path)}: must be a string, {"env": "NAME"} or {"file": "/path"}`);
      continue;
    }
    const message = issue.message.endsWith("received undefined")
      ? "is required"
      : issue.message.replace(/^Invalid input: expected/, "expected");
    problems.push(`${fieldPath(issue.path)}: ${message}`);
  }
  return problems;
}

const topLevelKeys = Object.keys(configSchema.shape);

function knownKeysAt(path: readonly PropertyKey[], input: unknown): string[] {
  if (path.length === 0) return topLevelKeys;
  if (path[0] === "providers" && path.length === 2) {
    const type = (input as { providers?: Record<string, { type?: unknown }> })?.providers?.[String(path[1])]
      ?.type;
    const schema = type === "microsoft" ? microsoftSchema : type === "google" ? googleSchema : oauth2Schema;
    return Object.keys(schema.shape);
  }
  if (path[0] === "limits" && path.length === 1) return Object.keys(limitsSchema.unwrap().shape);
  if (path[0] === "listen") return ["host", "port"];
  if (path[0] === "tls") return ["certFile", "keyFile"];
  return [];
}

interface ResolveContext {
  env: NodeJS.ProcessEnv;
  readFile: (path: string) => string;
  problems: string[];
}

function resolveSecret(ref: SecretRef, field: string, context: ResolveContext): string | undefined {
  let value: string | undefined;
  if (typeof ref === "string") {
    value = ref;
  } else if ("env" in ref) {
    value = context.env[ref.env]?.trim();
    if (!value) {
      context.problems.push(`${field}: the environment variable ${ref.env} is not set or is empty`);
      return undefined;
    }
  } else {
    try {
      value = context.readFile(ref.file).trim();
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      context.problems.push(
        `${field}: cannot read ${ref.file} (${typeof code === "string" ? code : "error"})`,
      );
      return undefined;
    }
    if (!value) {
      context.problems.push(`${field}: the file ${ref.file} is empty`);
      return undefined;
    }
  }
  // Any error text or log line that ever quotes it (a provider echoing the request) is cleaned.
  registerSecret(value);
  return value;
}

function resolveProvider(id: string, parsed: ParsedProvider, context: ResolveContext): ProviderConfig {
  const field = `providers.${id}`;
  const clientSecret =
    parsed.clientSecret === undefined
      ? undefined
      : resolveSecret(parsed.clientSecret, `${field}.clientSecret`, context);
  const common = {
    id,
    name: parsed.name ?? id,
    clientId: parsed.clientId,
    clientSecret,
    hidden: parsed.hidden ?? false,
  };
  if (parsed.type === "microsoft") {
    const base = `${parsed.authority.replace(/\/+$/, "")}/${encodeURIComponent(parsed.tenant)}/oauth2/v2.0`;
    return {
      ...common,
      type: "microsoft",
      scopes: parsed.scopes ?? MICROSOFT_SCOPES,
      authorizeUrl: `${base}/authorize`,
      tokenUrl: `${base}/token`,
      // The identity platform has no RFC 7009 endpoint; consent is removed by the user.
      deauthorizeUrl: "https://account.live.com/consent/Manage",
      pkce: true,
      clientAuth: clientSecret === undefined ? "none" : "client_secret_post",
      authorizeParams: { response_mode: "query" },
    };
  }
  if (parsed.type === "google") {
    const endpoints = parsed.endpoints ?? {
      authorizeUrl: "https://accounts.google.com/o/oauth2/v2/auth",
      tokenUrl: "https://oauth2.googleapis.com/token",
      revokeUrl: "https://oauth2.googleapis.com/revoke",
    };
    if (clientSecret === undefined) {
      context.problems.push(`${field}.clientSecret: is required for Google (a "Web application" client)`);
    }
    return {
      ...common,
      type: "google",
      scopes: parsed.scopes ?? GOOGLE_SCOPES,
      ...endpoints,
      deauthorizeUrl: "https://myaccount.google.com/permissions",
      pkce: true,
      clientAuth: "client_secret_post",
      // Without both, Google issues a refresh token only on the first consent of an account.
      authorizeParams: { access_type: "offline", prompt: "consent" },
    };
  }
  const clientAuth = parsed.clientAuth ?? (parsed.clientSecret === undefined ? "none" : "client_secret_post");
  if (clientAuth !== "none" && parsed.clientSecret === undefined) {
    context.problems.push(`${field}.clientSecret: is required with clientAuth "${clientAuth}"`);
  }
  return {
    ...common,
    type: "oauth2",
    scopes: parsed.scopes,
    authorizeUrl: parsed.authorizeUrl,
    tokenUrl: parsed.tokenUrl,
    revokeUrl: parsed.revokeUrl,
    pkce: parsed.pkce,
    clientAuth,
    authorizeParams: parsed.authorizeParams ?? {},
  };
}

export interface ParseConfigOptions {
  /** Where the configuration came from, for messages (`/etc/stowage-handler.json`). */
  source?: string;
  /** Default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Reads `{ "file": … }` secrets; default `fs.readFileSync(path, "utf8")`. */
  readFile?: (path: string) => string;
}

/**
 * Validates a configuration object, applies defaults and resolves secrets. Every problem is reported
 * at once, each naming its field, in one `InvalidConfig` error.
 *
 * @example
 * const config = parseConfig({
 *   publicUrl: "https://handler.example.com",
 *   providers: { onedrive: { type: "microsoft", clientId: "…", clientSecret: { env: "MS_SECRET" } } },
 * });
 */
export function parseConfig(input: unknown, options: ParseConfigOptions = {}): HandlerConfig {
  const parsed = configSchema.safeParse(input);
  if (!parsed.success) throw configError(describeIssues(parsed.error.issues, input), options.source);
  const config = parsed.data;
  const context: ResolveContext = {
    env: options.env ?? process.env,
    readFile: options.readFile ?? ((path) => readFileSync(path, "utf8")),
    problems: [],
  };
  const providers: Record<string, ProviderConfig> = {};
  for (const [id, provider] of Object.entries(config.providers)) {
    providers[id] = resolveProvider(id, provider, context);
  }
  const apiKeys = config.apiKeys
    .map((ref, index) => resolveSecret(ref, `apiKeys.${index}`, context))
    .filter((key): key is string => key !== undefined);
  if (config.publicUrl !== undefined) {
    const url = new URL(config.publicUrl);
    if (url.protocol !== "https:" && !isLoopbackHost(url.hostname)) {
      context.problems.push(
        "publicUrl: must be https:// (OAuth providers refuse plain http redirect URIs except on loopback)",
      );
    }
    if (url.pathname !== "/" || url.search !== "") {
      context.problems.push(
        "publicUrl: must have no path or query (the handler serves /login, /refresh, … at its root)",
      );
    }
  }
  if (context.problems.length > 0) throw configError(context.problems, options.source);
  const result: HandlerConfig = {
    ...config,
    publicUrl: config.publicUrl === undefined ? undefined : new URL(config.publicUrl).origin,
    allowedOrigins: config.allowedOrigins.map((origin) => new URL(origin).origin),
    providers,
    apiKeys,
  };
  parsedConfigs.add(result);
  return result;
}

const parsedConfigs = new WeakSet<object>();

/** Whether a value came out of {@link parseConfig} (so it needs no second validation). */
export function isParsedConfig(value: object): value is HandlerConfig {
  return parsedConfigs.has(value);
}

/** Reads and validates a JSON configuration file. */
export function loadConfigFile(
  path: string,
  options: Omit<ParseConfigOptions, "source"> = {},
): HandlerConfig {
  let text: string;
  try {
    text = (options.readFile ?? ((file: string) => readFileSync(file, "utf8")))(path);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    throw new StorageError({
      provider: "handler",
      operation: "config",
      code: "InvalidConfig",
      message: `cannot read the configuration file ${path} (${typeof code === "string" ? code : "error"})`,
      hint: "pass --config <file> with a readable JSON file",
      cause: err,
    });
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    // V8's message quotes the text around the error, which may be a secret: keep only the position.
    const position = /position (\d+)/.exec((err as Error).message)?.[1];
    const where = position === undefined ? "" : ` near character ${position}`;
    throw new StorageError({
      provider: "handler",
      operation: "config",
      code: "InvalidConfig",
      message: `the configuration file ${path} is not valid JSON${where}`,
      hint: "check for a trailing comma or a missing quote there",
    });
  }
  return parseConfig(data, { ...options, source: path });
}

/** Whether a host name is the local machine (plain http is acceptable there). */
function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, "");
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}
