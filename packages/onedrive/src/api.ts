import {
  createHttpClient,
  type HttpClient,
  type HttpResponse,
  type Logger,
  type RetryOptions,
  retry,
  StorageError,
  type TokenSource,
} from "@stowage/core";
import { z } from "zod";
import { classifyGraphResponse } from "./errors.js";

/** The fields of a driveItem the storage reads (reference §A.2); Graph sends many more. */
const driveItemSchema = z.object({
  id: z.string().min(1),
  name: z.string(),
  size: z.number().optional(),
  eTag: z.string().optional(),
  lastModifiedDateTime: z.string().optional(),
  file: z.object({ hashes: z.object({ quickXorHash: z.string().optional() }).optional() }).optional(),
  folder: z.object({}).optional(),
  deleted: z.unknown().optional(),
});

export type DriveItem = z.infer<typeof driveItemSchema>;

const childrenSchema = z.object({
  value: z.array(driveItemSchema),
  "@odata.nextLink": z.string().optional(),
});

const sessionSchema = z.object({
  uploadUrl: z.string().min(1),
  expirationDateTime: z.string().optional(),
  nextExpectedRanges: z.array(z.string()).optional(),
});

const sessionStatusSchema = z.object({ nextExpectedRanges: z.array(z.string()).optional() });

/** Who a call is for, in errors and events. */
export interface CallContext {
  operation: string;
  key?: string;
  signal?: AbortSignal;
}

export type ConflictBehavior = "fail" | "replace";

/** What the upload URL said to one fragment. */
export type FragmentAnswer =
  | { kind: "accepted"; next?: number }
  | { kind: "done"; item: DriveItem }
  /** 416: the bytes overlap what the session holds; ask it where it is. */
  | { kind: "overlap" }
  /** 404, or 401 although no token was sent: the session (or its pre-authentication) is gone. */
  | { kind: "gone"; status: number }
  /** The answer was lost after its headers: the fragment may or may not have landed. */
  | { kind: "unknown" };

export interface GraphApiInit {
  /** The API root, e.g. `https://graph.microsoft.com/v1.0`. */
  graphUrl: string;
  driveId?: string;
  tokenSource: TokenSource;
  concurrency?: number;
  retry?: RetryOptions | false;
  connectTimeoutMs?: number;
  headersTimeoutMs?: number;
  bodyTimeoutMs?: number;
  logger?: Logger;
}

/**
 * Percent-encodes one item name for a path (reference §A.1: each segment on its own, never the whole
 * URL). `encodeURIComponent` leaves `!'()*` alone; they are encoded too, so that no name can be read
 * as OData syntax.
 */
