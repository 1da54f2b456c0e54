import { type FieldMask, type FieldSchema, parseFieldMask } from "./fields.js";
import { type DriveState, FOLDER_MIME, type StoredFile } from "./state.js";

/**
 * Fields of the File resource (reference §B.2). The emulator fills the first group; the second are
 * real Drive fields it does not model, accepted in a mask (and left out of answers) so that a client
 * asking for them is not refused as it would not be on Drive.
 */
const fileFields = new Set([
  "kind",
  "id",
  "name",
  "mimeType",
  "parents",
  "size",
  "md5Checksum",
  "createdTime",
  "modifiedTime",
  "trashed",
  "explicitlyTrashed",
  "version",
  "driveId",
  "quotaBytesUsed",
  "description",
  "starred",
  "sha1Checksum",
  "sha256Checksum",
  "webViewLink",
  "webContentLink",
  "headRevisionId",
  "shortcutDetails",
  "exportLinks",
  "resourceKey",
  "appProperties",
  "properties",
  "owners",
  "ownedByMe",
  "capabilities",
  "spaces",
  "originalFilename",
  "fileExtension",
  "fullFileExtension",
  "iconLink",
  "thumbnailLink",
  "hasThumbnail",
  "shared",
  "teamDriveId",
]);

export const fileSchema: FieldSchema = { fields: fileFields };

export const fileListSchema: FieldSchema = {
  fields: new Set(["kind", "nextPageToken", "incompleteSearch", "files"]),
  nested: { files: fileSchema },
};

/** Without `fields`, Drive returns these of a file (reference §B.1: "kind, id, name and mimeType"). */
export const defaultFileMask: FieldMask = parseFieldMask("kind,id,name,mimeType");
export const defaultListMask: FieldMask = parseFieldMask(
  "kind,nextPageToken,incompleteSearch,files(kind,id,name,mimeType)",
);

function isBinary(file: StoredFile): boolean {
  return file.mimeType !== FOLDER_MIME && !file.mimeType.startsWith("application/vnd.google-apps.");
}

/**
 * The whole File resource of `file`. int64 fields (`size`, `version`, `quotaBytesUsed`) are JSON
 * strings, as Drive sends them (reference §B.2); `md5Checksum` only for binary content.
 */
export function fileResource(state: DriveState, file: StoredFile): Record<string, unknown> {
  const resource: Record<string, unknown> = {
    kind: "drive#file",
    id: file.id,
    name: file.name,
    mimeType: file.mimeType,
    parents: [...file.parents],
    createdTime: new Date(file.createdTime).toISOString(),
    modifiedTime: new Date(file.modifiedTime).toISOString(),
    trashed: state.isTrashed(file),
    explicitlyTrashed: file.explicitlyTrashed,
    version: String(file.version),
    quotaBytesUsed: String(file.content?.size ?? 0),
  };
  if (file.parents.length === 0) delete resource.parents;
  if (file.driveId !== undefined) resource.driveId = file.driveId;
  if (isBinary(file)) {
    const view = state.view(file);
    resource.size = String(view.size ?? 0);
    resource.md5Checksum = view.md5Checksum;
  }
  return resource;
}
