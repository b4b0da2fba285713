/**
 * The local API's listeners, for real: the Unix socket is created 0600, peers are checked by uid
 * (SO_PEERCRED) even when the file mode would let them in, an allowed peer reaches every endpoint (curl
 * over the socket, as an operator would), Server-Sent Events resume with Last-Event-ID, and the loopback
 * TCP listener answers only the read-only endpoints.
 */
import assert from "node:assert/strict";
import { type ApiDeps, createApp } from "../../lib/api/app.ts";
import { EventHub } from "../../lib/api/event_hub.ts";
import { parseApiAddress, serveApi } from "../../lib/api/server.ts";
import { InputError } from "../../lib/errors.ts";
import { rootTest, run } from "../support/privileged.ts";
import { freeTcpPort } from "../support/listeners.ts";

function deps(events: EventHub): ApiDeps {
  return {
    health: () => Promise.resolve({ ready: true, report: { mode: "audit" } }),
    metrics: () => "# HELP aegisbpf_pinned x\n# TYPE aegisbpf_pinned gauge\naegisbpf_pinned 1\n",
    status: () => ({ mode: "audit", policy: "api-test" }),
    events,
    applyPolicy: () => Promise.reject(new InputError("api.yaml:1:1: not a policy")),
    rollback: () => Promise.resolve({ rolledBack: true }),
    breakGlass: (request) => Promise.resolve({ breakGlass: request.on }),
    sessions: {
      add: () => Promise.resolve({ id: "1", expiresAt: "2026-01-01T00:00:00Z", interfaces: [] }),
      remove: () => Promise.resolve(false),
    },
    exceptions: {
      add: (request) =>
        Promise.resolve({ id: 1, kind: "exec" as const, allow: request.allow, state: "active" as const }),
      list: () => [],
      remove: () => Promise.resolve(true),
    },
  };
}

async function curl(socket: string | undefined, args: string[]): Promise<{ code: number; out: string }> {
  const unix = socket === undefined ? [] : ["--unix-socket", socket];
  const result = await run("curl", ["-sS", "--max-time", "5", ...unix, ...args]);
  return { code: result.code, out: result.stdout + result.stderr };
}

