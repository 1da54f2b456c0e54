/**
 * Drive's partial-response `fields` parameter (reference §B.1): a comma-separated list of field
 * names, where `a(b,c)` selects sub-fields of `a`, `a/b` is a path, and `*` is every field. A name
 * the resource does not have is a 400, as on Drive.
 */

/** A parsed mask: each selected field, with the mask of its sub-fields (`true` = the whole value). */
export type FieldMask = Map<string, FieldMask | true>;

/** Which field names a resource has, with the schema of nested resources. */
export interface FieldSchema {
  readonly fields: ReadonlySet<string>;
  readonly nested?: Readonly<Record<string, FieldSchema>>;
}

/** A mask that names a field the resource does not have, or does not parse. */
export class FieldMaskError extends Error {
  override readonly name = "FieldMaskError";
}

/** Parses a `fields` value. */
export function parseFieldMask(text: string): FieldMask {
  let position = 0;
  const parseList = (closing: boolean): FieldMask => {
    const mask: FieldMask = new Map();
    for (;;) {
      const match = /^\s*([A-Za-z_*][A-Za-z0-9_]*(?:\/[A-Za-z_*][A-Za-z0-9_]*)*)\s*/.exec(
        text.slice(position),
      );
      if (!match) throw new FieldMaskError(`Invalid field selection at position ${position}`);
      position += match[0].length;
      const path = match[1]!.split("/");
      let sub: FieldMask | true = true;
      if (text[position] === "(") {
        position++;
        sub = parseList(true);
      }
      // a/b(c) is a((b(c))): build the path from its last segment outwards.
      for (let i = path.length - 1; i >= 1; i--) sub = new Map([[path[i]!, sub]]);
      merge(mask, path[0]!, sub);
      const next = text[position];
      if (next === ",") {
        position++;
        continue;
      }
      if (next === ")" && closing) {
        position++;
        return mask;
      }
      if (next === undefined && !closing) return mask;
      throw new FieldMaskError(`Invalid field selection at position ${position}`);
    }
  };
  return parseList(false);
}

function merge(mask: FieldMask, name: string, sub: FieldMask | true): void {
  const existing = mask.get(name);
  if (existing === undefined || sub === true) {
    mask.set(name, sub);
    return;
  }
  if (existing === true) return;
  for (const [key, value] of sub) merge(existing, key, value);
}

/** Throws {@link FieldMaskError} naming the first field `schema` does not have. */
export function checkFieldMask(mask: FieldMask, schema: FieldSchema, prefix = ""): void {
  for (const [name, sub] of mask) {
    if (name === "*") continue;
    if (!schema.fields.has(name)) throw new FieldMaskError(`Invalid field selection ${prefix}${name}`);
    const nested = schema.nested?.[name];
    if (sub !== true && nested) checkFieldMask(sub, nested, `${prefix}${name}/`);
    else if (sub !== true) throw new FieldMaskError(`Invalid field selection ${prefix}${name}`);
  }
}

/** The parts of `value` that `mask` selects; arrays are filtered element by element. */
export function applyFieldMask(value: unknown, mask: FieldMask | true): unknown {
  if (mask === true || value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map((item) => applyFieldMask(item, mask));
  const source = value as Record<string, unknown>;
  if (mask.has("*")) return source;
  const out: Record<string, unknown> = {};
  for (const [name, sub] of mask) {
    if (source[name] !== undefined) out[name] = applyFieldMask(source[name], sub);
  }
  return out;
}
