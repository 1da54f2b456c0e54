/**
 * A transparent HTTP proxy in front of a real WebDAV server that records every request and can
 * answer some of them itself: for the cases no test server produces (507, 5xx, a reset connection, a
 * server that ignores Range, bearer tokens), per DESIGN §6's fault proxy. Listens on 127.0.0.1.
 */
import { createServer, request as forward, type IncomingMessage, type ServerResponse } from "node:http";

export interface RecordedRequest {
  method: string;
  /** As sent, percent-encoded. */
  path: string;
  headers: IncomingMessage["headers"];
}

/** What to do with a request instead of (or before) forwarding it. */
export interface Fault {
  method?: string;
  /** Matches the request path (percent-encoded) when given. */
  path?: RegExp;
  /** How many requests it applies to; default every one. */
  times?: number;
  /** Answer with this status (and headers/body) instead of forwarding. */
  status?: number;
  headers?: Record<string, string>;
  body?: string;
  /** Destroy the connection without an answer. */
  reset?: boolean;
  /** Forward, but without these request headers (e.g. `range`, to act as a server that ignores it). */
  dropHeaders?: string[];
}

export interface FaultProxy {
  /** The proxy's URL for the target's path. */
  url: string;
  requests: RecordedRequest[];
  add(fault: Fault): void;
  /** Checks the Authorization header before forwarding: return the header to send upstream, or undefined for a 401. */
  authorize?: (authorization: string | undefined) => string | undefined;
  close(): Promise<void>;
}

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const upstream = new URL(target);
  const faults: Fault[] = [];
  const requests: RecordedRequest[] = [];
  const proxy: FaultProxy = {
    url: "",
    requests,
    add: (fault) => void faults.push(fault),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };

  const matching = (req: IncomingMessage): Fault | undefined => {
    const index = faults.findIndex(
      (f) =>
        (f.method === undefined || f.method === req.method) &&
        (f.path === undefined || f.path.test(req.url ?? "")),
    );
    if (index < 0) return undefined;
    const fault = faults[index]!;
    if (fault.times !== undefined && --fault.times <= 0) faults.splice(index, 1);
    return fault;
  };

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    requests.push({ method: req.method ?? "", path: req.url ?? "", headers: { ...req.headers } });
    const fault = matching(req);
    if (fault?.reset) {
      req.socket.destroy();
      return;
    }
    if (fault?.status !== undefined) {
      req.resume();
      res.writeHead(fault.status, { "content-type": "text/plain", ...fault.headers });
      res.end(fault.body ?? "");
      return;
    }
    const headers: Record<string, string | string[] | undefined> = { ...req.headers, host: upstream.host };
    for (const name of fault?.dropHeaders ?? []) delete headers[name];
    if (proxy.authorize) {
      const upstreamAuthorization = proxy.authorize(req.headers.authorization);
      if (upstreamAuthorization === undefined) {
        req.resume();
        res.writeHead(401, { "www-authenticate": 'Bearer realm="test"' });
        res.end("invalid token");
        return;
      }
      headers.authorization = upstreamAuthorization;
    }
    // Destination names the proxy; the server must see its own origin there.
    if (typeof headers.destination === "string") {
      headers.destination = headers.destination.replace(/^https?:\/\/[^/]+/, upstream.origin);
    }
    const outgoing = forward(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    outgoing.on("error", () => res.destroy());
    req.pipe(outgoing);
  };

  const server = createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const { port } = server.address() as { port: number };
  proxy.url = `http://127.0.0.1:${port}${upstream.pathname.replace(/\/$/, "")}`;
  return proxy;
}