rootTest("[root] the API's Unix socket is 0600, checks the peer uid, and serves every endpoint", async () => {
  const dir = await Deno.makeTempDir({ prefix: "aegisbpf-api-test-" });
  const events = new EventHub({ retain: 100 });
  const port = freeTcpPort();
  const socket = `${dir}/run/api.sock`;
  const server = await serveApi({
    app: createApp(deps(events), { readOnly: false }),
    readOnlyApp: createApp(deps(events), { readOnly: true }),
    addresses: [parseApiAddress(`unix:${socket}`), parseApiAddress(`tcp:127.0.0.1:${port}`)],
    allowUids: [0],
  });
  try {
    const info = await Deno.stat(socket);
    assert.ok(info.isSocket);
    assert.equal(info.mode! & 0o777, 0o600);
    assert.equal((await Deno.stat(`${dir}/run`)).mode! & 0o777, 0o700);

    const status = await curl(socket, ["http://aegisbpf/v1/status"]);
    assert.equal(status.code, 0, status.out);
    assert.deepEqual(JSON.parse(status.out), { mode: "audit", policy: "api-test" });
    const glass = await curl(socket, [
      "-X",
      "POST",
      "-d",
      '{"on":true,"reason":"api test"}',
      "http://aegisbpf/v1/break-glass",
    ]);
    assert.deepEqual(JSON.parse(glass.out), { breakGlass: true });
    const bad = await curl(socket, [
      "-i",
      "-X",
      "POST",
      "-d",
      '{"on":true}',
      "http://aegisbpf/v1/break-glass",
    ]);
    assert.match(bad.out, /^HTTP\/1\.1 400/);
    assert.match(bad.out, /content-type: application\/problem\+json/i);
    const policy = await curl(socket, [
      "-i",
      "-X",
      "POST",
      "--data-binary",
      "x: 1",
      "http://aegisbpf/v1/policy",
    ]);
    assert.match(policy.out, /^HTTP\/1\.1 400/);
    assert.match(policy.out, /api\.yaml:1:1: not a policy/);

    // Another uid: the file mode keeps it out; opened up by hand, the peer check still refuses it.
    const nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"];
    const denied = await run("setpriv", [
      ...nobody,
      "curl",
      "-sS",
      "--unix-socket",
      socket,
      "http://a/v1/status",
    ]);
    assert.match(denied.stderr, /Permission denied|Couldn't connect/);
    await Deno.chmod(dir, 0o755);
    await Deno.chmod(`${dir}/run`, 0o755);
    await Deno.chmod(socket, 0o666);

    const checked = await run("setpriv", [
      ...nobody,
      "curl",
      "-sS",
      "-i",
      "--unix-socket",
      socket,
      "http://a/v1/status",
    ]);
    assert.match(checked.stdout, /^HTTP\/1\.1 403 Forbidden/, checked.stderr);
    assert.match(checked.stdout, /uid 65534 may not use this API/);
    assert.equal(server.refused, 1);
    // Exceptions: root adds one; another uid is refused by the same peer check.
    const exceptionBody = '{"allow":"exec:/usr/bin/true","ttl":"5m","reason":"api test"}';
    const excepted = await curl(socket, ["-X", "POST", "-d", exceptionBody, "http://aegisbpf/v1/exceptions"]);
    assert.equal(JSON.parse(excepted.out).id, 1, excepted.out);
    const strangerExcepts = await run("setpriv", [
      ...nobody,
      "curl",
      "-sS",
      "-i",
      "--unix-socket",
      socket,
      "-X",
      "POST",
      "-d",
      exceptionBody,
      "http://a/v1/exceptions",
    ]);
    assert.match(strangerExcepts.stdout, /^HTTP\/1\.1 403 Forbidden/, strangerExcepts.stderr);
    assert.equal(server.refused, 2);

    // Server-Sent Events, resumed after Last-Event-ID 2.
    for (let i = 1; i <= 4; i++) events.publish(`{"n":${i}}`);
    const sse = await curl(socket, [
      "-N",
      "--max-time",
      "2",
      "-H",
      "Last-Event-ID: 2",
      "http://aegisbpf/v1/events",
    ]);
    assert.match(sse.out, /data: \{"n":3\}\nid: 3\n\ndata: \{"n":4\}\nid: 4\n\n/);
    assert.doesNotMatch(sse.out, /"n":2/);

    // TCP: read-only.
    const metrics = await curl(undefined, [`http://127.0.0.1:${port}/metrics`]);
    assert.match(metrics.out, /^aegisbpf_pinned 1$/m);
    const write = await curl(undefined, [
      "-i",
      "-X",
      "POST",
      "-d",
      '{"on":false}',
      `http://127.0.0.1:${port}/v1/break-glass`,
    ]);
    assert.match(write.out, /^HTTP\/1\.1 403/);
  } finally {
    events.close();
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
  assert.throws(() => Deno.statSync(socket), Deno.errors.NotFound);
});

Deno.test("parseApiAddress() takes unix:PATH and loopback tcp:HOST:PORT only", () => {
  assert.deepEqual(parseApiAddress("unix:/run/aegisbpf/api.sock"), {
    transport: "unix",
    path: "/run/aegisbpf/api.sock",
  });
  assert.deepEqual(parseApiAddress("tcp:127.0.0.1:9180"), {
    transport: "tcp",
    hostname: "127.0.0.1",
    port: 9180,
  });
  assert.deepEqual(parseApiAddress("tcp:[::1]:9180"), { transport: "tcp", hostname: "::1", port: 9180 });
  for (
    const [text, message] of [
      ["tcp:0.0.0.0:9180", /serves only loopback/],
      ["tcp:10.0.0.1:80", /serves only loopback/],
      ["unix:relative.sock", /absolute socket path/],
      ["tcp:127.0.0.1:70000", /port 70000/],
      ["http://x", /give unix:PATH or tcp:HOST:PORT/],
    ] as const
  ) {
    assert.throws(
      () => parseApiAddress(text),
      (e: unknown) => e instanceof InputError && message.test(e.message),
    );
  }
});

rootTest("[root] a second server on a live API socket is refused, a stale socket is taken over", async () => {
  const dir = await Deno.makeTempDir({ prefix: "aegisbpf-api-test-" });
  const events = new EventHub();
  const options = {
    app: createApp(deps(events), { readOnly: false }),
    readOnlyApp: createApp(deps(events), { readOnly: true }),
    addresses: [parseApiAddress(`unix:${dir}/api.sock`)],
    allowUids: [0],
  };
  try {
    const first = await serveApi(options);
    try {
      await assert.rejects(() => serveApi(options), /another process serves it already/);
    } finally {
      await first.close();
    }
    // A socket file nobody listens on (an agent killed with -9 leaves one).
    const stale = Deno.listen({ transport: "unix", path: `${dir}/api.sock` });
    stale.close();
    const second = await serveApi(options);
    const status = await curl(`${dir}/api.sock`, ["http://aegisbpf/v1/status"]);
    assert.equal(status.code, 0, status.out);
    await second.close();
  } finally {
    events.close();
    await Deno.remove(dir, { recursive: true });
  }
});
