/**
 * Events of the agent itself (SPEC section 6: `agent.start`, `agent.stop`, `policy.applied`,
 * `break_glass.on|off`, `deadman.expired`, `events.dropped`, ...) in the envelope kernel events use. Their
 * readable line, like a kernel event's, is `eventLine` (event_text.ts).
 */

import { type AegisEvent, type PolicyRef, rfc3339Nanos } from "../kernel/events.ts";

/** Every type of agent event (event_ocsf_test.ts maps each; docs/events.md explains each). */
export const AGENT_EVENT_TYPES = [
  "agent.start",
  "agent.stop",
  "policy.applied",
  "policy.rolled_back",
  "policy.refreshed",
  "policy.reload_failed",
  "policy.check_failed",
  "rule.unresolved",
  "break_glass.on",
  "break_glass.off",
  "deadman.expired",
  "events.dropped",
  "tamper.detected",
  "agent.error",
] as const;
export type AgentEventType = typeof AGENT_EVENT_TYPES[number];

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
