/**
 * An event line (SPEC section 6) as the `DecisionEvent` that `decide()` takes, for `explain`. Only the
 * fields a decision depends on are read; the rest of the line may be anything. Pure.
 */

import { z } from "zod";
import { InputError } from "../errors.ts";
import type { DecisionEvent, LearnedAddress } from "./decide.ts";
import { learnedFromEvent } from "./learned_table.ts";

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
  subject: z.string().optional(),
  hostName: z.string().optional(),
  host: z.string().optional(),
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
    exe: z.looseObject({ path: z.string().optional() }).optional(),
  }).optional(),
  // Untrusted execs (exec.default deny) carry the file's name, and a path only where a rule names one.
  file: z.looseObject({
    path: z.string().optional(),
    dev: z.int().min(0).optional(),
    ino: z.number().min(0).optional(),
  }).optional(),
  reason: z.string().optional(),
  net: z.looseObject({
    protocol: protocol.optional(),
    daddr: z.string().optional(),
    dport: z.int().min(0).max(65535).optional(),
    saddr: z.string().optional(),
    sport: z.int().min(0).max(65535).optional(),
    interface: z.string().optional(),
  }).optional(),
});

/** `learned`: the learned-address entry the line implies (learnedFromEvent), for a line decided by name. */
export type ExplainedEvent = {
  event: DecisionEvent;
  type: string;
  rule?: string;
  learned?: LearnedAddress[];
};

/**
 * The rule ids whose file or exec targets resolved to the inode (dev, ino) on this host, or undefined when
 * that is not known (an event of another `host`): how a file or exec event without a path (an untrusted
 * exec) is decided by inode.
 */
export type InodeRules = (
  dev: number,
  ino: number,
  host: string | undefined,
) => readonly number[] | undefined;

/**
 * Parses one event line; an InputError (exit 2) names what is missing for the event's type. A file or exec
 * event without a path is decided by its inode when `inodeRules` knows it.
 */
export function parseEventLine(text: string, where: string, inodeRules?: InodeRules): ExplainedEvent {
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
  const { type, rule, subject, op, process, file, net, reason, host, hostName } = parsed.data;
  const cgroup = process?.cgroup?.path;
  // The program: its path when the line has it, else the program the deciding rule named, which is the
  // task's own or an ancestor's (children: true): both are tried, as the kernel would.
  const exe = process?.exe?.path ?? subject;
  const program = exe === undefined ? {} : { exe, ...subject !== undefined && { ancestors: [subject] } };
  const scoped = cgroup === undefined ? { ...program } : { cgroup, ...program };
  const need = <T>(field: T | undefined, name: string): T => {
    if (field === undefined) throw new InputError(`${where}: a ${type} event needs ${name}`);
    return field;
  };
  /** The file by path, else by the rules its inode resolved to. */
  const target = (): { path: string } | { ruleIds: readonly number[] } => {
    const ruleIds = file?.path === undefined && file?.dev !== undefined && file.ino !== undefined
      ? inodeRules?.(file.dev, file.ino, host)
      : undefined;
    return ruleIds ? { ruleIds } : { path: need(file?.path, "file.path") };
  };
  const event = ((): DecisionEvent => {
    switch (type) {
      case "file.open":
        return { area: "file", ...target(), ...scoped };
      case "exec":
        // hash-mismatch: the kernel saw the file changed since apply, which its path alone does not say.
        return {
          area: "exec",
          ...target(),
          ...scoped,
          ...reason === "hash-mismatch" && { changed: true },
        };
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
  const learned = learnedFromEvent(hostName, net?.daddr);
  const explained: ExplainedEvent = rule === undefined ? { event, type } : { event, type, rule };
  if (learned.length > 0) explained.learned = learned;
  return explained;
}
