/**
 * A reader for RFC 4918 multistatus bodies (PROPFIND answers), limited to what a listing needs. It
 * keeps every `propstat` of a response (a server answers the properties it has with 200 and the ones
 * a collection lacks, such as `getcontentlength`, with 404, in either order), matches elements by
 * local name whatever the prefix (`D:`, `d:`, `lp1:` …), decodes entities, and keeps `href` text
 * exactly as sent, spaces included.
 */

/** One `<response>` of a multistatus. */
export interface DavResource {
  /** As sent: an absolute URL or a path, percent-encoded or not. */
  href: string;
  /** The response's own status (a `<status>` beside `<href>`), when it has one instead of properties. */
  status?: number;
  collection: boolean;
  size?: number;
  modified?: Date;
  etag?: string;
}

/** The PROPFIND body asking for the four properties an entry needs (smaller and faster than allprop). */
export const propfindBody =
  '<?xml version="1.0" encoding="utf-8"?>' +
  '<D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getcontentlength/><D:getlastmodified/><D:getetag/></D:prop></D:propfind>';

const entities: Record<string, string> = { lt: "<", gt: ">", amp: "&", quot: '"', apos: "'" };

function decodeEntities(text: string): string {
  return text.replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (whole, name: string) => {
    if (name[0] === "#") {
      const code =
        name[1] === "x" || name[1] === "X"
          ? Number.parseInt(name.slice(2), 16)
          : Number.parseInt(name.slice(1), 10);
      return Number.isFinite(code) && code <= 0x10ffff ? String.fromCodePoint(code) : whole;
    }
    return entities[name] ?? whole;
  });
}

function statusCode(line: string): number | undefined {
  const match = /^\s*HTTP\/[\d.]+\s+(\d{3})/i.exec(line);
  return match ? Number(match[1]) : undefined;
}

// Pretty-printing servers put line breaks around text; a name never holds a control character, so
// surrounding whitespace that contains one is layout, while plain spaces may be part of a name.
function trimLayout(text: string): string {
  return text.replace(/^\s*[\r\n\t]\s*/, "").replace(/\s*[\r\n\t]\s*$/, "");
}

interface PropstatProps {
  collection: boolean;
  size?: string;
  modified?: string;
  etag?: string;
}

const token =
  /<!\[CDATA\[([\s\S]*?)\]\]>|<!--[\s\S]*?-->|<\?[\s\S]*?\?>|<!DOCTYPE[^>]*>|<(\/?)(?:[\w.-]+:)?([\w.-]+)((?:\s+[^\s=/>]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(\/?)>|([^<]+)/gi;

/**
 * Parses a multistatus body into its responses.
 *
 * @throws Error when the body is not a multistatus (the caller turns it into `Protocol`).
 */
export function parseMultistatus(xml: string): DavResource[] {
  const resources: DavResource[] = [];
  const stack: string[] = [];
  let sawMultistatus = false;
  let text = "";
  let href: string | undefined;
  let responseStatus: number | undefined;
  let merged: PropstatProps = { collection: false };
  let props: PropstatProps = { collection: false };
  let propstatStatus: number | undefined;

  const parent = () => stack[stack.length - 2];
  for (const match of xml.matchAll(token)) {
    const [, cdata, closing, name, , selfClosing, chars] = match;
    if (cdata !== undefined || chars !== undefined) {
      text += cdata ?? decodeEntities(chars!);
      continue;
    }
    if (name === undefined) continue;
    const local = name.toLowerCase();
    if (!closing) {
      stack.push(local);
      text = "";
      if (local === "multistatus") sawMultistatus = true;
      if (local === "response") {
        href = undefined;
        responseStatus = undefined;
        merged = { collection: false };
      } else if (local === "propstat") {
        props = { collection: false };
        propstatStatus = undefined;
      } else if (local === "collection" && parent() === "resourcetype") {
        props.collection = true;
      }
      if (!selfClosing) continue;
    }
    // An end tag (or the end of a self-closing one): `stack.at(-1)` is the element being closed.
    const closed = stack.pop();
    const within = stack.at(-1);
    if (closed === "href" && within === "response") href = trimLayout(text);
    else if (closed === "status" && within === "response") responseStatus = statusCode(text);
    else if (closed === "status" && within === "propstat") propstatStatus = statusCode(text);
    else if (within === "prop" && closed === "getcontentlength") props.size = text.trim();
    else if (within === "prop" && closed === "getlastmodified") props.modified = text.trim();
    else if (within === "prop" && closed === "getetag") props.etag = text.trim();
    else if (
      closed === "propstat" &&
      propstatStatus !== undefined &&
      propstatStatus >= 200 &&
      propstatStatus < 300
    ) {
      merged = {
        collection: merged.collection || props.collection,
        size: props.size ?? merged.size,
        modified: props.modified ?? merged.modified,
        etag: props.etag ?? merged.etag,
      };
    } else if (closed === "response" && href !== undefined) {
      resources.push(toResource(href, responseStatus, merged));
    }
    text = "";
  }
  if (!sawMultistatus) throw new Error("the body is not a WebDAV multistatus");
  return resources;
}

function toResource(href: string, status: number | undefined, props: PropstatProps): DavResource {
  const resource: DavResource = { href, collection: props.collection };
  if (status !== undefined) resource.status = status;
  if (!props.collection && props.size !== undefined && /^\d+$/.test(props.size))
    resource.size = Number(props.size);
  if (props.modified) {
    const time = Date.parse(props.modified);
    if (!Number.isNaN(time)) resource.modified = new Date(time);
  }
  if (props.etag) resource.etag = props.etag;
  return resource;
}
