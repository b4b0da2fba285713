/**
 * The local API of SPEC section 8, as a hono app over the agent's operations. The app only validates,
 * dispatches and shapes answers: what each endpoint does is the agent's (`ApiDeps`), so the app is tested
 * with `app.request()` and no socket. Errors are RFC 9457 `application/problem+json`; bodies are validated
 * with zod and size-limited; on a read-only listener (TCP) only the read endpoints exist.
 */

import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { streamSSE } from "hono/streaming";
import type { z } from "zod";
import { InputError, RefusedError } from "../errors.ts";
import { escapeJson, jsonText } from "../text/printable.ts";
import { MAX_INPUT_BYTES } from "../ops/apply_source.ts";
import { breakGlassSchema, exceptionSchema, rollbackSchema, sessionSchema } from "./bodies.ts";
import type { ExceptionRequest, ExceptionView } from "../ops/exceptions.ts";
import { OPENAPI_PATH, openApiDocument } from "./openapi.ts";
import type { EventHub } from "./event_hub.ts";
import { problem } from "./problem.ts";

/** What the API asks of the agent. Every operation throws InputError (400), RefusedError (409), or fails. */
export type ApiDeps = {
  /** Liveness and readiness: `ready` as `health` judges it, with its report. */
  health(): Promise<{ ready: boolean; report: unknown }>;
  /** The Prometheus exposition text. */
  metrics(): string;
  status(): unknown;
  events: EventHub;
  /** Applies a bundle (JSON DSSE envelope) or policy text, as `policy apply` does. */
  applyPolicy(body: { text: string; source: string }): Promise<unknown>;
  rollback(request: { to?: string }): Promise<unknown>;
  breakGlass(request: { on: true; reason: string; ttlMs?: number } | { on: false }): Promise<unknown>;
  sessions: {
    add(
      request: { cidr: string; ports: number[]; ttlMs: number; interface?: string },
    ): Promise<IngressSession>;
    remove(id: string): Promise<boolean>;
  };
  /** Expiring exceptions, as `aegisbpf exception add|list|remove` handle them. */
  exceptions: {
    add(request: ExceptionRequest): Promise<ExceptionView>;
    list(): ExceptionView[];
    remove(id: number): Promise<boolean>;
  };
};

export type IngressSession = { id: string; expiresAt: string; interfaces: string[] };

export type AppOptions = { readOnly: boolean };

/** The largest JSON body of the small endpoints. */
const SMALL_BODY_BYTES = 64 * 1024;

/** Reads and validates a JSON body; a problem response when it is not what `schema` wants. */
async function jsonBody<S extends z.ZodType>(request: Request, schema: S): Promise<z.output<S> | Response> {
  let value: unknown;
  try {
    const text = await request.text();
    value = text.trim() === "" ? {} : JSON.parse(text);
  } catch (error) {
    return problem(400, "Bad request body", `The body is not JSON: ${(error as Error).message}`);
  }
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.map((issue) => ({
    path: issue.path.join(".") || "(body)",
    message: issue.message,
  }));
  return problem(
    400,
    "Invalid request body",
    issues.map((issue) => `${issue.path}: ${issue.message}`).join("; "),
    { issues },
  );
}

