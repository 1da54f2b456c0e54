import {
  type Logger,
  type ParamSpec,
  type ParsedConnection,
  redactingLogger,
  StorageError,
  type TokenSource,
} from "@stowage/core";
import { loginUrlFor } from "./authid.js";
import { handlerSource } from "./handler.js";
import { oauthRefreshToken } from "./oauth.js";
import { personalAccessToken } from "./pat.js";

/**
 * The connection parameters of the bearer strategies. A provider spreads them into its descriptor's
 * `params` and lists {@link authObjectOptions} in its `objectOptions`.
 *
 * @example
 * registerProvider({ provider: "onedrive", schemes: ["onedrive"], params: { ...authParams, … },
 *   objectOptions: [...authObjectOptions, "logger"], open: (connection) => … });
 */
export const authParams: Record<string, ParamSpec> = {
  authid: {
    description: "an AuthID from an OAuth handler: KEYID:SECRET, or v2:<service>:<refresh token>",
    secret: true,
  },
  "oauth-url": {
    description:
      "the OAuth handler's refresh URL, e.g. https://handler.example.com/refresh (http only on loopback)",
  },
  token: { description: "a personal access token, sent as the bearer token as it is", secret: true },
  "client-id": { description: "your app registration's client id, for direct OAuth (with refresh-token)" },
  "client-secret": { description: "your app registration's client secret, for direct OAuth", secret: true },
  "refresh-token": { description: "a refresh token for direct OAuth (with client-id)", secret: true },
  "token-url": { description: "the provider's OAuth token endpoint, for direct OAuth" },
  "api-key": { description: "the X-API-Key a self-hosted handler requires", secret: true },
};

/**
 * The object options the bearer strategies read: `auth` (any `TokenSource`, which wins over URL
 * parameters) and `onRotate` (stores a rotated refresh token for URL-configured direct OAuth).
 */
export const authObjectOptions = ["auth", "onRotate"] as const;

export interface AuthDefaults {
  /** The provider id the handler knows (`onedrive`, `gdrive`, …); completes login URLs (`/?type=`). */
  provider: string;
  /** The provider's token endpoint, when `token-url` is not given. */
  tokenUrl?: string;
  /** The handler used when `authid` comes without `oauth-url`. */
  hostedUrl?: string;
}

type Strategy = "auth" | "token" | "authid" | "oauth";

/** The parameters that choose each strategy, and those that only complete one. */
const choosing: Record<Exclude<Strategy, "auth">, readonly string[]> = {
  token: ["token"],
  authid: ["authid"],
  oauth: ["client-id", "refresh-token"],
};
const completing: Record<string, Exclude<Strategy, "auth">> = {
  "oauth-url": "authid",
  "api-key": "authid",
  "client-secret": "oauth",
  "token-url": "oauth",
};

// URL query > options > environment, as for every parameter (DESIGN §3, connection URLs).
const rank = { url: 0, options: 1, env: 2 } as const;

const describeStrategy: Record<Strategy, string> = {
  auth: "the auth option",
  token: "'token'",
  authid: "'authid'",
  oauth: "'client-id'/'refresh-token'",
};

/**
 * Builds the bearer token source a connection asks for, in this order: the `auth` object option;
 * else `token` (a personal access token); else `authid` with `oauth-url` (or `defaults.hostedUrl`) —
 * a self-hosted handler when the URL is plain http (loopback only) or an `api-key` is given, else a
 * hosted one; else `client-id` + `refresh-token` (+ `client-secret`, `token-url`) for direct OAuth,
 * whose rotated refresh tokens go to the `onRotate` object option (without one, a warning says the
 * rotated token is not stored). Returns `undefined` when no credentials are given.
 *
 * Two strategies given at the same precedence level (both in the URL, say `token` and `authid`) are
 * `InvalidConfig` naming both; one given at a lower level (the environment) than another is ignored
 * with a warning.
 *
 * @example
 * open(connection) {
 *   const tokenSource = tokenSourceFromConnection(connection, { provider: "onedrive", tokenUrl: MS_TOKEN_URL });
 *   if (!tokenSource) throw new StorageError({ code: "InvalidConfig", message: "onedrive needs credentials", … });
 * }
 */
