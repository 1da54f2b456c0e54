import { isStorageError, type StorageError } from "@stowage/core";
import {
  DRIVE_FOLDER_MIME,
  type DriveEmulatorOptions,
  type DriveUploadSessionView,
  driveErrors,
} from "@stowage/emulators";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  createGoogleDriveStorage,
  type GoogleDriveStorage,
  type GoogleDriveStorageOptions,
} from "../src/index.js";
import { bytesOf, type Emulators, expectOneFile, startEmulators, streamOf } from "./support/emulators.js";

const CHUNK = 262_144;
const ROOT = "Backups/pc1";
let clock: number;
let emulators: Emulators;
let storage: GoogleDriveStorage;

async function setUp(
  drive: Partial<DriveEmulatorOptions> = {},
  options: Partial<GoogleDriveStorageOptions> = {},
) {
  await emulators?.close();
  emulators = await startEmulators({ oauth: { now: () => clock }, drive });
  storage = createGoogleDriveStorage({
    auth: emulators.tokenSource(),
    root: ROOT,
    driveUrl: emulators.drive.url,
    chunkSize: CHUNK,
    retry: { minDelayMs: 1, maxDelayMs: 20 },
    ...options,
  });
  await storage.createRoot();
}

beforeEach(async () => {
  clock = Date.now();
  await setUp();
});

afterEach(async () => {
  await storage.close();
  await emulators.close();
});

/** Runs `action` once, right after the session has persisted `chunks` chunks. */
function afterChunks(chunks: number, action: (session: DriveUploadSessionView) => void): void {
  let fired = false;
  emulators.drive.hooks.afterChunk = (session) => {
    if (fired || session.received < chunks * CHUNK) return;
    fired = true;
    action(session);
  };
}

const sessionRequests = () => emulators.drive.requests.filter((r) => r.query.upload_id !== undefined);
const statusQueries = () => sessionRequests().filter((r) => r.contentRange?.startsWith("bytes */"));
const initiations = () =>
  emulators.drive.requests.filter((r) => r.query.uploadType === "resumable" && !r.query.upload_id);

/** Nothing but the one file: no stray copy anywhere in the drive. */
function expectOnlyFile(key: string, data: Uint8Array): void {
  expectOneFile(emulators.drive, `${ROOT}/${key}`, data);
  const files = emulators.drive.files().filter((file) => file.mimeType !== DRIVE_FOLDER_MIME);
  expect(files.map((file) => file.name)).toEqual([key.slice(key.lastIndexOf("/") + 1)]);
}

async function failure(promise: Promise<unknown>): Promise<StorageError> {
  try {
    await promise;
  } catch (err) {
    if (isStorageError(err)) return err;
    throw err;
  }
  throw new Error("expected the call to fail");
}

