import type { HttpClient, HttpRequest } from "@stowage/core";
import { z } from "zod";

export const FOLDER_MIME = "application/vnd.google-apps.folder";

/** The file fields every call asks for (reference §B.2); without `fields` Drive sends only four. */
export const FILE_FIELDS = "id,name,mimeType,size,md5Checksum,modifiedTime,createdTime";

/** A File resource as the SDK reads it. `size` is an int64, which Drive sends as a JSON string. */
export const driveFileSchema = z.object({
  id: z.string().min(1),
  name: z.string(),
  mimeType: z.string(),
  size: z
    .string()
    .regex(/^\d+$/, "must be a whole number in a string (Drive sends int64 as text)")
    .optional(),
  md5Checksum: z
    .string()
    .regex(/^[0-9a-fA-F]{32}$/)
    .optional(),
  modifiedTime: z.string().optional(),
  createdTime: z.string().optional(),
});

export type DriveFile = z.infer<typeof driveFileSchema>;

const fileListSchema = z.object({
  nextPageToken: z.string().optional(),
  incompleteSearch: z.boolean().optional(),
  files: z.array(driveFileSchema).default([]),
});

/** Whether Drive stores bytes for the file: folders, Docs, shortcuts and other Google types have none. */
export function isBinary(file: DriveFile): boolean {
  return !file.mimeType.startsWith("application/vnd.google-apps.");
}

export function isFolder(file: DriveFile): boolean {
  return file.mimeType === FOLDER_MIME;
}

/**
 * A string for `q`, quoted, with `\` and `'` escaped (reference §B.1). Any other character is
 * literal in Drive's query language.
 */
