import { type BasicCredentials, registerSecret, type StaticCredentials, StorageError } from "@stowage/core";
import { opaque } from "./opaque.js";
import { callbackError } from "./redacted-cause.js";

type Supplier<T> = T | (() => T | Promise<T>);

export interface StaticCredentialsInput {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface BasicCredentialsInput {
  username: string;
  password: string;
}

function missing(strategy: string, field: string, hint: string): StorageError {
  return new StorageError({
    provider: "auth",
    operation: strategy,
    code: "InvalidConfig",
    message: `${field} is missing or empty`,
    hint,
  });
}

function resolver<T extends object>(
  strategy: string,
  supplier: Supplier<T>,
  check: (value: T) => void,
): () => Promise<T> {
  if (typeof supplier !== "function") {
    check(supplier);
    const fixed = { ...supplier };
    return async () => fixed;
  }
  return async () => {
    let value: T;
    try {
      value = await (supplier as () => T | Promise<T>)();
    } catch (err) {
      throw callbackError(err, { provider: "auth", operation: strategy });
    }
    check(value);
    return value;
  };
}

/**
 * S3-style access keys. The function form is called per use, so rotating keys (an STS session, a
 * vault lookup) is a matter of returning the current ones.
 *
 * @example
 * const credentials = staticCredentials({ accessKeyId: "AKIA…", secretAccessKey: process.env.S3_SECRET! });
 */
export function staticCredentials(input: Supplier<StaticCredentialsInput>): StaticCredentials {
  const get = resolver("staticCredentials", input, (value) => {
    if (!value?.accessKeyId)
      throw missing("staticCredentials", "accessKeyId", "pass the access key id of the key pair");
    if (!value.secretAccessKey)
      throw missing("staticCredentials", "secretAccessKey", "pass the secret access key of the key pair");
    registerSecret(value.secretAccessKey);
    registerSecret(value.sessionToken);
  });
  return opaque({ kind: "static" as const, get }, "[StaticCredentials]", { kind: "static" });
}

/**
 * A user name and password, e.g. for WebDAV; an app password works the same way. The function form
 * is called per use.
 *
 * @example
 * const auth = basicCredentials({ username: "me", password: process.env.DAV_APP_PASSWORD! });
 */
export function basicCredentials(input: Supplier<BasicCredentialsInput>): BasicCredentials {
  const get = resolver("basicCredentials", input, (value) => {
    if (!value?.username) throw missing("basicCredentials", "username", "pass the account's user name");
    if (!value.password)
      throw missing("basicCredentials", "password", "pass the password or an app password");
    registerSecret(value.password);
  });
  return opaque({ kind: "basic" as const, get }, "[BasicCredentials]", { kind: "basic" });
}