export function createApp(deps: ApiDeps, options: AppOptions): Hono {
  const app = new Hono();

  app.onError((error) => {
    if (error instanceof InputError) return problem(400, "Invalid input", error.message);
    if (error instanceof RefusedError) return problem(409, "Refused for safety", error.message);
    return problem(500, "Agent error", error instanceof Error ? error.message : String(error));
  });
  app.notFound((c) => problem(404, "Not found", `No endpoint ${c.req.method} ${c.req.path}`));
  // Every JSON answer escaped as the CLI's JSON is (lib/text/printable.ts): a comm, path or policy name
  // with DEL, C1 or bidi characters reaches a client's terminal escaped, whatever prints it.
  app.use(async (c, next) => {
    await next();
    if (!/json/.test(c.res.headers.get("content-type") ?? "")) return;
    const { status, headers } = c.res;
    const body = escapeJson(await c.res.text());
    c.res = undefined;
    c.res = new Response(body, { status, headers });
  });

  app.get("/health/live", (c) => c.json({ live: true }));
  app.get("/health/ready", async (c) => {
    const { ready, report } = await deps.health();
    return c.json({ ready, health: report }, ready ? 200 : 503);
  });
  app.get(
    "/metrics",
    (c) => c.body(deps.metrics(), 200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" }),
  );

  // What this API is (lib/api/openapi.ts) reveals nothing the caller could not read in the docs.
  app.get(OPENAPI_PATH, (c) => c.json(openApiDocument()));

  if (options.readOnly) {
    // Everything else is the admin API, on the Unix socket only.
    app.all(
      "*",
      (c) =>
        problem(
          403,
          "Not on this listener",
          `${c.req.method} ${c.req.path} is served on the Unix socket only`,
        ),
    );
    return app;
  }

  app.get("/v1/status", (c) => c.json(deps.status() as object));

  app.get("/v1/events", (c) => {
    const header = c.req.header("last-event-id") ?? c.req.query("lastEventId");
    const lastEventId = header !== undefined && /^\d{1,15}$/.test(header) ? Number(header) : undefined;
    const subscription = deps.events.subscribe(lastEventId);
    return streamSSE(c, async (stream) => {
      stream.onAbort(() => subscription.close());
      if (subscription.missed > 0) {
        await stream.writeSSE({
          event: "events.dropped",
          data: jsonText({
            type: "events.dropped",
            count: subscription.missed,
            reason: "not retained",
          }),
        });
      }
      try {
        for await (const event of subscription) {
          await stream.writeSSE({ id: String(event.id), data: event.data });
        }
      } catch (error) {
        await stream.writeSSE({
          event: "events.dropped",
          data: jsonText({ type: "events.dropped", reason: (error as Error).message }),
        });
      }
    });
  });

  app.post(
    "/v1/policy",
    bodyLimit({
      maxSize: MAX_INPUT_BYTES,
      onError: () => problem(413, "Body too large", `A policy or bundle is at most ${MAX_INPUT_BYTES} bytes`),
    }),
    async (c) => {
      const text = await c.req.text();
      if (text.trim() === "") {
        return problem(400, "Invalid request body", "The body is empty: send a bundle or a policy");
      }
      return c.json(await deps.applyPolicy({ text, source: "api" }) as object);
    },
  );

  const small = bodyLimit({
    maxSize: SMALL_BODY_BYTES,
    onError: () => problem(413, "Body too large", `This endpoint takes at most ${SMALL_BODY_BYTES} bytes`),
  });

  app.post("/v1/policy/rollback", small, async (c) => {
    const body = await jsonBody(c.req.raw, rollbackSchema);
    if (body instanceof Response) return body;
    return c.json(await deps.rollback(body.to === undefined ? {} : { to: body.to }) as object);
  });

  app.post("/v1/break-glass", small, async (c) => {
    const body = await jsonBody(c.req.raw, breakGlassSchema);
    if (body instanceof Response) return body;
    const request = body.on
      ? { on: true as const, reason: body.reason, ...(body.ttl === undefined ? {} : { ttlMs: body.ttl }) }
      : { on: false as const };
    return c.json(await deps.breakGlass(request) as object);
  });

  app.post("/v1/ingress/sessions", small, async (c) => {
    const body = await jsonBody(c.req.raw, sessionSchema);
    if (body instanceof Response) return body;
    const session = await deps.sessions.add({
      cidr: body.cidr,
      ports: body.ports ?? [],
      ttlMs: body.ttl,
      ...(body.interface === undefined ? {} : { interface: body.interface }),
    });
    return c.json(session, 201, { location: `/v1/ingress/sessions/${session.id}` });
  });

  app.delete("/v1/ingress/sessions/:id", async (c) => {
    const id = c.req.param("id");
    if (!/^[0-9a-z-]{1,64}$/.test(id)) return problem(400, "Invalid session id", `${id} is not a session id`);
    return (await deps.sessions.remove(id))
      ? c.body(null, 204)
      : problem(404, "No such session", `No session ${id}`);
  });

  app.get("/v1/exceptions", (c) => c.json(deps.exceptions.list()));

  app.post("/v1/exceptions", small, async (c) => {
    const body = await jsonBody(c.req.raw, exceptionSchema);
    if (body instanceof Response) return body;
    const view = await deps.exceptions.add({
      allow: body.allow,
      ttl: body.ttl,
      reason: body.reason,
      ...(body.in === undefined ? {} : { in: body.in }),
      ...(body.ticket === undefined ? {} : { ticket: body.ticket }),
    });
    return c.json(view, 201, { location: `/v1/exceptions/${view.id}` });
  });

  app.delete("/v1/exceptions/:id", async (c) => {
    const id = c.req.param("id");
    if (!/^\d{1,5}$/.test(id)) return problem(400, "Invalid exception id", `${id} is not an exception id`);
    return (await deps.exceptions.remove(Number(id)))
      ? c.body(null, 204)
      : problem(404, "No such exception", `No exception ${id}`);
  });

  return app;
}
