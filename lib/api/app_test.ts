import assert from "node:assert/strict";
import { InputError, RefusedError } from "../errors.ts";
import { MAX_INPUT_BYTES } from "../ops/apply_source.ts";
import { type ApiDeps, createApp } from "./app.ts";
import { EventHub } from "./event_hub.ts";

function fakeDeps(overrides: Partial<ApiDeps> = {}) {
  const calls: unknown[][] = [];
  const deps: ApiDeps = {
    health: () => Promise.resolve({ ready: true, report: { mode: "enforce" } }),
    metrics: () => "# HELP aegisbpf_enforcing x\n# TYPE aegisbpf_enforcing gauge\naegisbpf_enforcing 1\n",
    status: () => ({ mode: "enforce" }),
    events: new EventHub({ retain: 3 }),
    applyPolicy: (body) => (calls.push(["apply", body]), Promise.resolve({ applied: true })),
    rollback: (request) => (calls.push(["rollback", request]), Promise.resolve({ rolledBack: true })),
    breakGlass: (request) => (calls.push(["breakGlass", request]), Promise.resolve({ ok: true })),
    sessions: {
      add: (
        request,
      ) => (calls.push(["add", request]),
        Promise.resolve({ id: "7", expiresAt: "2026-11-23T00:00:00Z", interfaces: ["eth0"] })),
      remove: (id) => (calls.push(["remove", id]), Promise.resolve(id === "7")),
    },
    exceptions: {
      add: (
        request,
      ) => (calls.push(["exception", request]),
        Promise.resolve({ id: 3, kind: "egress" as const, allow: request.allow, state: "active" as const })),
      list: () => [{ id: 3, kind: "egress" as const, state: "expired" as const }],
      remove: (id) => (calls.push(["unexcept", id]), Promise.resolve(id === 3)),
    },
    ...overrides,
  };
  return { deps, calls };
}

const post = (body: unknown) => ({
  method: "POST",
  body: typeof body === "string" ? body : JSON.stringify(body),
  headers: { "content-type": "application/json" },
});

async function problemOf(response: Response) {
  assert.equal(response.headers.get("content-type"), "application/problem+json");
  const body = await response.json();
  assert.equal(body.status, response.status);
  return body as { title: string; detail: string; issues?: { path: string }[] };
}

