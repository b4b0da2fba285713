import assert from "node:assert/strict";
import { Hono } from "hono";
import { allowedHosts, guardHost } from "./host_check.ts";

const app = new Hono().get("/health/live", (c) => c.json({ live: true }));

async function get(host: string | undefined, address = { hostname: "127.0.0.1", port: 9180 }) {
  const headers: Record<string, string> = host === undefined ? {} : { host };
  return await guardHost(app, address).request("http://aegisbpf/health/live", { headers });
}

Deno.test("guardHost() serves a request naming the listener's own address or localhost with its port", async () => {
  for (const host of ["127.0.0.1:9180", "localhost:9180", "LOCALHOST:9180"]) {
    const response = await get(host);
    assert.equal(response.status, 200, host);
    assert.deepEqual(await response.json(), { live: true });
  }
  assert.equal((await get("[::1]:9180", { hostname: "::1", port: 9180 })).status, 200);
  assert.equal((await get("127.0.0.1:9180", { hostname: "localhost", port: 9180 })).status, 200);
});

Deno.test("guardHost() refuses any other Host, a missing one, and another port with 421 problem+json", async () => {
  for (
    const host of ["attacker.example:9180", "attacker.example", "127.0.0.1:80", "127.0.0.2:9180", undefined]
  ) {
    const response = await get(host);
    assert.equal(response.status, 421, String(host));
    assert.equal(response.headers.get("content-type"), "application/problem+json");
    const body = await response.json();
    assert.equal(body.title, "Misdirected request");
    assert.match(body.detail, /this listener serves requests for 127\.0\.0\.1:9180 only/);
  }
  assert.match((await (await get("evil:1")).json()).detail, /^Host "evil:1": /);
  assert.match((await (await get(undefined)).json()).detail, /^No Host header: /);
});

Deno.test("allowedHosts() takes a port-less Host only on port 80", () => {
  assert.deepEqual([...allowedHosts({ hostname: "127.0.0.1", port: 80 })].sort(), [
    "127.0.0.1",
    "127.0.0.1:80",
    "localhost",
    "localhost:80",
  ]);
  assert.deepEqual([...allowedHosts({ hostname: "::1", port: 9180 })].sort(), [
    "[::1]:9180",
    "localhost:9180",
  ]);
});
