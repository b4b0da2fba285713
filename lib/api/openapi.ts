/**
 * The local API described as an OpenAPI 3.1 document, served at `GET /v1/openapi.json`. Request bodies are
 * the JSON Schema of the zod schemas the handlers validate with (bodies.ts); `app_openapi_test.ts` checks
 * that every route the app registers is here with its method, and nothing else.
 */

import { z } from "zod";
import { VERSION } from "../version.ts";
import { breakGlassSchema, exceptionSchema, rollbackSchema, sessionSchema } from "./bodies.ts";

export const OPENAPI_PATH = "/v1/openapi.json";

/** Which listeners serve an operation: the Unix socket serves all, a TCP listener only the read-only ones. */
export const LISTENERS_KEY = "x-aegisbpf-listeners";

type Method = "get" | "post" | "delete";

type Json = Record<string, unknown>;

type Operation = {
  summary: string;
  description: string;
  /** Also served on the read-only TCP listeners. */
  readOnly?: boolean;
  body?: { schema: z.ZodType } | { text: string };
  parameters?: Json[];
  responses: Record<string, Json>;
};

const PROBLEM_SCHEMA = {
  type: "object",
  description: "An RFC 9457 problem: what went wrong, for a person (detail) and a program (status)",
  properties: {
    type: { type: "string", const: "about:blank" },
    title: { type: "string" },
    status: { type: "integer" },
    detail: { type: "string" },
    issues: {
      type: "array",
      description: "for an invalid body: each field that is wrong (path `(body)` for the whole body)",
      items: {
        type: "object",
        properties: { path: { type: "string" }, message: { type: "string" } },
        required: ["path", "message"],
      },
    },
  },
  required: ["type", "title", "status", "detail"],
};

const problem = (description: string) => ({
  description,
  content: { "application/problem+json": { schema: { $ref: "#/components/schemas/Problem" } } },
});

const json = (description: string, schema: Json = { type: "object" }) => ({
  description,
  content: { "application/json": { schema } },
});

const BAD_BODY = problem("the body is not JSON, or not what the schema allows (`issues` names each field)");
const TOO_LARGE = problem("the body is larger than the endpoint takes");
const REFUSED = problem("refused for safety: the detail says which check and why");

