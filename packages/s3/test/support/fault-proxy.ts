import {
  Agent,
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  request,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";

/** A request as the proxy saw it. */
export interface SeenRequest {
  method: string;
  /** Path and query, as sent. */
  url: string;
  headers: IncomingHttpHeaders;
}

export interface FaultRule {
  /** Which requests the rule applies to. */
  match: (request: SeenRequest) => boolean;
  /** How many matching requests it applies to; default: all. */
  times?: number;
  /** Answer with an S3-style error instead of forwarding (no body for HEAD, as S3 does). */
  respond?: { status: number; code?: string; message?: string; headers?: Record<string, string> };
  /** Destroy the connection instead of answering. */
  reset?: boolean;
  /** Wait this long before acting (or forwarding). */
  delayMs?: number;
  /** Forward, dropping these request headers (e.g. `range`, to play a server that ignores ranges). */
  dropRequestHeaders?: string[];
  /** Forward, then change the response headers (lower-case names; `undefined` removes one). */
  responseHeaders?: Record<string, string | undefined>;
}

export interface FaultProxy {
  endpoint: string;
  /** Every request received, in order. */
  readonly requests: SeenRequest[];
  /** The most requests that were in progress at once. */
  readonly maxInFlight: number;
  add(rule: FaultRule): void;
  /** Forgets rules, requests and the in-flight peak. */
  reset(): void;
  close(): Promise<void>;
}

function s3ErrorBody(code: string, message: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message><RequestId>stowage-test</RequestId></Error>`;
}

/**
 * An HTTP proxy in front of a real server (s3rver) that records requests and injects faults: S3 error
 * responses, connection resets, delays, dropped request headers and rewritten response headers. For
 * the cases a real server cannot be made to produce (SlowDown, InternalError, a wrong secret on a
 * server that does not check signatures).
 */
export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const upstream = new URL(target);
  const rules: Array<FaultRule & { used: number }> = [];
  // Connections to the server are not reused, so none outlives the proxy.
  const agent = new Agent({ keepAlive: false });
  const timers = new Set<NodeJS.Timeout>();
  const requests: SeenRequest[] = [];
  let inFlight = 0;
  let maxInFlight = 0;

  const forward = (req: IncomingMessage, res: ServerResponse, rule: FaultRule | undefined) => {
    const headers = { ...req.headers };
    for (const name of rule?.dropRequestHeaders ?? []) delete headers[name];
    const outgoing = request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers, agent },
      (response) => {
        const responseHeaders: Record<string, string | string[] | undefined> = { ...response.headers };
        for (const [name, value] of Object.entries(rule?.responseHeaders ?? {})) {
          if (value === undefined) delete responseHeaders[name];
          else responseHeaders[name] = value;
        }
        res.writeHead(response.statusCode ?? 502, responseHeaders);
        response.pipe(res);
      },
    );
    outgoing.on("error", () => res.destroy());
    req.pipe(outgoing);
  };

  const server = createServer((req, res) => {
    const seen: SeenRequest = { method: req.method ?? "GET", url: req.url ?? "/", headers: req.headers };
    requests.push(seen);
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    res.on("close", () => {
      inFlight--;
    });
    const rule = rules.find((r) => r.used < (r.times ?? Number.POSITIVE_INFINITY) && r.match(seen));
    if (rule) rule.used++;
    const act = () => {
      if (rule?.reset) {
        req.socket.destroy();
        return;
      }
      if (rule?.respond) {
        const { status, code, message, headers } = rule.respond;
        // Read the request body first, as a server does, so the client does not see a reset instead.
        req.resume();
        req.on("end", () => {
          const body = req.method === "HEAD" || code === undefined ? "" : s3ErrorBody(code, message ?? code);
          res.writeHead(status, {
            "content-type": "application/xml",
            "content-length": Buffer.byteLength(body),
            ...headers,
          });
          res.end(body);
        });
        return;
      }
      forward(req, res, rule);
    };
    if (rule?.delayMs) {
      const timer = setTimeout(() => {
        timers.delete(timer);
        if (!res.destroyed) act();
      }, rule.delayMs);
      timers.add(timer);
    } else act();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    get maxInFlight() {
      return maxInFlight;
    },
    add(rule) {
      rules.push({ ...rule, used: 0 });
    },
    reset() {
      rules.length = 0;
      requests.length = 0;
      maxInFlight = inFlight;
    },
    close() {
      for (const timer of timers) clearTimeout(timer);
      server.closeAllConnections();
      agent.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
