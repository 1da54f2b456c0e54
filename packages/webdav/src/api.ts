import type { Readable } from "node:stream";
import {
  type BasicCredentials,
  createHttpClient,
  type HttpClient,
  type HttpResponse,
  isStorageError,
  type Logger,
  type RetryOptions,
  registerSecret,
  StorageError,
  type TokenSource,
} from "@stowage/core";
import { classifyWebDavResponse } from "./errors.js";
import { type DavResource, parseMultistatus, propfindBody } from "./multistatus.js";
import { pathFromSegments } from "./names.js";

export interface WebDavApiOptions {
  /** The server's origin, `http(s)://host:port`. */
  origin: string;
  auth?: BasicCredentials | TokenSource;
  concurrency?: number;
  retry?: RetryOptions | false;
  connectTimeoutMs?: number;
  headersTimeoutMs?: number;
  bodyTimeoutMs?: number;
  logger?: Logger;
}

/** Names a call in errors: the storage operation and the key it was for. */
export interface CallContext {
  operation: string;
  key?: string;
  signal?: AbortSignal;
}

/** A remote path: decoded segments from the server's root (`/`), as stored (already name-encoded). */
export type RemotePath = readonly string[];

export interface PutOptions {
  /** Sent as Content-Length for a stream (a byte array carries its own). */
  size?: number;
  contentType?: string;
  /** `If-None-Match: *`: honoured by Apache (412 when the object exists), ignored by some servers. */
  ifNoneMatch?: boolean;
}

/**
 * The namespace of Apache mod_dav_fs's live properties, declared in every multistatus it sends. Its
 * PUT writes to a hidden temporary file (`.davfs.tmp…`, never listed) and renames it into place, or
 * removes it when the body does not arrive whole: a PUT there is already atomic.
 */
const MOD_DAV_FS_NAMESPACE = "http://apache.org/dav/props/";

function isBasic(auth: BasicCredentials | TokenSource | undefined): auth is BasicCredentials {
  return auth?.kind === "basic" && typeof (auth as BasicCredentials).get === "function";
}

/**
 * The WebDAV methods Stowage sends, on core's HTTP client (undici): one connection pool, bearer
 * tokens with invalidate-and-retry on 401, Retry-After, retries of replayable requests, redaction,
 * and the status table of errors.ts. Basic credentials are read per request, so they may rotate.
 */
export class WebDavApi {
  private readonly http: HttpClient;
  private readonly origin: string;
  private readonly basic?: BasicCredentials;
  // Native private fields: never serialised or inspected, since they hold the password.
  #lastCredentials?: { username: string; password: string };
  #lastAuthorization: Record<string, string> = {};

  /**
   * Whether the server's own PUT is atomic: unknown until a multistatus shows which server this is;
   * true for Apache mod_dav_fs.
   */
  putIsAtomic?: boolean;

  constructor(options: WebDavApiOptions) {
    this.origin = options.origin;
    this.basic = isBasic(options.auth) ? options.auth : undefined;
    this.http = createHttpClient({
      provider: "webdav",
      tokenSource: isBasic(options.auth) ? undefined : options.auth,
      concurrency: options.concurrency,
      retry: options.retry,
      connectTimeoutMs: options.connectTimeoutMs,
      headersTimeoutMs: options.headersTimeoutMs,
      bodyTimeoutMs: options.bodyTimeoutMs,
      logger: options.logger,
      classify: classifyWebDavResponse,
    });
  }

  /** The absolute URL of a remote path; collections end with `/`. */
  url(path: RemotePath, collection = false): string {
    return `${this.origin}${pathFromSegments(path, collection)}`;
  }

  private async authorization(signal?: AbortSignal): Promise<Record<string, string>> {
    if (!this.basic) return {};
    const credentials = await this.basic.get({ signal });
    // Fixed credentials come back as the same object each time: encode them once.
    if (credentials !== this.#lastCredentials) {
      const encoded = Buffer.from(`${credentials.username}:${credentials.password}`, "utf8").toString(
        "base64",
      );
      // A server that echoes the header back in an error body must not leak it.
      registerSecret(encoded);
      this.#lastCredentials = credentials;
      this.#lastAuthorization = { authorization: `Basic ${encoded}` };
    }
    return this.#lastAuthorization;
  }

  private async send(
    call: CallContext,
    method: string,
    url: string,
    init: { headers?: Record<string, string>; body?: string | Uint8Array | Readable; expect?: number[] } = {},
  ): Promise<HttpResponse> {
    return this.http.request({
      method,
      url,
      operation: call.operation,
      key: call.key,
      signal: call.signal,
      headers: { ...(await this.authorization(call.signal)), ...init.headers },
      body: init.body,
      expect: init.expect,
    });
  }

