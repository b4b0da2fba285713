/**
 * Policy URLs against a real HTTP server: Deno's fetch with `redirect: "manual"` hands the redirect back, and
 * readRawInput follows it by hand a bounded number of times. The server speaks plain http on loopback; the
 * fetch given to readRawInput dials it for the https URLs (TLS is not what is tested here).
 */
import assert from "node:assert/strict";
import { RefusedError } from "../../lib/errors.ts";
import { MAX_REDIRECTS, readRawInput } from "../../lib/ops/apply_source.ts";

/** A loopback server whose every path redirects to `next(path)`; counts the requests it answered. */
function redirectServer(next: (origin: string, n: number) => string) {
  let requests = 0;
  let origin = "";
  const server: Deno.HttpServer<Deno.NetAddr> = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (request): Response => {
      requests++;
      const n = Number(new URL(request.url).pathname.slice(1));
      return new Response(null, { status: 302, headers: { location: next(origin, n) } });
    },
  );
  origin = `https://127.0.0.1:${server.addr.port}`;
  const overPlainHttp =
    ((input: URL, init?: RequestInit) =>
      fetch(String(input).replace(/^https:/, "http:"), init)) as typeof fetch;
  return { server, overPlainHttp, requests: () => requests, origin };
}

Deno.test("readRawInput() follows a real server's redirects at most MAX_REDIRECTS times", async () => {
  const { server, overPlainHttp, requests, origin } = redirectServer((at, n) => `${at}/${n + 1}`);
  try {
    await assert.rejects(
      readRawInput(`${origin}/0`, { fetch: overPlainHttp }),
      new RegExp(`fetch failed: more than ${MAX_REDIRECTS} redirects$`),
    );
    assert.equal(requests(), MAX_REDIRECTS + 1);
  } finally {
    await server.shutdown();
  }
});

Deno.test("readRawInput() refuses a real server's redirect to http before fetching it", async () => {
  const { server, overPlainHttp, requests, origin } = redirectServer((at, n) =>
    n === 0 ? `${at}/1` : `http://127.0.0.1:1/${n + 1}`
  );
  try {
    await assert.rejects(readRawInput(`${origin}/0`, { fetch: overPlainHttp }), (error: unknown) => {
      assert.ok(error instanceof RefusedError);
      assert.match(
        error.message,
        new RegExp(`${origin}/1 redirects to http://127\\.0\\.0\\.1:1/2, which is not`),
      );
      return true;
    });
    assert.equal(requests(), 2);
  } finally {
    await server.shutdown();
  }
});
