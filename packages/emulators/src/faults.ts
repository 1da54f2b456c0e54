import type { IncomingMessage, ServerResponse } from "node:http";
import { setTimeout as wait } from "node:timers/promises";
import { requestUrl } from "./http-server.js";

/** A canned response a fault sends instead of the emulator's own. */
export interface FaultResponse {
  status: number;
  headers?: Record<string, string>;
  /** A string or bytes are sent as they are; anything else is sent as JSON. */
  body?: string | Uint8Array | object;
}

/**
 * Which requests a fault applies to and what it does to them.
 *
 * A fault may combine `delayMs` with one action: `respond` (with `resetAfterBytes` to cut that
 * response short), `reset`, or `resetAfterBytes` alone (to cut the emulator's own response). With
 * `delayMs` alone the request is delayed and then handled normally.
 */
export interface FaultSpec {
  /** Only requests with this method (any case). Default: every method. */
  method?: string;
  /**
   * A string matches the path exactly, without the query (`/token`); a RegExp is tested against the
   * path with its query (`/upload\?uploadType=resumable/`). Both see the path percent-encoded, as sent.
   */
  path: string | RegExp;
  /** How many matching requests the fault applies to; default 1. `Infinity` keeps it until removed. */
  times?: number;
  /** Answer with this instead of the emulator (429 with Retry-After, 503, 401, …). */
  respond?: FaultResponse;
  /** Destroy the connection without answering (the client sees ECONNRESET / "socket closed"). */
  reset?: boolean;
  /**
   * Let the response start, then destroy the connection once this many body bytes have been sent:
   * a connection reset mid-body. A body shorter than this is sent whole, then the connection is
   * destroyed instead of being kept alive.
   */
  resetAfterBytes?: number;
  /** Wait this long before acting (or before handing the request to the emulator). */
  delayMs?: number;
}

/** One added fault; its counters are live. */
export interface Fault {
  readonly spec: Readonly<FaultSpec>;
  /** Requests it has applied to so far. */
  readonly hits: number;
  /** Requests it will still apply to. */
  readonly remaining: number;
  /** Stops it from applying to further requests. */
  remove(): void;
}

/** A set of faults shared by one emulator's endpoints (or by several emulators, or a fault proxy). */
export interface Faults {
  /**
   * Adds a fault; faults are tried in the order they were added, and the first that matches and has
   * `remaining > 0` applies (only that one).
   *
   * @example
   * faults.add({ method: "POST", path: "/token", times: 2, respond: { status: 503, headers: { "retry-after": "0" } } });
   * faults.add({ path: /\/content$/, resetAfterBytes: 1024 });
   */
  add(spec: FaultSpec): Fault;
  /** Removes every fault. */
  clear(): void;
  /** The faults that will still apply to a request. */
  readonly active: readonly Fault[];
  /**
   * The hook an emulator calls first for each request. Resolves `true` when the fault answered or
   * dropped the request (the emulator must not touch it), `false` when the emulator should handle it
   * (no fault matched, a pure delay, or a `resetAfterBytes` cut that watches the emulator's response).
   */
  handle(req: IncomingMessage, res: ServerResponse): Promise<boolean>;
}

/**
 * Creates an empty fault set. {@link startHttpServer} consults it when given as `faults`; any other
 * `node:http` server can call `handle` itself.
 *
 * @example
 * const faults = createFaults();
 * const server = await startHttpServer(handler, { faults });
 * const fault = faults.add({ path: "/token", respond: { status: 429, headers: { "retry-after": "1" } } });
 * // … run the client …
 * expect(fault.hits).toBe(1);
 */