export function encodeSegment(name: string): string {
  return encodeURIComponent(name).replace(
    /[!'()*]/g,
    (char) => `%${char.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

/** Typed calls to the Microsoft Graph drive API; every request goes through core's HTTP client. */
export class GraphApi {
  readonly http: HttpClient;
  private readonly drive: string;
  private readonly graphUrl: string;
  private readonly origin: string;
  private readonly retryOptions: RetryOptions | false | undefined;

  constructor(init: GraphApiInit) {
    this.retryOptions = init.retry;
    this.drive = init.driveId === undefined ? "me/drive" : `drives/${encodeSegment(init.driveId)}`;
    this.graphUrl = init.graphUrl;
    this.origin = new URL(init.graphUrl).origin;
    this.http = createHttpClient({
      provider: "onedrive",
      baseUrl: init.graphUrl,
      tokenSource: init.tokenSource,
      concurrency: init.concurrency,
      retry: init.retry,
      connectTimeoutMs: init.connectTimeoutMs,
      headersTimeoutMs: init.headersTimeoutMs,
      bodyTimeoutMs: init.bodyTimeoutMs,
      logger: init.logger,
      classify: classifyGraphResponse,
    });
  }

  /**
   * The URL of the item at a path from the drive root. The trailing colon is always written: without
   * it, OneDrive Personal misreads names ending in "drive" (onedrive-api-docs #941, rclone #3046).
   */
  itemUrl(path: readonly string[]): string {
    return path.length === 0
      ? `${this.drive}/root`
      : `${this.drive}/root:/${path.map(encodeSegment).join("/")}:`;
  }

  /** The drive resource: proves the token is accepted by Graph. */
  async getDrive(context: CallContext): Promise<void> {
    await (await this.http.request({ method: "GET", url: this.drive, ...context })).dump();
  }

  /** The item at a path, or undefined when there is none. */
  async getItem(path: readonly string[], context: CallContext): Promise<DriveItem | undefined> {
    try {
      return await this.json({ method: "GET", url: this.itemUrl(path) }, driveItemSchema, context);
    } catch (err) {
      if (err instanceof StorageError && err.code === "NotFound") return undefined;
      throw err;
    }
  }

  /**
   * The children of the folder at a path, a page at a time, fetched lazily. Each next page is the
   * whole `@odata.nextLink`, as sent (Graph's paging guidance); a missing folder yields nothing.
   */
  async *children(
    path: readonly string[],
    pageSize: number,
    context: CallContext,
  ): AsyncGenerator<DriveItem[]> {
    // `$top` is written literally: URLSearchParams would send it as %24top.
    let url: string | undefined = `${this.itemUrl(path)}/children?$top=${pageSize}`;
    let first = true;
    while (url !== undefined) {
      let page: z.infer<typeof childrenSchema>;
      try {
        page = await this.json({ method: "GET", url }, childrenSchema, context);
      } catch (err) {
        if (first && err instanceof StorageError && err.code === "NotFound") return;
        throw err;
      }
      first = false;
      yield page.value;
      url = page["@odata.nextLink"];
      if (url !== undefined && !this.sameOrigin(url)) {
        // The bearer token goes with the next page: never to a host other than Graph's.
        throw new StorageError({
          provider: "onedrive",
          ...context,
          code: "Protocol",
          message: "the listing's next page points to another host than Microsoft Graph; it was not followed",
        });
      }
    }
  }

  /** Creates a folder; false when an item of that name exists already (409 under `fail`). */
  async createFolder(parent: readonly string[], name: string, context: CallContext): Promise<boolean> {
    try {
      await this.json(
        {
          method: "POST",
          url: `${this.itemUrl(parent)}/children`,
          json: { name, folder: {}, "@microsoft.graph.conflictBehavior": "fail" },
        },
        driveItemSchema,
        context,
      );
      return true;
    } catch (err) {
      if (err instanceof StorageError && err.code === "AlreadyExists") return false;
      throw err;
    }
  }

  /**
   * One `PUT …:/content` of a whole small object (reference §A.4), sent once: the caller retries, since
   * under `fail` a retry must look at what its first attempt left.
   */
  async simplePut(
    path: readonly string[],
    bytes: Uint8Array,
    conflict: ConflictBehavior,
    context: CallContext,
  ): Promise<DriveItem> {
    const response = await this.http.request({
      method: "PUT",
      // The docs put conflictBehavior in the query string for this call (reference §A.4).
      url: `${this.itemUrl(path)}/content?@microsoft.graph.conflictBehavior=${conflict}`,
      headers: { "content-type": "application/octet-stream", accept: "application/json" },
      body: bytes,
      retry: false,
      ...context,
    });
    return response.json(driveItemSchema);
  }

  /** `createUploadSession`, with the item properties wrapped in `item` (reference §A.5). */
  async createSession(
    path: readonly string[],
    conflict: ConflictBehavior,
    fileSize: number,
    context: CallContext,
  ): Promise<{ uploadUrl: string; expiresAt?: Date }> {
    const session = await this.json(
      {
        method: "POST",
        url: `${this.itemUrl(path)}/createUploadSession`,
        json: { item: { "@microsoft.graph.conflictBehavior": conflict, fileSize } },
      },
      sessionSchema,
      context,
    );
    if (!URL.canParse(session.uploadUrl)) {
      throw new StorageError({
        provider: "onedrive",
        ...context,
        code: "Protocol",
        message: "createUploadSession answered without a valid uploadUrl",
      });
    }
    const expires =
      session.expirationDateTime === undefined ? Number.NaN : Date.parse(session.expirationDateTime);
    return {
      uploadUrl: session.uploadUrl,
      ...(Number.isNaN(expires) ? {} : { expiresAt: new Date(expires) }),
    };
  }

  /**
   * Sends one fragment to a pre-authenticated upload URL, without `Authorization` (reference §A.5),
   * retried on transient failures (throttling, 5xx, a dropped connection) by core's HTTP client.
   */
  async putFragment(
    uploadUrl: string,
    bytes: Uint8Array,
    start: number,
    total: number,
    context: CallContext,
  ): Promise<FragmentAnswer> {
    const response = await this.http.request({
      method: "PUT",
      url: uploadUrl,
      auth: false,
      secretUrl: true,
      headers: {
        "content-type": "application/octet-stream",
        "content-range": `bytes ${start}-${start + bytes.byteLength - 1}/${total}`,
      },
      body: bytes,
      expect: [200, 201, 202, 401, 404, 416],
      ...context,
    });
    try {
      if (response.status === 202) {
        const status = await response.json(sessionStatusSchema);
        return { kind: "accepted", next: nextExpected(status.nextExpectedRanges) };
      }
      if (response.status === 200 || response.status === 201) {
        return { kind: "done", item: await response.json(driveItemSchema) };
      }
      await response.dump();
    } catch (err) {
      if (err instanceof StorageError && err.retryable) return { kind: "unknown" };
      throw err;
    }
    return response.status === 416 ? { kind: "overlap" } : { kind: "gone", status: response.status };
  }

  /** Where an upload session is (`GET uploadUrl`): the next byte it expects, or "gone". */
  async sessionPosition(uploadUrl: string, context: CallContext): Promise<number | "complete" | "gone"> {
    return this.retrying(context, async () => {
      const response = await this.http.request({
        method: "GET",
        url: uploadUrl,
        auth: false,
        secretUrl: true,
        expect: [200, 401, 404],
        retry: false,
        ...context,
      });
      if (response.status !== 200) {
        await response.dump();
        return "gone";
      }
      const status = await response.json(sessionStatusSchema);
      return nextExpected(status.nextExpectedRanges) ?? "complete";
    });
  }

  /** Cancels an upload session (`DELETE uploadUrl`); best effort, since it expires anyway. */
  async cancelSession(uploadUrl: string, context: CallContext): Promise<void> {
    try {
      const response = await this.http.request({
        method: "DELETE",
        url: uploadUrl,
        auth: false,
        secretUrl: true,
        expect: [204, 200, 401, 404],
        ...context,
      });
      await response.dump();
    } catch {
      // The session is dropped by the service at its expiry; a failed cancel costs only its space.
    }
  }

  /**
   * Opens an item's content: `GET …/content` answers 302 to a short-lived pre-authenticated URL, which
   * is fetched without `Authorization` and with the `Range` (reference §A.6). A direct 200 or 206 is
   * accepted too, since Graph announced it would stream `content` instead of redirecting.
   */
  async openContent(
    itemId: string,
    range: { offset: number; length?: number } | undefined,
    context: CallContext,
  ): Promise<HttpResponse> {
    const headers: Record<string, string> = range
      ? {
          range: `bytes=${range.offset}-${range.length === undefined ? "" : range.offset + range.length - 1}`,
        }
      : {};
    const contentUrl = `${this.drive}/items/${encodeSegment(itemId)}/content`;
    const first = await this.http.request({
      method: "GET",
      url: contentUrl,
      headers,
      expect: [200, 206, 302],
      ...context,
    });
    if (first.status !== 302) return first;
    const location = first.headers.location;
    await first.dump();
    if (location === undefined) {
      throw new StorageError({
        provider: "onedrive",
        ...context,
        code: "Protocol",
        message: "the content request was redirected without a Location",
      });
    }
    return this.http.request({
      method: "GET",
      url: new URL(location, `${this.graphUrl}/${contentUrl}`).href,
      auth: false,
      secretUrl: true,
      headers,
      expect: [200, 206],
      ...context,
    });
  }

  /** Deletes an item, only if it still has this eTag (so that a file replaced meanwhile survives). */
  async deleteItem(itemId: string, eTag: string | undefined, context: CallContext): Promise<void> {
    await this.retrying(context, async () => {
      const response = await this.http.request({
        method: "DELETE",
        url: `${this.drive}/items/${encodeSegment(itemId)}`,
        headers: eTag === undefined ? {} : { "if-match": eTag },
        retry: false,
        ...context,
      });
      await response.dump();
    });
  }

  async close(): Promise<void> {
    await this.http.close();
  }

  /**
   * A JSON call, retried whole: core's client retries a request until its headers arrive, and a body
   * cut off after them must be retried too.
   */
  private json<T>(
    request: { method: string; url: string; json?: unknown },
    schema: z.ZodType<T>,
    context: CallContext,
  ): Promise<T> {
    return this.retrying(context, () =>
      this.http.requestJson({ ...request, ...context, retry: false }, schema),
    );
  }

  /** Runs `call` under core's retry (transient failures, Retry-After), unless retries are off. */
  retrying<T>(context: CallContext, call: () => Promise<T>): Promise<T> {
    if (this.retryOptions === false) return call();
    return retry(call, {
      ...this.retryOptions,
      signal: context.signal,
      context: { provider: "onedrive", operation: context.operation, key: context.key },
    });
  }

  private sameOrigin(url: string): boolean {
    return URL.canParse(url) && new URL(url).origin === this.origin;
  }
}

/** The first byte of the first range in `nextExpectedRanges` (`"26-"`, `"12345-55232"`). */
function nextExpected(ranges: readonly string[] | undefined): number | undefined {
  const first = ranges?.[0];
  if (first === undefined) return undefined;
  const start = Number(/^(\d+)-/.exec(first)?.[1] ?? Number.NaN);
  return Number.isSafeInteger(start) ? start : undefined;
}