Deno.test("createApp() serves health, metrics and status", async () => {
  const app = createApp(fakeDeps().deps, { readOnly: false });
  assert.deepEqual(await (await app.request("/health/live")).json(), { live: true });
  const ready = await app.request("/health/ready");
  assert.equal(ready.status, 200);
  assert.deepEqual(await ready.json(), { ready: true, health: { mode: "enforce" } });
  const metrics = await app.request("/metrics");
  assert.match(metrics.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
  assert.match(await metrics.text(), /^aegisbpf_enforcing 1$/m);
  assert.deepEqual(await (await app.request("/v1/status")).json(), { mode: "enforce" });
  const unready = createApp(fakeDeps({ health: () => Promise.resolve({ ready: false, report: {} }) }).deps, {
    readOnly: true,
  });
  assert.equal((await unready.request("/health/ready")).status, 503);
});

Deno.test("createApp() validates bodies with problem+json 400 naming the field", async () => {
  const { deps, calls } = fakeDeps();
  const app = createApp(deps, { readOnly: false });
  const cases: [string, unknown, RegExp][] = [
    ["/v1/break-glass", { on: true }, /reason/],
    ["/v1/break-glass", { on: true, reason: "x", ttl: "forever" }, /ttl/],
    ["/v1/break-glass", { on: "yes" }, /on/],
    ["/v1/break-glass", "{not json", /not JSON/],
    ["/v1/ingress/sessions", { cidr: "10.0.0.0/33", ttl: "5m" }, /cidr: not a CIDR/],
    ["/v1/ingress/sessions", { cidr: "10.0.0.0/8", ttl: "2d" }, /ttl/],
    ["/v1/ingress/sessions", { cidr: "10.0.0.0/8", ttl: "5m", ports: [0] }, /ports/],
    ["/v1/ingress/sessions", { cidr: "10.0.0.0/8", ttl: "5m", extra: 1 }, /extra/],
    ["/v1/policy/rollback", { to: 3 }, /to/],
  ];
  for (const [path, body, detail] of cases) {
    const response = await app.request(path, post(body));
    assert.equal(response.status, 400, `${path} ${JSON.stringify(body)}`);
    assert.match((await problemOf(response)).detail, detail);
  }
  assert.deepEqual(calls, [], "nothing invalid reached the agent");
});

Deno.test("createApp() passes valid requests to the agent", async () => {
  const { deps, calls } = fakeDeps();
  const app = createApp(deps, { readOnly: false });
  assert.equal(
    (await app.request("/v1/break-glass", post({ on: true, reason: "incident 42", ttl: "30m" }))).status,
    200,
  );
  assert.equal((await app.request("/v1/break-glass", post({ on: false }))).status, 200);
  const session = await app.request(
    "/v1/ingress/sessions",
    post({ cidr: "198.51.100.0/24", ports: [22], ttl: "10m" }),
  );
  assert.equal(session.status, 201);
  assert.equal(session.headers.get("location"), "/v1/ingress/sessions/7");
  assert.equal((await app.request("/v1/ingress/sessions/7", { method: "DELETE" })).status, 204);
  assert.equal((await app.request("/v1/ingress/sessions/8", { method: "DELETE" })).status, 404);
  assert.equal((await app.request("/v1/policy/rollback", post({}))).status, 200);
  assert.equal(
    (await app.request("/v1/policy", { method: "POST", body: "apiVersion: aegisbpf.io/v1\n" })).status,
    200,
  );
  assert.deepEqual(calls, [
    ["breakGlass", { on: true, reason: "incident 42", ttlMs: 1_800_000 }],
    ["breakGlass", { on: false }],
    ["add", { cidr: "198.51.100.0/24", ports: [22], ttlMs: 600_000 }],
    ["remove", "7"],
    ["remove", "8"],
    ["rollback", {}],
    ["apply", { text: "apiVersion: aegisbpf.io/v1\n", source: "api" }],
  ]);
});

Deno.test("createApp() maps agent errors to problems: 400 input, 409 refused, 500 failure", async () => {
  const failing = (error: Error) =>
    createApp(fakeDeps({ applyPolicy: () => Promise.reject(error) }).deps, { readOnly: false });
  const cases: [Error, number, string][] = [
    [new InputError("p.yaml:3:1: spec.mode: bad"), 400, "Invalid input"],
    [new RefusedError("Refused bundle: replay"), 409, "Refused for safety"],
    [new Error("bpf_map_update_elem failed"), 500, "Agent error"],
  ];
  for (const [error, status, title] of cases) {
    const response = await failing(error).request("/v1/policy", { method: "POST", body: "x" });
    assert.equal(response.status, status);
    const body = await problemOf(response);
    assert.equal(body.title, title);
    assert.equal(body.detail, error.message);
  }
  const app = createApp(fakeDeps().deps, { readOnly: false });
  assert.equal((await problemOf(await app.request("/v1/nope"))).title, "Not found");
  const huge = await app.request("/v1/break-glass", post({ on: true, reason: "x".repeat(100_000) }));
  assert.equal(huge.status, 413);
});

Deno.test("createApp() takes a policy body up to the size the CLI reads, and answers 413 above it", async () => {
  const { deps, calls } = fakeDeps();
  const app = createApp(deps, { readOnly: false });
  const at = await app.request("/v1/policy", { method: "POST", body: "#".repeat(MAX_INPUT_BYTES) });
  assert.equal(at.status, 200);
  assert.equal(calls.length, 1);
  const over = await app.request("/v1/policy", { method: "POST", body: "#".repeat(MAX_INPUT_BYTES + 1) });
  assert.equal(over.status, 413);
  assert.match((await problemOf(over)).detail, new RegExp(`at most ${MAX_INPUT_BYTES} bytes`));
  assert.equal(calls.length, 1);
});

Deno.test("createApp() read-only (TCP) answers only health and metrics", async () => {
  const { deps, calls } = fakeDeps();
  const app = createApp(deps, { readOnly: true });
  assert.equal((await app.request("/health/live")).status, 200);
  assert.equal((await app.request("/metrics")).status, 200);
  for (
    const [path, init] of [
      ["/v1/status", {}],
      ["/v1/events", {}],
      ["/v1/break-glass", post({ on: false })],
      ["/v1/policy", post("x")],
      ["/v1/ingress/sessions/7", { method: "DELETE" }],
    ] as const
  ) {
    const response = await app.request(path, init);
    assert.equal(response.status, 403, path);
    assert.match((await problemOf(response)).detail, /Unix socket only/);
  }
  assert.deepEqual(calls, []);
});

Deno.test("createApp() streams events as SSE and resumes after Last-Event-ID", async () => {
  const { deps } = fakeDeps();
  const app = createApp(deps, { readOnly: false });
  for (let i = 1; i <= 5; i++) deps.events.publish(`{"n":${i}}`);
  const response = await app.request("/v1/events", { headers: { "last-event-id": "1" } });
  assert.equal(response.headers.get("content-type"), "text/event-stream");
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes('{"n":5}')) text += (await reader.read()).value ?? "";
  // Event 2 is gone (3 retained): the client is told, then gets 3, 4, 5.
  assert.match(
    text,
    /^event: events\.dropped\ndata: \{"type":"events\.dropped","count":1,"reason":"not retained"\}\n\n/,
  );
  assert.match(text, /data: \{"n":3\}\nid: 3\n\ndata: \{"n":4\}\nid: 4\n\ndata: \{"n":5\}\nid: 5\n\n$/);
  deps.events.publish('{"n":6}');
  text = "";
  while (!text.includes('{"n":6}')) text += (await reader.read()).value ?? "";
  assert.equal(text, 'data: {"n":6}\nid: 6\n\n');
  await reader.cancel();
  deps.events.close();
});