describe("faults during an upload end with exactly one file holding the exact bytes", () => {
  it.each([
    ["403 userRateLimitExceeded", driveErrors.userRateLimitExceeded, 403],
    ["429 rateLimitExceeded", driveErrors.tooManyRequests, 429],
  ] as const)(
    "a rate limit mid-upload (%s) is waited out, then the session is asked where to resume",
    async (_, body, status) => {
      const data = bytesOf(5 * CHUNK + 123, 1);
      let hits = () => 0;
      afterChunks(2, () => {
        const fault = emulators.drive.faults.add({
          method: "PUT",
          path: /upload_id=/,
          times: 2,
          respond: { status, body },
        });
        hits = () => fault.hits;
      });
      await storage.put("vol/a.bin", data);
      expectOnlyFile("vol/a.bin", data);
      expect(hits()).toBe(2);
      expect(statusQueries().length).toBeGreaterThanOrEqual(1);
      expect(initiations()).toHaveLength(1);
    },
  );

  it("a burst of 5xx on the lookup, the initiation and the chunks is retried", async () => {
    const data = bytesOf(4 * CHUNK + 5, 2);
    const { faults } = emulators.drive;
    faults.add({
      method: "GET",
      path: "/drive/v3/files",
      times: 2,
      respond: { status: 500, body: driveErrors.backendError },
    });
    faults.add({
      method: "POST",
      path: /uploadType=resumable/,
      times: 2,
      respond: { status: 503, body: driveErrors.serviceUnavailable },
    });
    afterChunks(1, () => {
      faults.add({
        method: "PUT",
        path: /upload_id=/,
        times: 3,
        respond: { status: 502, body: driveErrors.backendError },
      });
    });
    await storage.put("vol/burst.bin", streamOf(data));
    expectOnlyFile("vol/burst.bin", data);
    expect(emulators.drive.requests.filter((r) => r.status >= 500)).toHaveLength(7);
  });

  it("a connection reset mid-chunk is resumed from what the session holds", async () => {
    const data = bytesOf(4 * CHUNK + 77, 3);
    afterChunks(1, () => {
      emulators.drive.faults.add({ method: "PUT", path: /upload_id=/, reset: true });
    });
    await storage.put("vol/reset.bin", data);
    expectOnlyFile("vol/reset.bin", data);
    expect(sessionRequests().filter((r) => r.faulted)).toHaveLength(1);
    expect(statusQueries()).toHaveLength(1);
  });

  it("a reset while the last chunk's answer is sent (resetAfterBytes) does not make a second file", async () => {
    const data = bytesOf(3 * CHUNK + 500, 4);
    afterChunks(3, () => {
      emulators.drive.faults.add({ method: "PUT", path: /upload_id=/, resetAfterBytes: 20 });
    });
    await storage.put("vol/last.bin", data);
    expectOnlyFile("vol/last.bin", data);
    // The session, asked after the cut, answered with the file it had already made.
    const last = statusQueries().at(-1)!;
    expect(last.status).toBe(201);
  });

  it("a multipart create whose answer is cut is found afterwards, not sent again", async () => {
    const data = bytesOf(1000, 5);
    emulators.drive.faults.add({ method: "POST", path: /uploadType=multipart/, resetAfterBytes: 10 });
    await storage.put("small.bin", data);
    expectOnlyFile("small.bin", data);
    expect(emulators.drive.requests.filter((r) => r.query.uploadType === "multipart")).toHaveLength(1);
  });

  it("a folder create whose answer is cut is found afterwards, not made twice", async () => {
    emulators.drive.faults.add({ method: "POST", path: "/drive/v3/files", resetAfterBytes: 10 });
    await storage.put("new-folder/x.bin", "x");
    expect(emulators.drive.find(`${ROOT}/new-folder`)).toHaveLength(1);
    expectOneFile(emulators.drive, `${ROOT}/new-folder/x.bin`, new TextEncoder().encode("x"));
  });

  it("a token that expires mid-upload is refreshed on the 401 and the chunk sent again", async () => {
    const data = bytesOf(5 * CHUNK + 9, 6);
    afterChunks(2, () => {
      // Two hours later for the OAuth provider: the token the client holds is now expired.
      clock += 2 * 3600_000;
    });
    await storage.put("vol/token.bin", data);
    expectOnlyFile("vol/token.bin", data);
    expect(emulators.oauth.counters.tokenRequests).toBe(2);
    expect(sessionRequests().filter((r) => r.status === 401)).toHaveLength(1);
    expect(initiations()).toHaveLength(1);
  });

  it("the server keeping fewer bytes than sent (Range) makes the client send the rest", async () => {
    await storage.close();
    await setUp({ persistAtMost: CHUNK }, { chunkSize: 2 * CHUNK });
    const data = bytesOf(5 * CHUNK + 7, 7);
    await storage.put("vol/few.bin", streamOf(data));
    expectOnlyFile("vol/few.bin", data);
  });
});

describe("session expiry", () => {
  it("an expired session is replaced by a new one, and the upload restarts from the first byte", async () => {
    const data = bytesOf(5 * CHUNK + 1, 8);
    afterChunks(2, (session) => session.expire());
    await storage.put("vol/expired.bin", data);
    expectOnlyFile("vol/expired.bin", data);
    expect(initiations()).toHaveLength(2);
    expect(sessionRequests().filter((r) => r.status === 404)).toHaveLength(1);
  });

  it("a stream whose session is gone before its first byte is persisted restarts too", async () => {
    const data = bytesOf(3 * CHUNK + 3, 9);
    emulators.drive.faults.add({
      method: "PUT",
      path: /upload_id=/,
      respond: { status: 404, body: driveErrors.notFound },
    });
    await storage.put("vol/early.bin", streamOf(data));
    expectOnlyFile("vol/early.bin", data);
    expect(initiations()).toHaveLength(2);
  });

  it("a stream whose session expires mid-way fails as Unavailable (retryable) and leaves nothing; a new put succeeds", async () => {
    const data = bytesOf(5 * CHUNK, 10);
    afterChunks(2, (session) => session.expire());
    const error = await failure(storage.put("vol/stream.bin", streamOf(data)));
    expect(error.code).toBe("Unavailable");
    expect(error.retryable).toBe(true);
    expect(error.message).toContain("the upload session expired or was lost (Drive answered 404)");
    expect(error.message).toContain("a stream cannot be read again");
    expect(emulators.drive.find(`${ROOT}/vol/stream.bin`)).toHaveLength(0);
    emulators.drive.hooks.afterChunk = undefined;
    await storage.put("vol/stream.bin", streamOf(data));
    expectOnlyFile("vol/stream.bin", data);
  });

  it("restarts are bounded: a session lost every time fails after two restarts", async () => {
    const data = bytesOf(3 * CHUNK, 11);
    emulators.drive.hooks.afterChunk = (session) => session.expire();
    const error = await failure(storage.put("vol/doomed.bin", data));
    expect(error.code).toBe("Unavailable");
    expect(error.message).toContain("was started again 2 times");
    expect(initiations()).toHaveLength(3);
    expect(emulators.drive.files().filter((file) => file.mimeType !== DRIVE_FOLDER_MIME)).toHaveLength(0);
  });
});
