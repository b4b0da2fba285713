/**
 * Events of the agent itself (SPEC section 6: `agent.start`, `agent.stop`, `policy.applied`,
 * `break_glass.on|off`, `deadman.expired`, `events.dropped`, ...) in the envelope kernel events use, and
 * the one readable line (`--log-format text`) of either kind.
 */

import { type AegisEvent, EVENT_TYPES, type PolicyRef, rfc3339Nanos } from "../kernel/events.ts";

export type AgentEventType =
  | "agent.start"
  | "agent.stop"
  | "policy.applied"
  | "policy.rolled_back"
  | "policy.refreshed"
  | "policy.reload_failed"
  | "break_glass.on"
  | "break_glass.off"
  | "deadman.expired"
  | "events.dropped"
  | "agent.error";

/** An agent event: the envelope (ts, host, type, mode, policy) and what the type says, flat. */
export type AgentEvent = {
  ts: string;
  host: string;
  type: AgentEventType;
  mode: "enforce" | "audit";
  policy?: PolicyRef;
  [field: string]: unknown;
};

export type AnyEvent = AegisEvent | AgentEvent;

/** RFC 3339 with nanoseconds of the wall clock now. */
export function nowRfc3339(): string {
  return rfc3339Nanos(BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6)));
}

export function agentEvent(
  envelope: { host: string; mode: "enforce" | "audit"; policy: PolicyRef | undefined },
  type: AgentEventType,
  fields: Record<string, unknown> = {},
): AgentEvent {
  const event: AgentEvent = { ts: nowRfc3339(), host: envelope.host, type, mode: envelope.mode };
  if (envelope.policy) event.policy = envelope.policy;
  return Object.assign(event, fields);
}

const KERNEL_TYPES: ReadonlySet<string> = new Set(EVENT_TYPES);

export function isKernelEvent(event: AnyEvent): event is AegisEvent {
  return KERNEL_TYPES.has(event.type);
}

/**
 * One line a person reads: time, what, then `key=value` pairs; values with spaces are JSON-quoted so a
 * line stays one line.
 * `2026-11-23T10:00:00.123456789Z net.connect deny enforce rule=imds pid=42 comm=curl ... count=1`
 */
export function eventText(event: AnyEvent): string {
  const pairs: [string, unknown][] = [];
  if (isKernelEvent(event)) {
    const { process, file, net } = event;
    const head = `${event.ts} ${event.type} ${event.decision} ${event.mode} rule=${event.rule}`;
    if (process) {
      pairs.push(["pid", process.pid]);
      if ("comm" in process) {
        pairs.push(["ppid", process.ppid], ["uid", process.uid], ["gid", process.gid], [
          "comm",
          process.comm,
        ]);
        pairs.push(["cgroup", process.cgroup.path ?? process.cgroup.id]);
      }
    }
    if (file) pairs.push(["path", file.path], ["dev", file.dev], ["ino", file.ino]);
    if (net) {
      pairs.push(["proto", net.protocol]);
      if (net.saddr !== undefined) pairs.push(["src", `${hostPort(net.saddr, net.family)}:${net.sport}`]);
      if (net.daddr !== undefined) pairs.push(["dst", `${hostPort(net.daddr, net.family)}:${net.dport}`]);
      pairs.push(["iface", net.interface]);
    }
    pairs.push(["count", event.count], ["summary", event.summary], ["unresolved", event.unresolved]);
    pairs.push(["policy", policyText(event.policy)]);
    return head + pairText(pairs);
  }
  const { ts, host: _host, type, mode, policy, ...rest } = event;
  for (const [key, value] of Object.entries(rest)) pairs.push([key, value]);
  pairs.push(["policy", policyText(policy)]);
  return `${ts} ${type} ${mode}${pairText(pairs)}`;
}

function hostPort(address: string, family: string): string {
  return family === "ipv6" ? `[${address}]` : address;
}

function policyText(policy: PolicyRef | undefined): string | undefined {
  return policy && `${policy.name}@${policy.version}`;
}

function pairText(pairs: [string, unknown][]): string {
  return pairs.filter(([, value]) => value !== undefined && value !== null)
    .map(([key, value]) => ` ${key}=${valueText(value)}`).join("");
}

function valueText(value: unknown): string {
  if (typeof value === "string" && /^[^\s"=]+$/.test(value)) return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return JSON.stringify(value) ?? String(value);
}