export function tokenSourceFromConnection(
  connection: ParsedConnection,
  defaults: AuthDefaults,
): TokenSource | undefined {
  const { params, sources, objects } = connection;
  const logger = redactingLogger(objects.logger as Logger | undefined);
  const levelOf = (names: readonly string[]) =>
    Math.min(
      ...names.filter((name) => params[name] !== undefined).map((name) => rank[sources[name] ?? "options"]),
    );

  const given: Array<{ strategy: Strategy; level: number }> = [];
  if (objects.auth !== undefined) given.push({ strategy: "auth", level: rank.options });
  for (const [strategy, names] of Object.entries(choosing) as Array<
    [Exclude<Strategy, "auth">, readonly string[]]
  >) {
    const level = levelOf(names);
    if (Number.isFinite(level)) given.push({ strategy, level });
  }

  if (given.length === 0) {
    const stray = Object.keys(completing).find(
      (name) => params[name] !== undefined && sources[name] !== "env",
    );
    if (stray) throw incomplete(stray, completing[stray]!, params, defaults);
    return undefined;
  }

  const best = Math.min(...given.map((entry) => entry.level));
  const chosen = given.filter((entry) => entry.level === best);
  if (chosen.length > 1) {
    const names = chosen.map((entry) => describeStrategy[entry.strategy]);
    throw configError(
      `conflicting credentials: ${names.join(" and ")} are both given`,
      "give one way to sign in: remove the others",
    );
  }
  const strategy = chosen[0]!.strategy;
  for (const ignored of given.filter((entry) => entry.level !== best)) {
    logger.warn(
      { param: ignored.strategy, url: connection.url },
      `${describeStrategy[ignored.strategy]} is ignored: ${describeStrategy[strategy]} takes precedence`,
    );
  }

  switch (strategy) {
    case "auth":
      return authOption(objects.auth, connection.provider);
    case "token":
      return personalAccessToken(params.token!);
    case "authid":
      return handlerFromConnection(connection, defaults, logger);
    case "oauth":
      return oauthFromConnection(connection, defaults, logger);
  }
}

function handlerFromConnection(
  connection: ParsedConnection,
  defaults: AuthDefaults,
  logger: Logger,
): TokenSource {
  const { params, sources } = connection;
  const url = params["oauth-url"] ?? defaults.hostedUrl;
  if (url === undefined) {
    throw configError(
      "'authid' needs 'oauth-url': there is no default handler for this provider",
      "set oauth-url to the handler's refresh URL, e.g. https://handler.example.com/refresh",
    );
  }
  // Plain http is only for a handler on this machine, and an API key only means something to one's
  // own handler: both say "self-hosted".
  const selfHosted = /^\s*http:/i.test(url) || params["api-key"] !== undefined;
  return handlerSource(
    selfHosted ? "selfHostedHandler" : "hostedHandler",
    { authId: params.authid!, url, apiKey: params["api-key"], provider: defaults.provider, logger },
    { authIdDecoded: sources.authid === "url" },
  );
}

function oauthFromConnection(
  connection: ParsedConnection,
  defaults: AuthDefaults,
  logger: Logger,
): TokenSource {
  const { params, objects } = connection;
  for (const name of ["client-id", "refresh-token"]) {
    if (params[name] === undefined) {
      throw configError(
        `direct OAuth needs both 'client-id' and 'refresh-token'; '${name}' is missing`,
        `add ${name}`,
      );
    }
  }
  const tokenUrl = params["token-url"] ?? defaults.tokenUrl;
  if (tokenUrl === undefined) {
    throw configError(
      "direct OAuth needs 'token-url' for this provider",
      "set token-url to the provider's OAuth token endpoint",
    );
  }
  if (objects.onRotate !== undefined && typeof objects.onRotate !== "function") {
    throw configError("the onRotate option must be a function", "pass (refreshToken) => store(refreshToken)");
  }
  const onRotate =
    (objects.onRotate as ((refreshToken: string) => void | Promise<void>) | undefined) ??
    (() => {
      logger.warn(
        { provider: connection.provider, url: connection.url },
        "the provider rotated the refresh token and it is not stored: the refresh-token in this connection may stop working; pass an onRotate function in the options to store the new one",
      );
    });
  return oauthRefreshToken({
    tokenUrl,
    clientId: params["client-id"]!,
    clientSecret: params["client-secret"],
    refreshToken: params["refresh-token"]!,
    onRotate,
    logger,
  });
}

function authOption(auth: unknown, provider: string): TokenSource {
  const candidate =
    (typeof auth === "object" || typeof auth === "function") && auth !== null
      ? (auth as Partial<TokenSource>)
      : {};
  if (typeof candidate.getToken === "function" && typeof candidate.invalidate === "function") {
    return candidate as TokenSource;
  }
  const kind = typeof candidate.kind === "string" ? candidate.kind : undefined;
  throw configError(
    kind === "basic" || kind === "static"
      ? // Written so that redaction, which takes "basic …" and "bearer …" for credentials, leaves it whole.
        `the auth option is ${kind}Credentials(…), but ${provider} needs a token source`
      : `the auth option is not a token source (it has no getToken and invalidate)`,
    "pass personalAccessToken(…), hostedHandler(…), selfHostedHandler(…) or oauthRefreshToken(…) from @stowage/auth",
  );
}

function incomplete(
  param: string,
  strategy: Exclude<Strategy, "auth">,
  params: Record<string, string>,
  defaults: AuthDefaults,
): StorageError {
  if (strategy === "oauth") {
    return configError(
      `'${param}' is set but 'client-id' and 'refresh-token' are missing`,
      "direct OAuth needs client-id and refresh-token",
    );
  }
  const handler = params["oauth-url"] ?? defaults.hostedUrl;
  const login =
    handler !== undefined && URL.canParse(handler) ? loginUrlFor(handler, defaults.provider) : undefined;
  return configError(
    `'${param}' is set but 'authid' is missing`,
    login ? `add authid; get an AuthID at ${login}` : "add authid, the AuthID from the handler's login page",
  );
}

function configError(message: string, hint: string): StorageError {
  return new StorageError({ provider: "auth", operation: "connect", code: "InvalidConfig", message, hint });
}
