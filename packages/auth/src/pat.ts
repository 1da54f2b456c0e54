import { registerSecret, StorageError, type TokenSource } from "@stowage/core";
import { opaque } from "./opaque.js";
import { callbackError } from "./redacted-cause.js";

const context = { provider: "auth", operation: "personalAccessToken" };

/**
 * A personal access token (or any bearer token the user supplies), used as is: no handler, no
 * refresh. When the remote rejects it, calls fail with `Unauthenticated` and a hint to make a new
 * one. The function form is called whenever a token is needed, so a caller can rotate it.
 *
 * An empty string is refused at once (`InvalidConfig`); the function form is checked on each call.
 *
 * @example
 * const auth = personalAccessToken(process.env.ONEDRIVE_TOKEN!);
 */
export function personalAccessToken(token: string | (() => string | Promise<string>)): TokenSource {
  let rejected: string | undefined;
  const check = (value: unknown): string => {
    const text = typeof value === "string" ? value.trim() : "";
    if (!text) {
      throw new StorageError({
        ...context,
        code: "InvalidConfig",
        message: "the personal access token is empty",
        hint: "pass the token itself, e.g. from an environment variable",
      });
    }
    registerSecret(text);
    return text;
  };
  const fixed = typeof token === "function" ? undefined : check(token);
  const read = async (): Promise<string> => {
    if (fixed !== undefined) return fixed;
    try {
      return check(await (token as () => string | Promise<string>)());
    } catch (err) {
      throw callbackError(err, context);
    }
  };
  const source: TokenSource = {
    kind: "personal-access-token",
    async getToken() {
      const value = await read();
      if (value === rejected) {
        throw new StorageError({
          ...context,
          code: "Unauthenticated",
          message: "the personal access token was rejected by the server",
          hint: "create a new token (it may have expired or been revoked) and pass it instead",
        });
      }
      return { token: value };
    },
    invalidate(value) {
      rejected = value;
    },
  };
  return opaque(source, "[PersonalAccessToken]", { kind: source.kind });
}