export function createFaults(): Faults {
  const entries: FaultEntry[] = [];

  const add = (spec: FaultSpec): Fault => {
    const entry = new FaultEntry(checkSpec(spec));
    entries.push(entry);
    return entry;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<boolean> => {
    const entry = entries.find((candidate) => candidate.remaining > 0 && candidate.matches(req));
    if (!entry) return false;
    entry.hit();
    const { spec } = entry;
    if (spec.delayMs) await wait(spec.delayMs);
    if (spec.reset) {
      req.socket.destroy();
      return true;
    }
    if (spec.resetAfterBytes !== undefined) cutAfter(res, spec.resetAfterBytes);
    if (spec.respond) {
      // The request body is not read, but it must be drained for the connection to carry on.
      req.resume();
      sendFaultResponse(res, spec.respond);
      return true;
    }
    return false;
  };

  return {
    add,
    clear() {
      for (const entry of entries) entry.remove();
      entries.length = 0;
    },
    get active() {
      return entries.filter((entry) => entry.remaining > 0);
    },
    handle,
  };
}

class FaultEntry implements Fault {
  readonly spec: Readonly<FaultSpec>;
  private readonly times: number;
  private count = 0;
  private removed = false;

  constructor(spec: FaultSpec) {
    this.spec = Object.freeze({ ...spec });
    this.times = spec.times ?? 1;
  }

  get hits(): number {
    return this.count;
  }

  get remaining(): number {
    return this.removed ? 0 : Math.max(0, this.times - this.count);
  }

  remove(): void {
    this.removed = true;
  }

  hit(): void {
    this.count++;
  }

  matches(req: IncomingMessage): boolean {
    const { method, path } = this.spec;
    if (method !== undefined && method.toUpperCase() !== req.method?.toUpperCase()) return false;
    if (typeof path === "string") return requestUrl(req).pathname === path;
    // A global or sticky RegExp remembers where it last matched; every request starts afresh.
    path.lastIndex = 0;
    return path.test(req.url ?? "/");
  }
}

function checkSpec(spec: FaultSpec): FaultSpec {
  const fail = (what: string): never => {
    throw new TypeError(`faults.add: ${what}`);
  };
  if (typeof spec.path !== "string" && !(spec.path instanceof RegExp))
    fail("path must be a string or a RegExp");
  if (spec.times !== undefined && !(spec.times >= 1)) fail(`times must be at least 1, got ${spec.times}`);
  if (spec.delayMs !== undefined && !(spec.delayMs >= 0)) fail(`delayMs must be ≥ 0, got ${spec.delayMs}`);
  if (spec.resetAfterBytes !== undefined && !(spec.resetAfterBytes >= 0)) {
    fail(`resetAfterBytes must be ≥ 0, got ${spec.resetAfterBytes}`);
  }
  if (spec.reset && (spec.respond || spec.resetAfterBytes !== undefined)) {
    fail("reset drops the connection at once; it cannot be combined with respond or resetAfterBytes");
  }
  if (!spec.respond && !spec.reset && spec.resetAfterBytes === undefined && spec.delayMs === undefined) {
    fail("give respond, reset, resetAfterBytes or delayMs");
  }
  return spec;
}

function sendFaultResponse(res: ServerResponse, response: FaultResponse): void {
  const { body } = response;
  const headers: Record<string, string> = { ...response.headers };
  let bytes: Uint8Array | undefined;
  if (typeof body === "string") {
    bytes = Buffer.from(body);
  } else if (body instanceof Uint8Array) {
    bytes = body;
  } else if (body !== undefined) {
    bytes = Buffer.from(JSON.stringify(body));
    if (!Object.keys(headers).some((name) => name.toLowerCase() === "content-type")) {
      headers["content-type"] = "application/json; charset=utf-8";
    }
  }
  res.writeHead(response.status, headers);
  res.end(bytes);
}

type WriteCallback = (error?: Error | null) => void;

/** Lets at most `limit` body bytes through `res`, then destroys the connection. */
function cutAfter(res: ServerResponse, limit: number): void {
  const write = res.write.bind(res) as (chunk: Uint8Array, callback?: WriteCallback) => boolean;
  const end = res.end.bind(res) as (callback?: () => void) => ServerResponse;
  let sent = 0;
  let cut = false;
  const destroy = () => {
    res.destroy();
  };

  const bytesOf = (chunk: unknown, encoding: unknown): Uint8Array => {
    if (typeof chunk === "string") {
      return Buffer.from(chunk, typeof encoding === "string" ? (encoding as BufferEncoding) : "utf8");
    }
    return chunk instanceof Uint8Array ? chunk : new Uint8Array(0);
  };

  const limitedWrite = (chunk: unknown, encoding?: unknown, callback?: unknown): boolean => {
    const done = typeof encoding === "function" ? encoding : callback;
    if (cut) return false;
    const bytes = bytesOf(chunk, encoding);
    if (sent + bytes.length < limit) {
      sent += bytes.length;
      return write(bytes, done as WriteCallback | undefined);
    }
    cut = true;
    const head = bytes.subarray(0, limit - sent);
    sent = limit;
    // Destroyed once the allowed bytes are handed to the socket, so the client really receives them.
    write(head, destroy);
    return false;
  };

  // The end callback is not called: the response never ends cleanly, its connection is destroyed.
  const limitedEnd = (chunk?: unknown, encoding?: unknown): ServerResponse => {
    if (chunk !== undefined && typeof chunk !== "function") limitedWrite(chunk, encoding);
    if (!cut) {
      cut = true;
      end(destroy);
    }
    return res;
  };

  res.write = limitedWrite as typeof res.write;
  res.end = limitedEnd as typeof res.end;
}
