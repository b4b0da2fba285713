/**
 * The JSON bodies the local API takes, as zod schemas: the handlers validate with them (app.ts) and the
 * OpenAPI document describes them (openapi.ts), so the two cannot disagree.
 */

import { z } from "zod";
import { parseDuration } from "../text/duration.ts";
import { parseCidr } from "../policy/cidr.ts";

/** A session lasts at most a day: a longer opening is a rule, and belongs in the policy. */
export const MAX_SESSION_TTL_MS = 24 * 60 * 60 * 1000;

const duration = (field: string, max?: number) =>
  z.string().transform((text, ctx) => {
    try {
      const ms = parseDuration(text, field);
      if (ms <= 0 || (max !== undefined && ms > max)) {
        ctx.addIssue({
          code: "custom",
          message: `${field} must be above 0 and at most ${max! / 3_600_000}h`,
        });
        return z.NEVER;
      }
      return ms;
    } catch (error) {
      ctx.addIssue({ code: "custom", message: (error as Error).message });
      return z.NEVER;
    }
  });

/** `POST /v1/policy/rollback`: the entry to go back to (SEQ or 8+ hex digits of its sha256), else the one before. */
export const rollbackSchema = z.strictObject({
  to: z.string().min(1).max(64).describe("a history entry: its SEQ, or 8 or more hex digits of its sha256")
    .optional(),
});

/** `POST /v1/break-glass`: on with a reason and an optional TTL, or off. */
export const breakGlassSchema = z.discriminatedUnion("on", [
  z.strictObject({
    on: z.literal(true),
    reason: z.string().trim().min(1).max(500).describe("why, for the event and the audit trail"),
    ttl: duration("ttl").describe("ends by itself after this long: 30s, 10m, 2h, 1h30m").optional(),
  }),
  z.strictObject({ on: z.literal(false) }),
]);

/** `POST /v1/ingress/sessions`: let `cidr` through a `default: drop` interface until `ttl` ends. */
export const sessionSchema = z.strictObject({
  cidr: z.string().refine((text) => {
    try {
      parseCidr(text);
      return true;
    } catch {
      return false;
    }
  }, "not a CIDR (a.b.c.d/n or an IPv6 prefix)").describe("the source let in: 203.0.113.7/32, 2001:db8::/64"),
  ports: z.array(z.int().min(1).max(65535)).max(64).describe("local ports; every port when absent or empty")
    .optional(),
  ttl: duration("ttl", MAX_SESSION_TTL_MS).describe("how long, at most 24h: 15m, 2h"),
  interface: z.string().min(1).max(15).describe("one interface; every default-drop interface when absent")
    .optional(),
});

/** `POST /v1/exceptions`: what `aegisbpf exception add` takes; the values are checked as the command checks them. */
export const exceptionSchema = z.strictObject({
  allow: z.string().min(1).max(4096).describe("exec:PATH, file:PATH or egress:CIDR[:PORT]"),
  in: z.string().min(1).max(4096).describe("only for tasks in this cgroup (below the v2 root) and below")
    .optional(),
  ttl: z.string().min(1).max(64).describe("how long: 30s, 2h, 1d; at most 7d unless exceptionMaxTtl says"),
  reason: z.string().max(4096).describe("why, for the record (200 characters at most)"),
  ticket: z.string().max(4096).describe("the change or incident ticket").optional(),
});
