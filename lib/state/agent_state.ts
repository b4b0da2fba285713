/**
 * `<state-dir>/agent.json`: what a running agent (`run`) says of itself, for `health`, `status`, `doctor`,
 * `detach` and `events` to read without talking to it. Written atomically at start and after every apply,
 * reload and mode change; removed on a clean exit (a file whose pid is gone means the agent died). Read
 * leniently: the fields the operator commands show are checked, others are kept as they are.
 */

import { join } from "node:path";
import { z } from "zod";
import type { PolicyRef } from "../kernel/events.ts";
import type { Area } from "../policy/plan.ts";
import { removeIfPresent, writeFileAtomic } from "./files.ts";
import { agentLockPath, liveAgent } from "./agent_lock.ts";
import { PRIVATE_FILE_MODE } from "./access.ts";
import { statFields } from "../kernel/proc_stat.ts";

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
  /** The live policy's own mode, as it is recorded in history (`--enforce` makes the agent's own enforce). */
  policyMode: "enforce" | "audit";
  /** `"audit"` under `run --audit`: the floor the agent holds whatever anyone applies; else null. */
  floor: "audit" | null;
  areas: Record<Area, AreaMode>;
  /** Areas `--allow-partial` runs audit-only although the policy enforces, and why. */
  partial: { area: Area; reason: string }[];
  ingress: string[];
  deadmanMs: number | null;
  policy: PolicyRef;
  /** The bounded event log (`events.jsonl`, rotated to `events.jsonl.1`). */
  eventsLog: string;
  /**
   * File and exec rules whose path the last rule refresh could not resolve: they keep denying their last
   * inodes (`kept`) while the other rules are refreshed; `since` is when it started (RFC 3339).
   */
  unresolved: UnresolvedRuleState[];
};

export type UnresolvedRuleState = {
  rule: string;
  area: "file" | "exec";
  path: string;
  error: string;
  kept: number;
  since: string;
};

export function writeAgentState(stateDir: string, state: AgentState): void {
  writeFileAtomic(agentFile(stateDir), `${JSON.stringify(state, null, 2)}\n`, PRIVATE_FILE_MODE);
}

export function removeAgentState(stateDir: string): void {
  removeIfPresent(agentFile(stateDir));
}

const agentSchema = z.object({
  pid: z.int().min(1),
  startedAt: z.string(),
  mode: z.string().optional(),
  requestedMode: z.string().optional(),
  policyMode: z.string().optional(),
  floor: z.string().nullable().optional(),
  // "enforce", "audit-only" or "unused" by contract; any word is shown as it is rather than refused.
  areas: z.record(z.string(), z.string()).optional(),
  /** Areas forced audit-only by --allow-partial: names, or objects with the area and why. */
  partial: z.array(z.union([z.string(), z.looseObject({ area: z.string(), reason: z.string().optional() })]))
    .optional(),
  ingress: z.array(z.string()).optional(),
  deadmanMs: z.number().nullable().optional(),
  policy: z.looseObject({ name: z.string(), version: z.number(), sha256: z.string() }).nullable().optional(),
  eventsLog: z.string().optional(),
  unresolved: z.array(z.looseObject({
    rule: z.string(),
    area: z.string(),
    path: z.string(),
    error: z.string(),
    kept: z.number().optional(),
    since: z.string().optional(),
  })).optional(),
});
export type AgentRecord = z.infer<typeof agentSchema>;

export type AgentStatus =
  | { state: "absent" }
  | { state: "running"; record: AgentRecord }
  | { state: "died"; record: AgentRecord; why: string }
  | { state: "unreadable"; why: string };

export function agentFile(stateDir: string): string {
  return join(stateDir, "agent.json");
}

export function readAgentState(stateDir: string): AgentStatus {
  const path = agentFile(stateDir);
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return { state: "absent" };
    return { state: "unreadable", why: `${path}: ${(error as Error).message}` };
  }
  let parsed;
  try {
    parsed = agentSchema.safeParse(JSON.parse(text));
  } catch (error) {
    return { state: "unreadable", why: `${path}: not JSON (${(error as Error).message})` };
  }
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { state: "unreadable", why: `${path}: ${issue?.path.join(".") || "record"}: ${issue?.message}` };
  }
  const record = parsed.data;
  const gone = lockGone(stateDir, record.pid) ?? processGone(record.pid, Date.parse(record.startedAt));
  return gone === undefined ? { state: "running", record } : { state: "died", record, why: gone };
}

/**
 * Why the agent lock says the record's agent is gone, or undefined when it holds the lock (or the lock
 * cannot be read here: not root; then the process check decides).
 */
function lockGone(stateDir: string, pid: number): string | undefined {
  let live;
  try {
    live = liveAgent(stateDir);
  } catch (error) {
    if (error instanceof Deno.errors.PermissionDenied) return undefined;
    throw error;
  }
  if (live === undefined) return `no process holds the agent lock ${agentLockPath(stateDir)}`;
  if (live.pid !== undefined && live.pid !== pid) {
    return `the agent lock is held by pid ${live.pid}, not ${pid}`;
  }
  return undefined;
}

/** Partial areas as `area (reason)` strings. */
export function partialAreas(record: AgentRecord): { area: string; reason?: string }[] {
  return (record.partial ?? []).map((entry) =>
    typeof entry === "string"
      ? { area: entry }
      : entry.reason === undefined
      ? { area: entry.area }
      : { area: entry.area, reason: entry.reason }
  );
}

/** USER_HZ: the unit of /proc/PID/stat's start time, 100 on every Linux architecture aegisbpf runs on. */
const CLOCK_TICKS = 100;

/**
 * Why process `pid` is not the agent that wrote the record, or undefined when it is: gone, a zombie, or a
 * process that started after the record said the agent did (the pid was reused).
 */
export function processGone(pid: number, startedAtMs: number): string | undefined {
  let stat: string;
  try {
    stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return `pid ${pid} is not running`;
    // /proc mounted with hidepid: the process exists but cannot be inspected; take the record's word.
    if (error instanceof Deno.errors.PermissionDenied) return undefined;
    throw error;
  }
  const fields = statFields(stat);
  if (fields[0] === "Z" || fields[0] === "X") return `pid ${pid} has exited (a zombie)`;
  const startTicks = Number(fields[19]);
  const bootTime = /^btime (\d+)$/m.exec(Deno.readTextFileSync("/proc/stat"))?.[1];
  if (Number.isFinite(startTicks) && bootTime !== undefined && Number.isFinite(startedAtMs)) {
    const startedMs = (Number(bootTime) + startTicks / CLOCK_TICKS) * 1000;
    // btime is whole seconds: allow for it, and for a record written a little after the process began.
    if (startedMs > startedAtMs + 2000) return `pid ${pid} is another process now (started later)`;
  }
  return undefined;
}
