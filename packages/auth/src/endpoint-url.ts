import { redactUrl, StorageError } from "@stowage/core";

export interface EndpointUrlRules {
  /** Names the strategy in errors. */
  operation: string;
  /** What the URL is, in messages: `the handler URL`, `the token URL`. */
  what: string;
  /** Allow plain http to 127.0.0.0/8, ::1 and localhost (a handler or emulator on this machine). */
  loopbackHttp: boolean;
  /** The hint when plain http is refused. */
  httpHint: string;
  /** An example of a good URL, for the hint when the value is not a URL. */
  example: string;
}

/**
 * Checks a URL that credentials are sent to: https, or http on loopback where allowed, and no user
 * name or password in it (they would be sent and shown). Failures are `InvalidConfig`.
 */
export function endpointUrl(value: string | URL | undefined, rules: EndpointUrlRules): URL {
  const text = String(value ?? "").trim();
  const fail = (message: string, hint: string) =>
    new StorageError({ provider: "auth", operation: rules.operation, code: "InvalidConfig", message, hint });
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw fail(
      text === "" ? `${rules.what} is missing` : `${rules.what} '${redactUrl(text)}' is not a valid URL`,
      `give an absolute URL, e.g. ${rules.example}`,
    );
  }
  if (url.username || url.password) {
    throw fail(
      `${rules.what} carries a user name or password`,
      "remove them from the URL; give secrets as options",
    );
  }
  if (url.protocol === "https:") return url;
  const shown = redactUrl(url);
  if (url.protocol === "http:" && rules.loopbackHttp && isLoopback(url.hostname)) return url;
  if (url.protocol !== "http:")
    throw fail(`${rules.what} must be https, not '${shown}'`, `e.g. ${rules.example}`);
  throw fail(
    rules.loopbackHttp
      ? `${rules.what} may use http only on loopback (127.0.0.0/8, ::1, localhost), not '${shown}': secrets travel with every request`
      : `${rules.what} must be https, not '${shown}': secrets travel with every request`,
    rules.httpHint,
  );
}

/** 127.0.0.0/8, ::1 and localhost; the URL parser has already normalised `127.1`, `[0::1]` and the like. */
export function isLoopback(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/^\[(.*)\]$/, "$1");
  return host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}
