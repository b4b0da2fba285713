/**
 * Kill on deny, the agent's half (`run --enforce-signal term|kill`). The BPF-LSM hooks (file, exec, the file
 * guard, the scope guard) signal the task themselves with bpf_send_signal and say so in the record; the
 * cgroup socket hooks cannot (the helper is not available to their program type), so the agent signals those
 * tasks as it reads their deny events. `decideSignal` is the pure decision, `signalDeniedTask` acts on it.
 */
import {
  closeFd,
  DECISION,
  EVENT,
  HOOK,
  pidfdOpen,
  pidfdSendSignal,
  type RawEvent,
  SIGNAL,
  SysError,
} from "../../ffi/mod.ts";
import type { SignalName } from "../kernel/events.ts";
import type { EnforceSignal } from "../kernel/mode_words.ts";
import { statFields } from "../kernel/proc_stat.ts";

/** What is known of the task an event names, read after a pidfd pinned it. */
export type TaskFacts = {
  /** Its cgroup v2 path (from /proc/PID/cgroup), e.g. /system.slice/sshd.service. */
  cgroupPath: string;
  /** CLOCK_BOOTTIME ns when it started (from /proc/PID/stat). */
  startBootNs: bigint;
};

export type SignalDecision = { send: SignalName; signal: number } | { skip: string };

const SIGNAL_OF: Readonly<Record<Exclude<EnforceSignal, "none">, { name: SignalName; number: number }>> = {
  term: { name: "SIGTERM", number: SIGNAL.TERM },
  kill: { name: "SIGKILL", number: SIGNAL.KILL },
};

/** A tick of /proc/PID/stat's start time (USER_HZ 100): a task started within it may predate the event. */
const START_TICK_NS = 10_000_000n;

/**
 * Whether the agent signals the task of `event`: only a deny (enforce) that names a task and that the kernel
 * did not signal already; never PID 1, never a task now in an exempt cgroup (`exempt`: cgroup v2 paths), and
 * never a task that started after the event (its pid was reused) or is gone (`task` undefined).
 */
export function decideSignal(
  event: RawEvent,
  configured: EnforceSignal,
  exempt: readonly string[],
  task: TaskFacts | undefined,
): SignalDecision {
  if (configured === "none") return { skip: "no enforce signal configured" };
  if (event.decision !== DECISION.DENY) return { skip: "not a denial" };
  if (event.signal !== 0) return { skip: "the kernel signalled the task" };
  if ((event.flags & EVENT.SUMMARY) !== 0) {
    return { skip: "a summary: its task was signalled at its first event" };
  }
  if (event.hook === HOOK.INGRESS || event.pid === 0) return { skip: "no task" };
  if (event.pid === 1) return { skip: "PID 1 is never signalled" };
  if (task === undefined) return { skip: "the task has exited" };
  if (task.startBootNs > event.tsBootNs + START_TICK_NS) return { skip: "the pid now names another task" };
  if (exempt.some((path) => inSubtree(task.cgroupPath, path))) {
    return { skip: "the task is in an exempt cgroup" };
  }
  const { name, number } = SIGNAL_OF[configured];
  return { send: name, signal: number };
}

function inSubtree(path: string, root: string): boolean {
  const normal = (text: string) => `/${text.replace(/^\/+|\/+$/g, "")}`;
  const child = normal(path), parent = normal(root);
  return parent === "/" || child === parent || child.startsWith(`${parent}/`);
}

/** The cgroup v2 path and start time of `pid`, from /proc; undefined when it is gone. */
export function readTaskFacts(pid: number, proc = "/proc"): TaskFacts | undefined {
  let cgroup: string, stat: string;
  try {
    cgroup = Deno.readTextFileSync(`${proc}/${pid}/cgroup`);
    stat = Deno.readTextFileSync(`${proc}/${pid}/stat`);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  const unified = cgroup.split("\n").find((line) => line.startsWith("0::"));
  const fields = statFields(stat);
  const ticks = fields[19];
  if (unified === undefined || ticks === undefined || !/^\d+$/.test(ticks)) {
    throw new Error(`Cannot read the cgroup and start time of pid ${pid} from ${proc}`);
  }
  return { cgroupPath: unified.slice(3), startBootNs: BigInt(ticks) * START_TICK_NS };
}

/**
 * Decides for a decoded deny event and, when it says so, signals its task through a pidfd opened before
 * the facts are read (so a pid reused after that cannot be hit). Returns the decision carried out.
 */
export function signalDeniedTask(
  event: RawEvent,
  configured: EnforceSignal,
  exempt: readonly string[],
  readFacts: (pid: number) => TaskFacts | undefined = readTaskFacts,
): SignalDecision {
  const early = decideSignal(event, configured, exempt, { cgroupPath: "", startBootNs: 0n });
  if ("skip" in early) return early;
  let pidfd: number;
  try {
    pidfd = pidfdOpen(event.pid);
  } catch (error) {
    if (exited(error)) return { skip: "the task has exited" };
    throw error;
  }
  try {
    const decision = decideSignal(event, configured, exempt, readFacts(event.pid));
    if ("send" in decision) {
      try {
        pidfdSendSignal(pidfd, decision.signal);
      } catch (error) {
        if (exited(error)) return { skip: "the task has exited" };
        throw error;
      }
    }
    return decision;
  } finally {
    closeFd(pidfd);
  }
}

function exited(error: unknown): boolean {
  return error instanceof SysError && error.errnoName === "ESRCH";
}