const OPERATIONS: Record<string, Partial<Record<Method, Operation>>> = {
  "/health/live": {
    get: {
      summary: "Liveness",
      description: "Answers as long as the agent's event loop runs.",
      readOnly: true,
      responses: {
        200: json("alive", {
          type: "object",
          properties: { live: { const: true } },
          required: ["live"],
        }),
      },
    },
  },
  "/health/ready": {
    get: {
      summary: "Readiness",
      description: "Ready when `aegisbpf health` would exit 0: pins present, programs attached, a policy " +
        "applied. `health` is that command's report.",
      readOnly: true,
      responses: {
        200: json("ready", readySchema(true)),
        503: json("not ready: `health` says why", readySchema(false)),
      },
    },
  },
  "/metrics": {
    get: {
      summary: "Prometheus metrics",
      description: "Every metric family in the Prometheus text format, as `aegisbpf metrics` prints it.",
      readOnly: true,
      responses: {
        200: {
          description: "the exposition",
          content: { "text/plain; version=0.0.4": { schema: { type: "string" } } },
        },
      },
    },
  },
  [OPENAPI_PATH]: {
    get: {
      summary: "This document",
      description: "The OpenAPI 3.1 description of this API.",
      readOnly: true,
      responses: { 200: json("the document") },
    },
  },
  "/v1/status": {
    get: {
      summary: "Status",
      description: "The health report with the connections the policy denies, as `aegisbpf health --json` " +
        "prints it (docs/schema/health.schema.json).",
      responses: { 200: json("the report") },
    },
  },
  "/v1/events": {
    get: {
      summary: "Event stream",
      description: "Server-Sent Events: each event's `data` is one event object (docs/events.md) and its " +
        "`id` a sequence number. Send `Last-Event-ID` (or `?lastEventId=`) to resume: the last 10,000 " +
        "events are kept, and a client back too late first gets an `events.dropped` event with the count it " +
        "missed. A client that does not read is cut off after 1,000 queued events.",
      parameters: [
        {
          name: "Last-Event-ID",
          in: "header",
          required: false,
          schema: { type: "string", pattern: "^\\d+$" },
        },
        { name: "lastEventId", in: "query", required: false, schema: { type: "string", pattern: "^\\d+$" } },
      ],
      responses: {
        200: { description: "the stream", content: { "text/event-stream": { schema: { type: "string" } } } },
      },
    },
  },
  "/v1/policy": {
    post: {
      summary: "Apply a policy",
      description: "The body is a signed bundle (its JSON) or a policy (YAML or JSON, docs/policy.md), at " +
        "most 16 MiB. It is applied as `aegisbpf policy apply` does: all or nothing, lock-out risks and " +
        "replayed bundles refused, unsigned policy refused where signatures are required.",
      body: { text: "a signed bundle, or policy YAML or JSON" },
      responses: {
        200: json(
          "applied: name, version, sha256, mode, rules per area, the history seq and outcome, generation",
        ),
        400: problem("an invalid policy or bundle: the detail names the line and column"),
        409: REFUSED,
        413: TOO_LARGE,
      },
    },
  },
  "/v1/policy/rollback": {
    post: {
      summary: "Roll back",
      description: "Re-applies an earlier policy from history, as `aegisbpf policy rollback` does: the one " +
        "before the current, or the entry `to` names. An empty body is `{}`.",
      body: { schema: rollbackSchema },
      responses: {
        200: json("rolled back: the same summary as an apply"),
        400: BAD_BODY,
        409: REFUSED,
        413: TOO_LARGE,
      },
    },
  },
  "/v1/break-glass": {
    post: {
      summary: "Break-glass on or off",
      description:
        "As `aegisbpf break-glass on|off`: writes the marker and flips the kernel word, so every " +
        "hook audits within a second; with `ttl` the kernel ends it by itself.",
      body: { schema: breakGlassSchema },
      responses: { 200: json("the new break-glass state"), 400: BAD_BODY, 413: TOO_LARGE },
    },
  },
  "/v1/ingress/sessions": {
    post: {
      summary: "Open an ingress session",
      description: "Lets `cidr` (to `ports`, or every port) through the ingress interfaces whose policy " +
        "default is drop, until `ttl` ends (at most 24h). The kernel stops honouring it at the end with or " +
        "without the agent.",
      body: { schema: sessionSchema },
      responses: {
        201: {
          ...json("opened; `Location` is the session's URL", {
            type: "object",
            properties: {
              id: { type: "string" },
              expiresAt: { type: "string", format: "date-time" },
              interfaces: { type: "array", items: { type: "string" } },
            },
            required: ["id", "expiresAt", "interfaces"],
          }),
          headers: { Location: { schema: { type: "string" } } },
        },
        400: BAD_BODY,
        409: REFUSED,
        413: TOO_LARGE,
      },
    },
  },
  "/v1/ingress/sessions/{id}": {
    delete: {
      summary: "Close an ingress session",
      description: "Ends a session before its TTL.",
      parameters: [{
        name: "id",
        in: "path",
        required: true,
        schema: { type: "string", pattern: "^[0-9a-z-]{1,64}$" },
      }],
      responses: {
        204: { description: "closed" },
        400: problem("not a session id"),
        404: problem("no such session"),
      },
    },
  },
  "/v1/exceptions": {
    get: {
      summary: "List the expiring exceptions",
      description: "Every exception with its state: active, expired (decides nothing), gone (the kernel no " +
        "longer holds it) or unnamed (in the kernel with no record), as `aegisbpf exception list --json`.",
      responses: { 200: json("the exceptions", { type: "array", items: { type: "object" } }) },
    },
    post: {
      summary: "Add an expiring exception",
      description: "A temporary allow that beats the policy's deny for one match (exec:PATH, file:PATH, " +
        "egress:CIDR[:PORT]), as `aegisbpf exception add`: the kernel ends it at `ttl` with or without the " +
        "agent; every event it lets through names it. Recorded as a history note.",
      body: { schema: exceptionSchema },
      responses: {
        201: {
          ...json("added; `Location` is the exception's URL", { type: "object" }),
          headers: { Location: { schema: { type: "string" } } },
        },
        400: BAD_BODY,
        409: REFUSED,
        413: TOO_LARGE,
      },
    },
  },
  "/v1/exceptions/{id}": {
    delete: {
      summary: "Remove an expiring exception",
      description:
        "Ends the exception now: the policy's deny applies again at once. Recorded as a history note.",
      parameters: [{
        name: "id",
        in: "path",
        required: true,
        schema: { type: "string", pattern: "^\\d{1,5}$" },
      }],
      responses: {
        204: { description: "removed" },
        400: problem("not an exception id"),
        404: problem("no such exception"),
      },
    },
  },
};

function readySchema(ready: boolean): Json {
  return {
    type: "object",
    properties: { ready: { const: ready }, health: { type: "object" } },
    required: ["ready", "health"],
  };
}

function operation(op: Operation): Json {
  const body = op.body &&
    ("schema" in op.body
      ? { required: true, content: { "application/json": { schema: bodySchema(op.body.schema) } } }
      : {
        required: true,
        description: op.body.text,
        content: {
          "application/json": { schema: { type: "object" } },
          "application/yaml": { schema: { type: "string" } },
        },
      });
  return {
    summary: op.summary,
    description: op.description,
    ...(op.parameters ? { parameters: op.parameters } : {}),
    ...(body ? { requestBody: body } : {}),
    responses: {
      ...op.responses,
      403: problem(
        op.readOnly
          ? "the peer's uid may not use the Unix socket"
          : "the peer's uid may not use the Unix socket, or a TCP listener, which serves read-only endpoints",
      ),
      500: problem("the agent failed: the detail says what"),
    },
    [LISTENERS_KEY]: op.readOnly ? ["unix", "tcp"] : ["unix"],
  };
}

/** The JSON Schema of what a body may be, from the zod schema the handler validates it with. */
export function bodySchema(schema: z.ZodType): Json {
  const { $schema: _, ...rest } = z.toJSONSchema(schema, { io: "input", target: "draft-2020-12" });
  return rest;
}

/** The whole document; built once. */
export const openApiDocument: () => Json = (() => {
  let document: Json | undefined;
  return () =>
    document ??= {
      openapi: "3.1.0",
      info: {
        title: "aegisbpf local API",
        version: VERSION,
        description: "Served by `aegisbpf run` on the Unix socket /run/aegisbpf/api.sock (root and the " +
          "agent's uid only), and on loopback TCP listeners for the read-only endpoints. docs/api.md " +
          "explains each endpoint with examples.",
      },
      paths: Object.fromEntries(
        Object.entries(OPERATIONS).map((
          [path, methods],
        ) => [path, Object.fromEntries(Object.entries(methods).map(([m, op]) => [m, operation(op)]))]),
      ),
      components: { schemas: { Problem: PROBLEM_SCHEMA } },
    };
})();
