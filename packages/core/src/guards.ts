import type { TokenSource } from "./types.js";

/** Whether `value` has the shape of a {@link TokenSource} (for validating an `auth` option). */
export function isTokenSource(value: unknown): value is TokenSource {
  const candidate = value as Partial<TokenSource> | null;
  return (
    typeof candidate === "object" &&
    candidate !== null &&
    typeof candidate.getToken === "function" &&
    typeof candidate.invalidate === "function"
  );
}
