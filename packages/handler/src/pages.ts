import type { ProviderConfig } from "./config.js";
import type { RevokeResult } from "./revoke.js";

/** A page and the nonce its inline script and style carry (the CSP allows nothing else). */
export interface Page {
  html: string;
  nonce: string;
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** JSON that is safe inside a `<script type="application/json">` element. */
function scriptJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, "\\u003c").replace(/>/g, "\\u003e").replace(/&/g, "\\u0026");
}

const STYLE = `
body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}
h1{font-size:1.5rem}a.provider{display:block;margin:.5rem 0;padding:.75rem 1rem;border:1px solid #888;
border-radius:.4rem;text-decoration:none;color:inherit}a.provider:hover{background:#f2f2f2}
pre{white-space:pre-wrap;word-break:break-all;background:#f4f4f4;padding:.75rem;border-radius:.4rem}
button{font:inherit;padding:.4rem 1rem}.muted{color:#555;font-size:.9rem}.error{color:#a00000}
input[type=text]{font:inherit;width:100%;box-sizing:border-box;padding:.4rem}`;

function layout(title: string, appName: string, nonce: string, body: string, script = ""): Page {
  const scriptTag = script === "" ? "" : `<script nonce="${nonce}">${script}</script>`;
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${escapeHtml(title)} – ${escapeHtml(appName)}</title><style nonce="${nonce}">${STYLE}</style></head>
<body>${body}
<p class="muted"><a href="/privacy">What this service stores</a> · <a href="/revoke">Revoke an AuthID</a></p>
${scriptTag}</body></html>`;
  return { html, nonce };
}

/** `GET /`: one button per provider; `?type=` shows only that provider (hidden ones included). */
export function chooserPage(options: {
  appName: string;
  nonce: string;
  providers: readonly ProviderConfig[];
  fetchToken?: string;
}): Page {
  const links = options.providers
    .map((provider) => {
      const query = new URLSearchParams({ id: provider.id });
      if (options.fetchToken !== undefined) query.set("token", options.fetchToken);
      return `<a class="provider" id="login-${escapeHtml(provider.id)}" href="/login?${escapeHtml(query.toString())}">Sign in with ${escapeHtml(provider.name)}</a>`;
    })
    .join("\n");
  const body = `<h1>Create an AuthID</h1>
<p>Sign in with your storage provider. You will get an <strong>AuthID</strong>: paste it into your backup
tool. It lets the tool get short-lived access tokens from this service; this service keeps your provider's
refresh token encrypted under a key that only the AuthID holds.</p>
${links || '<p class="error">No provider matches this link.</p>'}`;
  return layout("Create an AuthID", options.appName, options.nonce, body);
}

/**
 * `GET /logged-in`: the AuthID, a copy button, and a `postMessage` to the opener for each configured
 * origin. The browser delivers a message only when the opener's origin equals the target origin, so an
 * unlisted opener receives nothing (Duplicati sent `'*'`: any page that opened the popup got the AuthID).
 */
export function loggedInPage(options: {
  appName: string;
  nonce: string;
  authId: string;
  provider: ProviderConfig;
  allowedOrigins: readonly string[];
  fetchRegistered: boolean;
}): Page {
  const fetched = options.fetchRegistered
    ? "<p>Your backup tool is collecting the AuthID by itself; you can close this window once it has it.</p>"
    : "";
  const body = `<h1>Signed in with ${escapeHtml(options.provider.name)}</h1>
<p>Your AuthID:</p>
<pre id="authid">${escapeHtml(options.authId)}</pre>
<p><button id="copy" type="button">Copy</button> <span id="copy-status" role="status" aria-live="polite"></span></p>
${fetched}
<p class="muted">Keep it secret, like a password: whoever holds it can read and write your files through the
provider. It is shown only once; if you lose it, sign in again for a new one. To end its access, revoke it.</p>
<script type="application/json" id="origins">${scriptJson(options.allowedOrigins)}</script>`;
  const script = `
const authId = document.getElementById("authid").textContent;
const status = document.getElementById("copy-status");
document.getElementById("copy").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(authId);
    status.textContent = "Copied";
  } catch {
    const range = document.createRange();
    range.selectNodeContents(document.getElementById("authid"));
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    status.textContent = document.execCommand("copy") ? "Copied" : "Press Ctrl+C (or ⌘C) to copy the selected AuthID";
  }
});
if (window.opener) {
  for (const origin of JSON.parse(document.getElementById("origins").textContent)) {
    window.opener.postMessage("authid:" + authId, origin);
  }
}`;
  return layout("Your AuthID", options.appName, options.nonce, body, script);
}

/** Every HTML error: what happened, what to do, and a way to start again. */
export function errorPage(options: {
  appName: string;
  nonce: string;
  status: number;
  reason: string;
  hint?: string;
  startOver?: string;
}): Page {
  const hint = options.hint === undefined ? "" : `<p>${escapeHtml(options.hint)}</p>`;
  const again =
    options.startOver === undefined
      ? ""
      : `<p><a href="${escapeHtml(options.startOver)}">Start again</a></p>`;
  const body = `<h1>Something went wrong</h1>