  /**
   * PROPFIND with Depth 0 or 1. Resolves with the responses, or `undefined` when the path does not
   * exist (404, or 409 when a parent is an object).
   */
  async propfind(
    call: CallContext,
    path: RemotePath,
    depth: 0 | 1,
    collection: boolean,
  ): Promise<DavResource[] | undefined> {
    let response: HttpResponse;
    try {
      response = await this.send(call, "PROPFIND", this.url(path, collection), {
        headers: { depth: String(depth), "content-type": "application/xml; charset=utf-8" },
        body: propfindBody,
        expect: [207, 404, 409],
      });
    } catch (err) {
      if (isStorageError(err) && err.status === 405) {
        throw new StorageError({
          provider: "webdav",
          operation: call.operation,
          key: call.key,
          code: "Unsupported",
          status: 405,
          message: `PROPFIND ${pathFromSegments(path, collection)} returned 405 Method Not Allowed: the URL does not lead to a WebDAV folder`,
          hint: "check the URL: it must point at the server's WebDAV endpoint (e.g. /remote.php/dav/files/USER on Nextcloud)",
          cause: err,
        });
      }
      throw err;
    }
    if (response.status !== 207) {
      await response.dump();
      return undefined;
    }
    const text = await response.text();
    this.putIsAtomic ??= text.includes(MOD_DAV_FS_NAMESPACE);
    try {
      return parseMultistatus(text);
    } catch (err) {
      throw new StorageError({
        provider: "webdav",
        operation: call.operation,
        key: call.key,
        code: "Protocol",
        message: `PROPFIND ${pathFromSegments(path, collection)} answered 207 with a body that is not a multistatus (${text.length} characters)`,
        hint: "check that the URL points at a WebDAV server",
        cause: err,
      });
    }
  }

  /** GET, with a byte range when asked (206, or 416 for a range that starts at the end). */
  get(
    call: CallContext,
    path: RemotePath,
    range?: { offset: number; length?: number },
  ): Promise<HttpResponse> {
    const headers: Record<string, string> = {};
    if (range) {
      const end = range.length === undefined ? "" : String(range.offset + range.length - 1);
      headers.range = `bytes=${range.offset}-${end}`;
    }
    return this.send(call, "GET", this.url(path), { headers, expect: range ? [200, 206, 416] : [200] });
  }

  /**
   * PUT. A byte array is replayable (retried on transient failures); a stream is sent once, with
   * Content-Length when its size is known and chunked otherwise. Resolves with the status, which is
   * 400, 404 or 409 when the server refuses the object's place (see upload.ts), and the ETag when the
   * server sends one (rclone serve does; Apache and webdav-server do not).
   */
  async put(
    call: CallContext,
    path: RemotePath,
    body: Uint8Array | Readable,
    options: PutOptions = {},
  ): Promise<{ status: number; etag?: string }> {
    const headers: Record<string, string> = {
      "content-type": options.contentType ?? "application/octet-stream",
    };
    if (!(body instanceof Uint8Array) && options.size !== undefined)
      headers["content-length"] = String(options.size);
    if (options.ifNoneMatch) headers["if-none-match"] = "*";
    const response = await this.send(call, "PUT", this.url(path), {
      headers,
      body,
      expect: [200, 201, 204, 400, 404, 409],
    });
    await response.dump();
    const etag = response.headers.etag;
    return etag ? { status: response.status, etag } : { status: response.status };
  }

  /** MKCOL. Resolves with 201 (created), 405 (something has this name), 403, 409 or 404 (parent missing). */
  async mkcol(call: CallContext, path: RemotePath): Promise<number> {
    const response = await this.send(call, "MKCOL", this.url(path, true), {
      expect: [201, 403, 404, 405, 409],
    });
    await response.dump();
    return response.status;
  }

  /** MOVE with `Overwrite: T` or `F`. Resolves with the status: 201/204, or 412 when not overwriting. */
  async move(call: CallContext, from: RemotePath, to: RemotePath, overwrite: boolean): Promise<number> {
    const response = await this.send(call, "MOVE", this.url(from), {
      headers: { destination: this.url(to), overwrite: overwrite ? "T" : "F" },
      expect: [201, 204, 412],
    });
    await response.dump();
    return response.status;
  }

  /** DELETE; a missing path is not an error (200, 204 and 404 all resolve). */
  async delete(call: CallContext, path: RemotePath): Promise<void> {
    const response = await this.send(call, "DELETE", this.url(path), { expect: [200, 202, 204, 404] });
    await response.dump();
  }

  close(): Promise<void> {
    return this.http.close();
  }
}