Deno.test("createApp() escapes DEL, C1 and bidi characters in every JSON answer, problems too", async () => {
  const name = "web\x7f\x9b2J\u202e";
  const app = createApp(
    fakeDeps({
      status: () => ({ policy: { name } }),
      applyPolicy: () => Promise.reject(new InputError(`p.yaml:1:1: ${name}: bad`)),
    }).deps,
    { readOnly: false },
  );
  const status = await app.request("/v1/status");
  assert.equal(status.status, 200);
  assert.match(status.headers.get("content-type") ?? "", /json/);
  const text = await status.text();
  assert.equal(text, '{"policy":{"name":"web\\u007f\\u009b2J\\u202e"}}');
  assert.deepEqual(JSON.parse(text), { policy: { name } });
  const refused = await app.request("/v1/policy", { method: "POST", body: "x" });
  assert.equal(refused.status, 400);
  assert.equal(refused.headers.get("content-type"), "application/problem+json");
  const problem = await refused.text();
  assert.ok(!/[\x7f-\x9f\u202e]/.test(problem), problem);
  assert.equal(JSON.parse(problem).detail, `p.yaml:1:1: ${name}: bad`);
});

Deno.test("createApp() adds, lists and removes exceptions, refusing bad bodies and ids", async () => {
  const { deps, calls } = fakeDeps();
  const app = createApp(deps, { readOnly: false });
  const added = await app.request(
    "/v1/exceptions",
    post({ allow: "egress:10.0.0.0/8:443", ttl: "30m", reason: "INC-1", ticket: "CHG-2" }),
  );
  assert.equal(added.status, 201);
  assert.equal(added.headers.get("location"), "/v1/exceptions/3");
  assert.deepEqual(calls.at(-1), [
    "exception",
    { allow: "egress:10.0.0.0/8:443", ttl: "30m", reason: "INC-1", ticket: "CHG-2" },
  ]);
  assert.deepEqual(await (await app.request("/v1/exceptions")).json(), [{
    id: 3,
    kind: "egress",
    state: "expired",
  }]);
  assert.equal((await app.request("/v1/exceptions", post({ allow: "exec:/x", ttl: "1m" }))).status, 400);
  assert.equal(
    (await app.request("/v1/exceptions", post({ allow: "x", ttl: "1m", reason: "r", extra: 1 }))).status,
    400,
  );
  assert.equal((await app.request("/v1/exceptions/3", { method: "DELETE" })).status, 204);
  assert.equal((await app.request("/v1/exceptions/4", { method: "DELETE" })).status, 404);
  assert.equal((await app.request("/v1/exceptions/x1", { method: "DELETE" })).status, 400);
  const refusing = createApp(
    fakeDeps({
      exceptions: {
        add: () => Promise.reject(new InputError("--ttl 8d is longer than an exception may live here (7d)")),
        list: () => [],
        remove: () => Promise.resolve(false),
      },
    }).deps,
    { readOnly: false },
  );
  const refused = await refusing.request(
    "/v1/exceptions",
    post({ allow: "exec:/x", ttl: "8d", reason: "r" }),
  );
  assert.equal(refused.status, 400);
  assert.match((await problemOf(refused)).detail, /--ttl 8d/);
  const readOnly = createApp(deps, { readOnly: true });
  assert.equal((await readOnly.request("/v1/exceptions")).status, 403, "not on a read-only listener");
});
