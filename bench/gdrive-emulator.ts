/**
 * The Drive emulator for bench/gdrive.ts, in its own process so that its work (hashing, disk
 * writes) is not counted in a client's time or memory. Prints one JSON line, { url, token }: the
 * emulator's base URL and a `drive.file` access token valid for a day. Runs until stdin closes.
 *
 * Run: node --conditions=@stowage/source --import tsx bench/gdrive-emulator.ts
 */
import { DRIVE_FILE_SCOPE, startDriveEmulator, startOAuthProvider } from "../packages/emulators/src/index.js";

const oauth = await startOAuthProvider({ rotateRefreshTokens: false, accessTokenLifetimeSec: 86_400 });
const drive = await startDriveEmulator({ oauth });
const token = oauth.issueAccessToken({ scopes: [DRIVE_FILE_SCOPE] });
console.log(JSON.stringify({ url: drive.url, token }));

const stop = async () => {
  await drive.close();
  await oauth.close();
  process.exit(0);
};
process.stdin.on("end", stop);
process.stdin.on("close", stop);
process.stdin.resume();
process.on("SIGTERM", stop);
