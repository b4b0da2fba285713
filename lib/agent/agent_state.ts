/**
 * `<state-dir>/agent.json`: what a running agent is doing, for `health`, `status`, `doctor`, `detach` and
 * `events` to read without talking to it. Written atomically at start and after every apply, reload and
 * mode change; removed on a clean exit (a file whose pid is gone means the agent died).
 */

import { join } from "node:path";
import type { Area } from "../policy/plan.ts";
import { removeIfPresent, writeFileAtomic } from "../policy/state.ts";
import type { PolicyRef } from "../kernel/events.ts";

/** How the kernel serves an area now: enforcing, auditing only, or not used by the policy. */
export type AreaMode = "enforce" | "audit-only" | "unused";

export type AgentState = {
  pid: number;
  /** RFC 3339. */
  startedAt: string;
  /** The mode the hooks decide in now: audit under break-glass, an expired deadman or `--audit`. */
  mode: "enforce" | "audit";
  /** What the operator asked for: `--audit`, `--enforce`, or the policy's own mode. */
  requestedMode: "enforce" | "audit";
  areas: Record<Area, AreaMode>;
  /** Areas `--allow-partial` runs audit-only although the policy enforces, and why. */
  partial: { area: Area; reason: string }[];
  ingress: string[];
  deadmanMs: number | null;
  policy: PolicyRef;
  /** The bounded event log (`events.jsonl`, rotated to `events.jsonl.1`). */
  eventsLog: string;
};

export function agentStatePath(stateDir: string): string {
  return join(stateDir, "agent.json");
}

export function writeAgentState(stateDir: string, state: AgentState): void {
  writeFileAtomic(agentStatePath(stateDir), `${JSON.stringify(state, null, 2)}\n`, 0o644);
}

export function removeAgentState(stateDir: string): void {
  removeIfPresent(agentStatePath(stateDir));
}
