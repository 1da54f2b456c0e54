"use strict";
// Runs s3rver 3.7.1 in a process of its own, because it must run under
// `node --openssl-legacy-provider`: its ListObjectsV2 continuation tokens are DES-encrypted, which
// OpenSSL 3 offers only from the legacy provider, so without the flag every listing past one page
// fails.
//
// Usage: node --openssl-legacy-provider s3rver-child.cjs <directory>
// Prints one JSON line {"port": N} once listening on 127.0.0.1 (a random port), and exits when its
// stdin closes, so a test run that dies never leaves a server behind.
const fs = require("node:fs");
const path = require("node:path");
const utils = require("s3rver/lib/utils");

// s3rver lists by walking the bucket's directories, and in a delimited listing it skips every
// directory below a common prefix before it has seen a key there. A folder that holds only folders
// ("p/q/r/file" listed under "p/") then yields no key, so its common prefix "p/q/" is never reported,
// where S3 reports it. The filesystem store takes `walk` from utils when it is first required, so the
// fix replaces `walk` before that: a skipped directory still yields its first object file, which is
// all s3rver needs to report the prefix (it drops keys before the start or outside the prefix).
const OBJECT_SUFFIX = "._S3rver_object";

function firstObjectFile(dir) {
  for (const name of fs.readdirSync(dir)) {
    const filePath = path.posix.join(dir, name);
    if (fs.statSync(filePath).isDirectory()) {
      const found = firstObjectFile(filePath);
      if (found) return found;
    } else if (name.endsWith(OBJECT_SUFFIX)) {
      return filePath;
    }
  }
  return undefined;
}

utils.walk = function* walk(dir, recurseFilter) {
  for (const name of fs.readdirSync(dir)) {
    const filePath = path.posix.join(dir, name);
    if (!fs.statSync(filePath).isDirectory()) yield filePath;
    else if (!recurseFilter || recurseFilter(filePath)) yield* walk(filePath, recurseFilter);
    else {
      const first = firstObjectFile(filePath);
      if (first) yield first;
    }
  }
};

const S3rver = require("s3rver");
const FilesystemStore = require("s3rver/lib/stores/filesystem");

const directory = process.argv[2];
if (!directory) {
  process.stderr.write("usage: s3rver-child.cjs <directory>\n");
  process.exit(2);
}

// s3rver stores an object as a file named "<last key segment>._S3rver_object" (and
// "._S3rver_metadata.json" beside it), so a key segment of more than 233 UTF-8 bytes, valid in S3
// and in the conformance corpus, makes a file name longer than NAME_MAX (255); the ENAMETOOLONG is
// unhandled and kills the server. s3rver escapes names through encodeKeyPath/decodeKeyPath (on Windows,
// for reserved characters); this launcher uses the same hook to move the first 200 bytes of such a
// segment into a folder ending in U+0001, a character no Stowage key contains. Listing order is kept:
// the folder sorts where the segment would.
const MAX_LAST_SEGMENT = 233;
const FOLDER_MARK = "\u0001";
const encodeKeyPath = FilesystemStore.encodeKeyPath;
const decodeKeyPath = FilesystemStore.decodeKeyPath;

function splitLongSegment(segment) {
  if (Buffer.byteLength(segment) <= MAX_LAST_SEGMENT) return segment;
  let head = "";
  for (const char of segment) {
    if (Buffer.byteLength(head + char) > 200) break;
    head += char;
  }
  return `${head}${FOLDER_MARK}/${segment.slice(head.length)}`;
}

FilesystemStore.encodeKeyPath = (key) => {
  const segments = encodeKeyPath(key).split("/");
  segments[segments.length - 1] = splitLongSegment(segments[segments.length - 1]);
  return segments.join("/");
};
FilesystemStore.decodeKeyPath = (keyPath) => decodeKeyPath(keyPath.split(`${FOLDER_MARK}/`).join(""));

const server = new S3rver({ address: "127.0.0.1", port: 0, silent: true, directory });
server.run().then(
  (address) => {
    process.stdout.write(`${JSON.stringify({ port: address.port })}\n`);
  },
  (err) => {
    process.stderr.write(`s3rver failed to start: ${err?.message}\n`);
    process.exit(1);
  },
);

function stop() {
  // Open keep-alive connections (a test's proxy, an aborted request) would hold close() forever.
  server.httpServer?.closeAllConnections();
  server.close().finally(() => process.exit(0));
}
process.stdin.on("end", stop);
process.stdin.on("error", stop);
process.stdin.resume();
process.on("SIGTERM", stop);
