import { hostedHandler } from "@stowage/auth";

/**
 * Runs in a child process started with NODE_EXTRA_CA_CERTS, the only way to make Node trust a test
 * certificate for every TLS connection: asks the handler at STOWAGE_URL for a token with
 * hostedHandler and prints the outcome as one JSON line.
 */
const source = hostedHandler({
  authId: process.env.STOWAGE_AUTHID ?? "",
  url: process.env.STOWAGE_URL ?? "",
  retry: false,
});
try {
  const { token, expiresAt } = await source.getToken();
  process.stdout.write(
    `${JSON.stringify({ token, expiresInSec: Math.round(((expiresAt?.getTime() ?? 0) - Date.now()) / 1000) })}\n`,
  );
} catch (err) {
  const { code, message } = err as { code?: string; message?: string };
  process.stdout.write(`${JSON.stringify({ code, message })}\n`);
}
