/**
 * The OpenAPI document (lib/api/openapi.ts) and docs/api.md against the app itself: the same routes and
 * methods both ways, the same bodies, the same split between the Unix socket and the read-only listeners.
 */
import assert from "node:assert/strict";
import type { Hono } from "hono";
import { type ApiDeps, createApp } from "./app.ts";
import { breakGlassSchema, exceptionSchema, rollbackSchema, sessionSchema } from "./bodies.ts";
import { bodySchema, LISTENERS_KEY, OPENAPI_PATH, openApiDocument } from "./openapi.ts";

type Operation = { requestBody?: { content: Record<string, { schema: Record<string, unknown> }> } } & {
  [LISTENERS_KEY]: string[];
};
type Document = { openapi: string; paths: Record<string, Record<string, Operation>> };

const DOCUMENT = openApiDocument() as Document;
/** `GET /v1/status`, with path parameters as `{id}`. */
const OPERATIONS = Object.entries(DOCUMENT.paths).flatMap(([path, methods]) =>
  Object.entries(methods).map(([method, operation]) => ({
    key: `${method.toUpperCase()} ${path}`,
    operation,
  }))
);

/** Only what the read-only endpoints call: any other call fails the test. */
const DEPS = {
  health: () => Promise.resolve({ ready: true, report: {} }),
  metrics: () => "",
} as unknown as ApiDeps;

function registered(app: Hono): string[] {
  const keys = app.routes.filter((route) => route.method !== "ALL")
    .map((route) => `${route.method} ${route.path.replace(/:(\w+)/g, "{$1}")}`);
  return [...new Set(keys)].sort();
}

/** A request for an operation, with `x` for each path parameter. */
function requestOf(key: string, body?: unknown): [string, RequestInit] {
  const [method, path] = key.split(" ") as [string, string];
  return [path.replace(/\{\w+\}/g, "x"), {
    method,
    ...(body === undefined
      ? {}
      : { body: JSON.stringify(body), headers: { "content-type": "application/json" } }),
  }];
}

Deno.test("the OpenAPI document has every route the app registers, with its method, and no other", () => {
  assert.equal(DOCUMENT.openapi, "3.1.0");
  assert.deepEqual(registered(createApp(DEPS, { readOnly: false })), OPERATIONS.map((op) => op.key).sort());
});

Deno.test("GET /v1/openapi.json serves the document on the Unix socket and on the read-only listener", async () => {
  for (const readOnly of [false, true]) {
    const response = await createApp(DEPS, { readOnly }).request(OPENAPI_PATH);
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), DOCUMENT);
  }
});

Deno.test("the read-only listener serves exactly the operations the document lists for tcp", async () => {
  const app = createApp(DEPS, { readOnly: true });
  for (const { key, operation } of OPERATIONS) {
    const response = await app.request(...requestOf(key));
    await response.body?.cancel();
    assert.equal(
      response.status === 403,
      !operation[LISTENERS_KEY].includes("tcp"),
      `${key}: ${response.status}`,
    );
    assert.ok(operation[LISTENERS_KEY].includes("unix"), key);
  }
});

Deno.test("request bodies are the JSON Schema of the zod schemas the handlers validate with", async () => {
  const bodies: Record<string, unknown> = {
    "POST /v1/policy/rollback": bodySchema(rollbackSchema),
    "POST /v1/break-glass": bodySchema(breakGlassSchema),
    "POST /v1/ingress/sessions": bodySchema(sessionSchema),
    "POST /v1/exceptions": bodySchema(exceptionSchema),
  };
  const app = createApp(DEPS, { readOnly: false });
  for (const { key, operation } of OPERATIONS) {
    const schema = operation.requestBody?.content["application/json"]?.schema;
    if (!(key in bodies)) continue;
    assert.deepEqual(schema, bodies[key], key);
    // The handler refuses what the document does not allow: a key no schema variant lists.
    const response = await app.request(...requestOf(key, { on: false, notAKey: 1 }));
    assert.equal(response.status, 400, key);
    assert.match((await response.json()).detail, /notAKey/, key);
  }
  const withJsonBodies = OPERATIONS.filter(({ operation }) =>
    operation.requestBody?.content["application/json"]?.schema.properties ||
    operation.requestBody?.content["application/json"]?.schema.oneOf
  ).map((op) => op.key);
  assert.deepEqual(withJsonBodies.sort(), Object.keys(bodies).sort());
});

Deno.test("docs/api.md has a section for every operation of the document, and no other", async () => {
  const text = await Deno.readTextFile(new URL("../../docs/api.md", import.meta.url));
  const headings = [...text.matchAll(/^### `(GET|POST|DELETE|PUT|PATCH) ([^`]+)`$/gm)].map((m) =>
    `${m[1]} ${m[2]}`
  );
  assert.deepEqual(headings.sort(), OPERATIONS.map((op) => op.key).sort());
});
