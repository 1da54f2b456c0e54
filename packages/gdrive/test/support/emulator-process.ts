/**
 * The OAuth provider and the Drive emulator in a process of their own, for the conformance suite:
 * its memory check measures the whole process, and must see the client's memory only.
 * Prints one JSON line ({@link EmulatorProcessInfo}), then runs until its stdin closes.
 */
import {
  DRIVE_FILE_SCOPE,
  defaultOAuthClient,
  startDriveEmulator,
  startOAuthProvider,
} from "@stowage/emulators";

export interface EmulatorProcessInfo {
  driveUrl: string;
  tokenUrl: string;
  clientId: string;
  clientSecret: string;
  /** A `drive.file` grant of the default client; Google does not rotate it, so every storage may use it. */
  refreshToken: string;
}

const oauth = await startOAuthProvider({ rotateRefreshTokens: false });
const drive = await startDriveEmulator({ oauth });
const info: EmulatorProcessInfo = {
  driveUrl: drive.url,
  tokenUrl: oauth.tokenUrl,
  clientId: defaultOAuthClient.clientId,
  clientSecret: defaultOAuthClient.clientSecret,
  refreshToken: oauth.issueRefreshToken({ scopes: [DRIVE_FILE_SCOPE] }),
};
console.log(JSON.stringify(info));

const stop = async () => {
  await drive.close();
  await oauth.close();
  process.exit(0);
};
process.stdin.on("end", stop);
process.stdin.resume();