<p class="error" id="reason">${escapeHtml(options.reason)}</p>${hint}${again}
<p class="muted">HTTP ${options.status}</p>`;
  return layout("Error", options.appName, options.nonce, body);
}

/** `GET /revoke`: a form that posts the AuthID (a browser needs no script for it). */
export function revokeFormPage(options: { appName: string; nonce: string }): Page {
  const body = `<h1>Revoke an AuthID</h1>
<p>Paste the AuthID to revoke. This service deletes what it holds for it and asks the provider to revoke
the refresh token, where the provider allows that.</p>
<form method="post" action="/revoke"><p><input type="text" name="authid" autocomplete="off" required
aria-label="AuthID"></p><p><button type="submit">Revoke</button></p></form>`;
  return layout("Revoke an AuthID", options.appName, options.nonce, body);
}

export function revokedPage(options: { appName: string; nonce: string; result: RevokeResult }): Page {
  const { result } = options;
  const provider = result.providerRevoked
    ? "<p>The provider confirmed that its refresh token is revoked.</p>"
    : `<p>${escapeHtml(result.detail ?? "The provider did not confirm the revocation.")}</p>`;
  const body = `<h1>AuthID revoked</h1><p>This service no longer holds anything for it.</p>${provider}`;
  return layout("AuthID revoked", options.appName, options.nonce, body);
}

/** `GET /privacy`: exactly what is stored, where, and for how long. */
export function privacyPage(options: {
  appName: string;
  nonce: string;
  storeKind: string;
  purgeAfterDays: number;
  contact?: string;
}): Page {
  const contact =
    options.contact === undefined ? "" : `<h2>Contact</h2><p>${escapeHtml(options.contact)}</p>`;
  const body = `<h1>What this service stores</h1>
<h2>For each AuthID</h2>
<ul>
<li>A random record name (the part of the AuthID before the <code>:</code>), the provider's name, when it was
created and when it was last used.</li>
<li>Your provider's refresh token and the latest access token, <strong>encrypted</strong> (AES-256-GCM) under a
key derived from the part of the AuthID after the <code>:</code>. That part is never stored or logged: the
database alone does not reveal any token, and nobody running this service can read them without your AuthID.</li>
</ul>
<p>Nothing else: no name, e-mail address or file of yours. All of it is kept in this service's ${escapeHtml(options.storeKind)} database.</p>
<h2>For how long</h2>
<ul>
<li>A record is deleted when you revoke the AuthID, or after ${options.purgeAfterDays} days without use.</li>
<li>A sign-in in progress is kept for at most 10 minutes; an AuthID waiting to be collected by your backup tool,
for at most 5 minutes, encrypted under the tool's one-time token.</li>
</ul>
<h2>Logs</h2>
<p>Each request is logged with its time, path, status, duration, the client's IP address and the first 8
characters of the record name. AuthIDs, tokens, codes and states are never logged.</p>
${contact}`;
  return layout("Privacy", options.appName, options.nonce, body);
}