export function quoteQueryValue(value: string): string {
  return `'${value.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

export interface DriveApiOptions {
  http: HttpClient;
  /** The shared drive to work in; undefined for My Drive. */
  sharedDriveId?: string;
  pageSize: number;
}

/** A request's common context: what names it in errors, and how to stop it. */
export interface CallContext {
  operation: string;
  key?: string;
  signal?: AbortSignal;
}

/**
 * Typed calls to Drive v3's metadata API (`/drive/v3/files`). Every call sends
 * `supportsAllDrives=true`, which Drive requires for shared-drive items and ignores otherwise; lists
 * in a shared drive add `corpora=drive`, `driveId` and `includeItemsFromAllDrives` (reference §B.1).
 */
export class DriveApi {
  private readonly http: HttpClient;
  private readonly sharedDriveId?: string;
  private readonly pageSize: number;

  constructor(options: DriveApiOptions) {
    this.http = options.http;
    this.sharedDriveId = options.sharedDriveId;
    this.pageSize = options.pageSize;
  }

  private request(
    call: CallContext,
    request: Omit<HttpRequest, "operation" | "key" | "signal">,
  ): HttpRequest {
    return {
      ...request,
      operation: call.operation,
      key: call.key,
      signal: call.signal,
      query: { supportsAllDrives: "true", ...request.query },
    };
  }

  /** In a shared drive, lists must name it (reference §B.1); My Drive needs nothing. */
  private corpora(): Record<string, string> {
    const drive = this.sharedDriveId;
    return drive === undefined ? {} : { corpora: "drive", driveId: drive, includeItemsFromAllDrives: "true" };
  }

  /**
   * Every file matching `q`, page by page, fetching the next page only when the consumer asks for
   * it. Pages may be short or empty before the end, so the loop follows `nextPageToken` alone.
   */
  async *list(q: string, call: CallContext, orderBy?: string): AsyncGenerator<DriveFile> {
    let pageToken: string | undefined;
    do {
      const page = await this.http.requestJson(
        this.request(call, {
          method: "GET",
          url: "/drive/v3/files",
          query: {
            q,
            pageSize: this.pageSize,
            pageToken,
            orderBy,
            fields: `nextPageToken,files(${FILE_FIELDS})`,
            ...this.corpora(),
          },
        }),
        fileListSchema,
      );
      yield* page.files;
      pageToken = page.nextPageToken;
    } while (pageToken !== undefined);
  }

  /**
   * The children of `parentId` named exactly `name`. `name =` in `q` ignores case, so the match is
   * made exact here (reference §B.1 gotcha); `kind` narrows to folders or to objects (binary files).
   */
  async findChildren(
    parentId: string,
    name: string,
    kind: "folder" | "object",
    call: CallContext,
  ): Promise<DriveFile[]> {
    const type = `mimeType ${kind === "folder" ? "=" : "!="} ${quoteQueryValue(FOLDER_MIME)}`;
    const q = `${quoteQueryValue(parentId)} in parents and name = ${quoteQueryValue(name)} and ${type} and trashed = false`;
    const found: DriveFile[] = [];
    for await (const file of this.list(q, call)) {
      if (file.name !== name) continue;
      if (kind === "object" ? isBinary(file) : isFolder(file)) found.push(file);
    }
    return found;
  }

  /**
   * The children of a folder, sorted so that files with one name come together, newest first: the
   * first of each name is the one the duplicates policy picks.
   */
  children(parentId: string, call: CallContext): AsyncGenerator<DriveFile> {
    return this.list(
      `${quoteQueryValue(parentId)} in parents and trashed = false`,
      call,
      "name,modifiedTime desc,createdTime desc",
    );
  }

  /**
   * One small listing of a folder's children: proves the token works with any Drive scope
   * (`drive.file` included, which lists only the app's own files).
   */
  async probe(parentId: string, call: CallContext): Promise<void> {
    await this.http.requestJson(
      this.request(call, {
        method: "GET",
        url: "/drive/v3/files",
        query: {
          q: `${quoteQueryValue(parentId)} in parents and trashed = false`,
          pageSize: 1,
          fields: "files(id)",
          ...this.corpora(),
        },
      }),
      z.object({ files: z.array(z.object({ id: z.string() })).default([]) }),
    );
  }

  async get(id: string, call: CallContext): Promise<DriveFile> {
    return this.http.requestJson(
      this.request(call, {
        method: "GET",
        url: `/drive/v3/files/${encodeURIComponent(id)}`,
        query: { fields: FILE_FIELDS },
      }),
      driveFileSchema,
    );
  }

  /** Creates a folder: metadata only, no `/upload` prefix (reference §B.6). Never retried here. */
  async createFolder(parentId: string, name: string, call: CallContext): Promise<DriveFile> {
    return this.http.requestJson(
      this.request(call, {
        method: "POST",
        url: "/drive/v3/files",
        query: { fields: FILE_FIELDS },
        json: { name, mimeType: FOLDER_MIME, parents: [parentId] },
        // A create whose answer is lost may have happened: the caller looks before creating again.
        retry: false,
      }),
      driveFileSchema,
    );
  }

  /** Deletes permanently (reference §B.5), skipping the trash. */
  async delete(id: string, call: CallContext): Promise<void> {
    const response = await this.http.request(
      this.request(call, { method: "DELETE", url: `/drive/v3/files/${encodeURIComponent(id)}` }),
    );
    await response.dump();
  }

  /** Moves to the trash (`PATCH {"trashed": true}`), from where the user can restore it for 30 days. */
  async trash(id: string, call: CallContext): Promise<void> {
    const response = await this.http.request(
      this.request(call, {
        method: "PATCH",
        url: `/drive/v3/files/${encodeURIComponent(id)}`,
        query: { fields: "id" },
        json: { trashed: true },
      }),
    );
    await response.dump();
  }

  /** `alt=media`: the bytes, with an optional inclusive byte range. */
  async download(
    id: string,
    range: { start: number; end: number } | undefined,
    call: CallContext,
  ): Promise<{ status: number; body: ReadableStream<Uint8Array> }> {
    const response = await this.http.request(
      this.request(call, {
        method: "GET",
        url: `/drive/v3/files/${encodeURIComponent(id)}`,
        query: { alt: "media" },
        headers: range ? { range: `bytes=${range.start}-${range.end}` } : {},
        expect: [200, 206],
      }),
    );
    return { status: response.status, body: response.body };
  }
}
