import { fileURLToPath } from "node:url";
import { type ParsedConnection, type ProviderDescriptor, paramBoolean, paramInteger } from "../connection.js";
import { StorageError } from "../errors.js";
import { joinKey } from "../keys.js";
import type { Logger } from "../types.js";
import { createFsStorage } from "./fs.js";
import { createMemoryStorage } from "./memory.js";

const createRootParam = {
  description: "create the root folder on first use instead of failing with FolderMissing",
  type: "boolean",
} as const;

function loggerOf(connection: ParsedConnection): Logger | undefined {
  return connection.objects.logger as Logger | undefined;
}

/** `memory://name/path`: the process-wide memory volume, rooted at `name/path`. */
export const memoryProvider: ProviderDescriptor = {
  provider: "memory",
  schemes: ["memory"],
  params: {
    "create-root": createRootParam,
    "page-size": { description: "entries per internal list page", type: "integer" },
  },
  objectOptions: ["logger"],
  open: (connection) =>
    createMemoryStorage({
      root: joinKey(connection.host, connection.path),
      createRoot: paramBoolean(connection, "create-root"),
      pageSize: paramInteger(connection, "page-size"),
      logger: loggerOf(connection),
    }),
};

/** `file:///absolute/path`: a local folder. */
export const fsProvider: ProviderDescriptor = {
  provider: "fs",
  schemes: ["file"],
  params: {
    "create-root": createRootParam,
    fsync: { description: "fsync each put before publishing it (default true)", type: "boolean" },
    "page-size": { description: "entries read per directory batch while listing", type: "integer" },
  },
  objectOptions: ["logger"],
  open(connection) {
    if (connection.host !== "" && connection.host !== "localhost") {
      throw new StorageError({
        code: "InvalidConfig",
        operation: "connect",
        message: `file URLs name a local path, but this one names the host '${connection.host}'`,
        hint: "write file:///absolute/path (three slashes)",
      });
    }
    const root = fileURLToPath(`file:///${connection.path.split("/").map(encodeURIComponent).join("/")}`);
    return createFsStorage({
      root,
      createRoot: paramBoolean(connection, "create-root"),
      fsync: paramBoolean(connection, "fsync"),
      pageSize: paramInteger(connection, "page-size"),
      logger: loggerOf(connection),
    });
  },
};
