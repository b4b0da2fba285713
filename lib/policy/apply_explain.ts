/**
 * An event line (SPEC section 6) as the `DecisionEvent` that `decide()` takes, for `explain`. Only the
 * fields a decision depends on are read; the rest of the line may be anything. Pure.
 */

import { z } from "zod";
import { InputError } from "../errors.ts";
import type { DecisionEvent } from "./decide.ts";

const protocol = z.union([
  z.enum(["tcp", "udp", "udplite", "sctp", "dccp", "icmp", "icmpv6"]),
  z.literal("raw").transform(() => 255),
  z.int().min(0).max(255),
]);

const eventSchema = z.looseObject({
  type: z.enum([
    "file.open",
    "exec",
    "net.connect",
    "net.sendmsg",
    "net.packet",
    "net.bind",
    "net.ingress",
    "net.forward",
    "file.write",
  ]),
  rule: z.string().optional(),
  op: z.enum([
    "open-write",
    "truncate",
    "unlink",
    "rename",
    "link",
    "setattr",
    "setxattr",
    "removexattr",
    "create",
    "mount",
  ])
    .optional(),
  process: z.looseObject({
    uid: z.int().min(0).optional(),
    gid: z.int().min(0).optional(),
    cgroup: z.looseObject({ path: z.string().optional() }).optional(),
  }).optional(),
  file: z.looseObject({ path: z.string() }).optional(),
  net: z.looseObject({
    protocol: protocol.optional(),
    daddr: z.string().optional(),
    dport: z.int().min(0).max(65535).optional(),
    saddr: z.string().optional(),
    sport: z.int().min(0).max(65535).optional(),
    interface: z.string().optional(),
  }).optional(),
});

export type ExplainedEvent = { event: DecisionEvent; type: string; rule?: string };

/** Parses one event line; an InputError (exit 2) names what is missing for the event's type. */
export function parseEventLine(text: string, where: string): ExplainedEvent {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new InputError(`${where}: not a JSON event line: ${(error as Error).message}`, { cause: error });
  }
  const parsed = eventSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new InputError(`${where}: ${issue?.path.join(".") || "event"}: ${issue?.message ?? "invalid"}`);
  }
  const { type, rule, op, process, file, net } = parsed.data;
  const cgroup = process?.cgroup?.path;
  const scoped = cgroup === undefined ? {} : { cgroup };
  const need = <T>(field: T | undefined, name: string): T => {
    if (field === undefined) throw new InputError(`${where}: a ${type} event needs ${name}`);
    return field;
  };
  const event = ((): DecisionEvent => {
    switch (type) {
      case "file.open":
      case "exec":
        return { area: type === "exec" ? "exec" : "file", path: need(file?.path, "file.path"), ...scoped };
      case "file.write":
        return { area: "write", op: need(op, "op"), path: need(file?.path, "file.path"), ...scoped };
      case "net.connect":
      case "net.sendmsg":
      case "net.packet":
        return {
          area: "egress",
          addr: need(net?.daddr, "net.daddr"),
          protocol: need(net?.protocol, "net.protocol"),
          ...(net?.dport === undefined ? {} : { port: net.dport }),
          ...(process?.uid === undefined ? {} : { uid: process.uid }),
          ...(process?.gid === undefined ? {} : { gid: process.gid }),
          ...scoped,
        };
      case "net.bind":
        return {
          area: "bind",
          port: need(net?.sport ?? net?.dport, "net.sport"),
          protocol: need(net?.protocol, "net.protocol"),
          ...scoped,
        };
      case "net.ingress":
        return {
          area: "ingress",
          interface: need(net?.interface, "net.interface"),
          addr: need(net?.saddr, "net.saddr"),
          protocol: need(net?.protocol, "net.protocol"),
          ...(net?.dport === undefined ? {} : { port: net.dport }),
        };
      case "net.forward":
        return {
          area: "forward",
          addr: need(net?.daddr, "net.daddr"),
          protocol: need(net?.protocol, "net.protocol"),
          ...(net?.dport === undefined ? {} : { port: net.dport }),
        };
    }
  })();
  return rule === undefined ? { event, type } : { event, type, rule };
}
