import { request } from "node:http";
import { request as tlsRequest } from "node:https";
import { describe, expect, it } from "vitest";
import { HttpError, readBody, selfSignedCertificate, sendJson, startHttpServer } from "../src/index.js";

describe("startHttpServer", () => {
  it("listens on 127.0.0.1 with a system-chosen port", async () => {
    const server = await startHttpServer((_req, res) => sendJson(res, 200, { ok: true }));
    try {
      expect(server.url).toBe(`http://127.0.0.1:${server.port}`);
      expect(server.port).toBeGreaterThan(0);
      expect(await (await fetch(server.url)).json()).toEqual({ ok: true });
    } finally {
      await server.close();
    }
  });

  it("close ends promptly even with a keep-alive connection open, and may be called twice", async () => {
    const server = await startHttpServer((_req, res) => sendJson(res, 200, { ok: true }));
    const agentResponse = await new Promise<number>((resolve, reject) => {
      const req = request(`${server.url}/`, { headers: { connection: "keep-alive" } }, (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      });
      req.on("error", reject);
      req.end();
    });
    expect(agentResponse).toBe(200);
    const started = performance.now();
    await server.close();
    await server.close();
    expect(performance.now() - started).toBeLessThan(1_000);
    await expect(fetch(server.url)).rejects.toThrow("fetch failed");
  });

  it("an HttpError thrown by the handler becomes its status, headers and JSON body", async () => {
    const server = await startHttpServer(() => {
      throw new HttpError(401, { error: "invalid_token" }, { "www-authenticate": "Bearer" });
    });
    try {
      const response = await fetch(server.url);
      expect(response.status).toBe(401);
      expect(response.headers.get("www-authenticate")).toBe("Bearer");
      expect(await response.json()).toEqual({ error: "invalid_token" });
    } finally {
      await server.close();
    }
  });

  it("any other error becomes a 500 naming it, so an emulator bug shows in the test", async () => {
    const server = await startHttpServer(async () => {
      throw new RangeError("index out of range");
    });
    try {
      const response = await fetch(server.url);
      expect(response.status).toBe(500);
      expect(await response.json()).toEqual({
        error: "emulator_error",
        error_description: "RangeError: index out of range",
      });
    } finally {
      await server.close();
    }
  });

  it("readBody refuses a body over its limit with 413", async () => {
    const server = await startHttpServer(async (req, res) => {
      const body = await readBody(req, 10);
      sendJson(res, 200, { size: body.length });
    });
    try {
      expect(await (await fetch(server.url, { method: "POST", body: "short" })).json()).toEqual({ size: 5 });
      const response = await fetch(server.url, { method: "POST", body: "much longer than ten bytes" });
      expect(response.status).toBe(413);
      expect(await response.json()).toEqual({
        error: "request_too_large",
        error_description: "more than 10 bytes",
      });
    } finally {
      await server.close();
    }
  });

  it("serves https with tls, at an https:// URL", async () => {
    const certificate = selfSignedCertificate();
    const server = await startHttpServer((_req, res) => sendJson(res, 200, { secure: true }), {
      tls: certificate,
    });
    try {
      expect(server.url).toBe(`https://127.0.0.1:${server.port}`);
      const body = await new Promise<string>((resolve, reject) => {
        const req = tlsRequest(server.url, { ca: certificate.cert }, (res) => {
          res.setEncoding("utf8");
          let text = "";
          res.on("data", (chunk: string) => {
            text += chunk;
          });
          res.on("end", () => resolve(text));
        });
        req.on("error", reject);
        req.end();
      });
      expect(JSON.parse(body)).toEqual({ secure: true });
    } finally {
      await server.close();
    }
  });
});
