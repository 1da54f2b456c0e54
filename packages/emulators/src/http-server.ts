import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createTlsServer } from "node:https";
import type { AddressInfo, Socket } from "node:net";
import type { Faults } from "./faults.js";

/** What an emulator does with one request. It may throw an {@link HttpError} to answer with an error. */
export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

export interface HttpServerOptions {
  /** Consulted before `handler` for every request, so every emulator gets the same fault injection. */
  faults?: Faults;
  /**
   * Serve https with this certificate (PEM), for clients that refuse plain http. The URL then starts
   * with `https://`; the client must be made to trust the certificate.
   */
  tls?: { key: string | Buffer; cert: string | Buffer };
}

/** A listening emulator server. */
export interface RunningServer {
  /** `http://127.0.0.1:<port>` (`https://` with `tls`), without a trailing slash. */
  readonly url: string;
  readonly port: number;
  /**
   * Stops listening and destroys every open connection, keep-alive ones included, so that a test
   * ends at once instead of waiting for idle sockets to time out. Calling it again is harmless.
   */
  close(): Promise<void>;
}

/**
 * An error an emulator handler throws to answer with `status` and a JSON `body` (an OAuth
 * `{error, error_description}`, a Graph `{error: {code, message}}`, …).
 *
 * @example
 * throw new HttpError(400, { error: "invalid_grant", error_description: "the code was already used" });
 */
export class HttpError extends Error {
  readonly status: number;
  readonly body: unknown;
  readonly headers: Record<string, string>;

  constructor(status: number, body: unknown, headers: Record<string, string> = {}) {
    super(`HTTP ${status}: ${JSON.stringify(body)}`);
    this.name = "HttpError";
    this.status = status;
    this.body = body;
    this.headers = headers;
  }
}

/**
 * Starts an HTTP (or, with `tls`, https) server on 127.0.0.1 with a port chosen by the system. Faults (when given) are
 * applied first; an {@link HttpError} thrown by the handler becomes its response; any other error
 * becomes a 500 whose body names it, so that an emulator bug shows up in the failing test.
 *
 * @example
 * const faults = createFaults();
 * const server = await startHttpServer((req, res) => sendJson(res, 200, { ok: true }), { faults });
 * // … fetch(`${server.url}/anything`) …
 * await server.close();
 */
export async function startHttpServer(
  handler: RequestHandler,
  options: HttpServerOptions = {},
): Promise<RunningServer> {
  const sockets = new Set<Socket>();
  const dispatch = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    try {
      if (options.faults && (await options.faults.handle(req, res))) return;
      await handler(req, res);
    } catch (err) {
      if (res.headersSent) {
        res.destroy();
      } else if (err instanceof HttpError) {
        sendJson(res, err.status, err.body, err.headers);
      } else {
        const what = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
        sendJson(res, 500, { error: "emulator_error", error_description: what });
      }
    }
  };
  const listener = (req: IncomingMessage, res: ServerResponse) => {
    void dispatch(req, res);
  };
  const server = options.tls ? createTlsServer(options.tls, listener) : createServer(listener);
  // With TLS, "connection" carries the raw TCP socket: destroying it ends the TLS session too.
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  let closing: Promise<void> | undefined;
  return {
    url: `${options.tls ? "https" : "http"}://127.0.0.1:${port}`,
    port,
    close() {
      closing ??= new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        for (const socket of sockets) socket.destroy();
      });
      return closing;
    },
  };
}

/**
 * Reads a request body whole. Bodies larger than `limitBytes` (default 128 MiB) are refused with a
 * 413 {@link HttpError}, so that a runaway client cannot exhaust the test process.
 */
export async function readBody(req: IncomingMessage, limitBytes = 128 * 1024 * 1024): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limitBytes) {
      req.resume();
      throw new HttpError(413, {
        error: "request_too_large",
        error_description: `more than ${limitBytes} bytes`,
      });
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** Reads an `application/x-www-form-urlencoded` body (OAuth token and revoke requests). */
export async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  return new URLSearchParams((await readBody(req, 1024 * 1024)).toString("utf8"));
}

/** Answers with a JSON body. */
export function sendJson(
  res: ServerResponse,
  status: number,
  value: unknown,
  headers: Record<string, string> = {},
): void {
  const body = JSON.stringify(value);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": String(Buffer.byteLength(body)),
    ...headers,
  });
  res.end(body);
}

/** Answers with an HTML page. */
export function sendHtml(res: ServerResponse, status: number, html: string): void {
  res.writeHead(status, {
    "content-type": "text/html; charset=utf-8",
    "content-length": String(Buffer.byteLength(html)),
  });
  res.end(html);
}

/** The request's path (percent-encoded, as sent) and query, parsed. */
export function requestUrl(req: IncomingMessage): URL {
  // The base only completes the relative request target; it is never shown.
  return new URL(req.url ?? "/", "http://emulator.invalid");
}
