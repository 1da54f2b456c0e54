import { hardKeys } from "@stowage/core/conformance";
import { describe, expect, it } from "vitest";
import { parseMultistatus } from "../src/multistatus.js";
import { createNameCodec, encodeSegment, hrefSegments, isTempName, tempName } from "../src/names.js";

describe("names", () => {
  it("the backslash codec round-trips every hard key and the escape cases", () => {
    const codec = createNameCodec("\\");
    const cases = [...hardKeys.map((h) => h.key), "a\\b", "a＼b", "‛", "‛＼", "‛\\", "＼\\‛‛"];
    for (const name of cases) {
      const stored = codec.encode(name);
      expect(stored).not.toContain("\\");
      expect(codec.decode(stored), JSON.stringify(name)).toBe(name);
    }
    expect(codec.encode("back\\slash")).toBe("back＼slash");
    expect(codec.encode("a＼b")).toBe("a‛＼b");
  });

  it("with no reserved characters, names are stored as they are", () => {
    const codec = createNameCodec("");
    expect(codec.encode("a\\b＼‛")).toBe("a\\b＼‛");
    expect(codec.decode("a＼b")).toBe("a＼b");
  });

  it("refuses reserved characters that are not printable ASCII, or '/'", () => {
    expect(() => createNameCodec("/")).toThrow(/reservedCharacters/);
    expect(() => createNameCodec("é")).toThrow(/reservedCharacters/);
  });

  it("encodes every character outside RFC 3986's unreserved set", () => {
    expect(encodeSegment("a b%#?;:@&=+$,!'()*~._-é")).toBe(
      "a%20b%25%23%3F%3B%3A%40%26%3D%2B%24%2C%21%27%28%29%2A~._-%C3%A9",
    );
  });

  it("reads hrefs in every form the servers send", () => {
    // Apache: a path, lower-case escapes.
    expect(hrefSegments("/dav/100%25%20%23%3f%c3%a9%22%3c%3e%5c")).toEqual(["dav", '100% #?é"<>\\']);
    // webdav-server: an absolute URL, '#' and '?' left raw.
    expect(hrefSegments("http://127.0.0.1:8080/a/100%25%20#?%C3%A9")).toEqual(["a", "100% #?é"]);
    // rclone: a path, collections with a trailing slash.
    expect(hrefSegments("/a/sub/")).toEqual(["a", "sub"]);
    // Not encoded at all, and a '%' that starts no escape.
    expect(hrefSegments("/a/x y 100%")).toEqual(["a", "x y 100%"]);
    expect(hrefSegments("https://host/")).toEqual([]);
  });

  it("temporary names cannot be keys and are recognised", () => {
    const name = tempName();
    expect(isTempName(name)).toBe(true);
    expect(name.charCodeAt(0)).toBe(1);
    expect(Buffer.byteLength(name)).toBeLessThan(32);
    expect(isTempName("stowage-0123")).toBe(false);
  });
});

describe("multistatus", () => {
  it("keeps the properties of every 2xx propstat, whatever their order and prefixes", () => {
    const xml = `<?xml version="1.0"?>
<d:multistatus xmlns:d="DAV:" xmlns:lp1="DAV:">
<d:response>
<d:href>/dav/folder/</d:href>
<d:propstat><d:prop><lp1:getcontentlength/></d:prop><d:status>HTTP/1.1 404 Not Found</d:status></d:propstat>
<d:propstat><d:status>HTTP/1.1 200 OK</d:status><d:prop>
<lp1:resourcetype><d:collection/></lp1:resourcetype>
<lp1:getlastmodified>Sun, 29 Nov 2026 00:13:08 GMT</lp1:getlastmodified>
</d:prop></d:propstat>
</d:response>
<d:response><d:href><![CDATA[/dav/folder/a&b.txt]]></d:href>
<d:propstat><d:prop><d:resourcetype/><d:getcontentlength>12</d:getcontentlength>
<d:getetag>W/"c-6615f2873d960"</d:getetag></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>
<d:response><d:href>/dav/folder/ lead&amp;trail </d:href><d:status>HTTP/1.1 404 Not Found</d:status></d:response>
</d:multistatus>`;
    const [folder, file, missing] = parseMultistatus(xml);
    expect(folder).toEqual({
      href: "/dav/folder/",
      collection: true,
      modified: new Date("2026-11-29T00:13:08Z"),
    });
    expect(file).toEqual({
      href: "/dav/folder/a&b.txt",
      collection: false,
      size: 12,
      etag: 'W/"c-6615f2873d960"',
    });
    expect(missing).toEqual({ href: "/dav/folder/ lead&trail ", collection: false, status: 404 });
  });

  it("reads a collection marked with a self-closing element that declares its namespace (rclone)", () => {
    const xml =
      '<?xml version="1.0" encoding="UTF-8"?><D:multistatus xmlns:D="DAV:"><D:response><D:href>/a/</D:href><D:propstat><D:prop>' +
      '<D:resourcetype><D:collection xmlns:D="DAV:"/></D:resourcetype></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response></D:multistatus>';
    expect(parseMultistatus(xml)).toEqual([{ href: "/a/", collection: true }]);
  });

  it("refuses a body that is not a multistatus", () => {
    expect(() => parseMultistatus("<html><body>Login</body></html>")).toThrow(/multistatus/);
  });
});
