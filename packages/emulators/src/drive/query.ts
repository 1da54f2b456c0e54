/**
 * The subset of Drive's `q` search language the emulator understands (reference §B.1, §E):
 * `'<id>' in parents`, `name = | != | contains '<text>'`, `mimeType = | != | contains '<text>'`,
 * `trashed = | != true|false`, joined with `and`, `or`, `not` and parentheses. String values are in
 * single quotes, with `\'` and `\\` escapes. Anything else is refused, so that a client relying on a
 * term the emulator does not model fails loudly instead of matching too much.
 */

/** A parsed query. */
export type QueryNode =
  | { kind: "and" | "or"; left: QueryNode; right: QueryNode }
  | { kind: "not"; operand: QueryNode }
  | { kind: "inParents"; id: string }
  | { kind: "compare"; field: "name" | "mimeType"; op: "=" | "!=" | "contains"; value: string }
  | { kind: "trashed"; op: "=" | "!="; value: boolean };

/** What a query is evaluated against. */
export interface QueryTarget {
  name: string;
  mimeType: string;
  parents: readonly string[];
  trashed: boolean;
}

/** A query the emulator cannot read; the route answers 400 naming the `q` parameter. */
export class QueryError extends Error {
  override readonly name = "QueryError";
}

type Token =
  | { type: "string"; value: string; at: number }
  | { type: "word"; value: string; at: number }
  | { type: "op"; value: string; at: number }
  | { type: "paren"; value: "(" | ")"; at: number };

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    const at = i;
    if (c === "'") {
      let value = "";
      i++;
      for (;;) {
        if (i >= text.length) throw new QueryError(`unterminated string starting at ${at}`);
        const d = text[i]!;
        if (d === "\\") {
          const next = text[i + 1];
          // Drive documents exactly two escapes in string values: \' and \\.
          if (next !== "'" && next !== "\\") {
            throw new QueryError(`invalid escape '\\${next ?? ""}' at ${i}`);
          }
          value += next;
          i += 2;
          continue;
        }
        if (d === "'") {
          i++;
          break;
        }
        value += d;
        i++;
      }
      tokens.push({ type: "string", value, at });
      continue;
    }
    if (c === "(" || c === ")") {
      tokens.push({ type: "paren", value: c, at });
      i++;
      continue;
    }
    const op = /^(!=|<=|>=|=|<|>)/.exec(text.slice(i));
    if (op) {
      tokens.push({ type: "op", value: op[1]!, at });
      i += op[1]!.length;
      continue;
    }
    const word = /^[A-Za-z_][A-Za-z0-9_.]*/.exec(text.slice(i));
    if (!word) throw new QueryError(`unexpected character '${c}' at ${i}`);
    tokens.push({ type: "word", value: word[0], at });
    i += word[0].length;
  }
  return tokens;
}

/** Parses a `q` expression; throws {@link QueryError} naming what is wrong. */
export function parseQuery(text: string): QueryNode {
  const tokens = tokenize(text);
  let position = 0;
  const peek = () => tokens[position];
  const keyword = (token: Token | undefined, word: string) =>
    token?.type === "word" && token.value.toLowerCase() === word;

  const parseOr = (): QueryNode => {
    let left = parseAnd();
    while (keyword(peek(), "or")) {
      position++;
      left = { kind: "or", left, right: parseAnd() };
    }
    return left;
  };
  const parseAnd = (): QueryNode => {
    let left = parseNot();
    while (keyword(peek(), "and")) {
      position++;
      left = { kind: "and", left, right: parseNot() };
    }
    return left;
  };
  const parseNot = (): QueryNode => {
    if (keyword(peek(), "not")) {
      position++;
      return { kind: "not", operand: parseNot() };
    }
    return parsePrimary();
  };
  const parsePrimary = (): QueryNode => {
    const token = peek();
    if (!token) throw new QueryError("the query ends where a term was expected");
    if (token.type === "paren" && token.value === "(") {
      position++;
      const inner = parseOr();
      const close = peek();
      if (close?.type !== "paren" || close.value !== ")")
        throw new QueryError(`missing ')' for '(' at ${token.at}`);
      position++;
      return inner;
    }
    return parseTerm();
  };
  const parseTerm = (): QueryNode => {
    const first = tokens[position++]!;
    if (first.type === "string") {
      const op = tokens[position++];
      const field = tokens[position++];
      if (!keyword(op, "in") || field?.type !== "word") {
        throw new QueryError(`expected '<value> in <field>' at ${first.at}`);
      }
      if (field.value !== "parents") throw new QueryError(`'in ${field.value}' is not supported`);
      return { kind: "inParents", id: first.value };
    }
    if (first.type !== "word") throw new QueryError(`expected a field name at ${first.at}`);
    const opToken = tokens[position++];
    const op = opToken?.type === "op" ? opToken.value : opToken?.type === "word" ? opToken.value : "";
    const value = tokens[position++];
    if (first.value === "name" || first.value === "mimeType") {
      if (op !== "=" && op !== "!=" && op !== "contains") {
        throw new QueryError(`'${first.value}' takes =, != or contains, not '${op}'`);
      }
      if (value?.type !== "string") throw new QueryError(`'${first.value} ${op}' needs a quoted string`);
      return { kind: "compare", field: first.value, op, value: value.value };
    }
    if (first.value === "trashed") {
      if (op !== "=" && op !== "!=") throw new QueryError(`'trashed' takes = or !=, not '${op}'`);
      const literal = value?.type === "word" ? value.value.toLowerCase() : "";
      if (literal !== "true" && literal !== "false")
        throw new QueryError("'trashed' compares with true or false");
      return { kind: "trashed", op, value: literal === "true" };
    }
    throw new QueryError(`the field '${first.value}' is not supported by the emulator`);
  };

  if (tokens.length === 0) throw new QueryError("the query is empty");
  const node = parseOr();
  if (position < tokens.length)
    throw new QueryError(`unexpected '${tokens[position]!.value}' at ${tokens[position]!.at}`);
  return node;
}

// Drive compares names without regard to case (reference §B.1: "name matching with = is
// case-insensitive"); the same folding is used for mimeType, which Drive stores in lower case anyway.
function fold(text: string): string {
  return text.toLowerCase();
}

/**
 * Whether `target` matches `node`. `resolveId` maps an id as written in the query to a file id (the
 * `root` alias to the root folder's id).
 */
export function matchesQuery(
  node: QueryNode,
  target: QueryTarget,
  resolveId: (id: string) => string,
): boolean {
  switch (node.kind) {
    case "and":
      return matchesQuery(node.left, target, resolveId) && matchesQuery(node.right, target, resolveId);
    case "or":
      return matchesQuery(node.left, target, resolveId) || matchesQuery(node.right, target, resolveId);
    case "not":
      return !matchesQuery(node.operand, target, resolveId);
    case "inParents":
      return target.parents.includes(resolveId(node.id));
    case "trashed":
      return (target.trashed === node.value) === (node.op === "=");
    case "compare": {
      const actual = fold(node.field === "name" ? target.name : target.mimeType);
      const wanted = fold(node.value);
      if (node.op === "=") return actual === wanted;
      if (node.op === "!=") return actual !== wanted;
      // Drive's `contains` on a name matches a prefix only (Drive search-terms guide), while on
      // mimeType it is a substring match.
      return node.field === "name" ? actual.startsWith(wanted) : actual.includes(wanted);
    }
  }
}
