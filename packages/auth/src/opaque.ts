const inspectSymbol = Symbol.for("nodejs.util.inspect.custom");

/**
 * Makes an object that holds secrets in closures safe to print: `String(value)`, `util.inspect` and
 * `console.log` show `description`, and `JSON.stringify` shows only `summary`. The added members are
 * not enumerable, so spreading or `Object.keys` see only the object's own public fields.
 */
export function opaque<T extends object>(value: T, description: string, summary: Record<string, unknown>): T {
  Object.defineProperties(value, {
    toString: { value: () => description, enumerable: false },
    toJSON: { value: () => summary, enumerable: false },
    [inspectSymbol]: { value: () => description, enumerable: false },
  });
  return value;
}
