/**
 * Self-checking policies (`spec.checks`, lib/policy/checks.ts): after every change of the rules in force
 * made by `policy apply` (with or without --canary), `policy rollback`, the local API and the agent's start
 * and SIGHUP, the policy's probes run (lib/ops/probe_run.ts). A `mustWork` probe that does not work, or a
 * `mustDeny` probe that is not refused, puts the entry in force before back at once (one generation flip,
 * the way `policy rollback` does; with no policy before, an empty audit policy), marks the entry
 * `check-failed` with a note naming the probe, writes a `policy.check_failed` event, and the command fails
 * with exit 3 (SelfCheckFailedError) naming the probe.
 *
 * A policy without `spec.checks` runs no probes at all: nothing changes for it. One with `spec.checks` gets
 * two implicit `mustWork` probes unless `implicit: false`: a TCP connect to this host's own SSH port (the
 * first `Port` of /etc/ssh/sshd_config, else 22; skipped with a note when nothing listens there) and
 * `aegisbpf health`.
 *
 * A kill -9 between the flip and the end of the probes leaves `<state-dir>/self-check.json`
 * (lib/state/self_check_marker.ts). The next state-changing command (apply, rollback, the API, or the agent
 * on its next tick) finishes the check under the state lock (`resolvePendingCheck`): it runs the probes of
 * the policy in force, and rolls back when they fail. Until then `health` says a check is pending.
 */

import { hostname } from "node:os";
import { cgroup2Root } from "../kernel/cgroup.ts";
import { readModeWords } from "../kernel/mode_words.ts";
import { type ChecksSpec, describeProbe, type Expectation, type ProbeSpec } from "../policy/checks.ts";
import { killCgroup, type ProbePlace, type ProbeResult, probeTimeoutMs, runProbe } from "./probe_run.ts";
import { selfCommand } from "./helper_process.ts";
import { RefusedError } from "../errors.ts";
import { currentEntry, type HistoryEntry, listHistory, setOutcome } from "../state/history.ts";
import {
  clearSelfCheckMarker,
  readSelfCheckMarker,
  writeSelfCheckMarker,
} from "../state/self_check_marker.ts";
import { eventLogPath } from "../agent/event_log.ts";
import { agentEvent, type AgentEventType } from "../agent/agent_events.ts";
import { jsonText } from "../text/printable.ts";
import { PRIVATE_FILE_MODE } from "../state/access.ts";

export type CheckWhere = { bpffs: string; stateDir: string; configDir: string };

/** What the probes need of a policy: its checks, and its scope (where a probe's own cgroup is made). */
export type CheckedPolicy = {
  spec: {
    mode?: "audit" | "enforce";
    checks?: ChecksSpec | undefined;
    scope?: { cgroups?: string[] | undefined } | undefined;
  };
};

/** One probe to run: what it must get, the probe, how messages name it, and whether the policy wrote it. */
export type PlannedProbe = {
  expect: Expectation;
  probe: ProbeSpec;
  label: string;
  implicit: boolean;
  /** Environment the probe's program needs (the implicit health probe's runtime). */
  env?: Record<string, string>;
};

export type ProbeOutcome = PlannedProbe & ProbeResult & { passed: boolean };

/** The probes' answers; `notes` say what was skipped and why. */
export type CheckReport = { outcomes: ProbeOutcome[]; notes: string[]; failed: ProbeOutcome[] };

/** The implicit health probe may take a runtime's start-up on a loaded host. */
const HEALTH_TIMEOUT = "30s";

/** Whether `policy` carries checks (then its probes run after every change it makes to the rules in force). */
export function hasChecks(policy: CheckedPolicy): boolean {
  return policy.spec.checks !== undefined;
}

/** The probes of `policy`, the implicit ones first; `notes` say which implicit probe was skipped and why. */
export function plannedProbes(
  policy: CheckedPolicy,
  where: CheckWhere,
): { probes: PlannedProbe[]; notes: string[] } {
  const checks = policy.spec.checks;
  if (!checks) return { probes: [], notes: [] };
  const probes: PlannedProbe[] = [];
  const notes: string[] = [];
  if (checks.implicit !== false) {
    const ssh = sshTarget();
    if (typeof ssh === "string") notes.push(`implicit SSH probe skipped: ${ssh}`);
    else probes.push(planned("mustWork", { connect: ssh.connect }, true));
    const [command, ...prefix] = selfCommand();
    const health = planned("mustWork", {
      exec: command!,
      args: [
        ...prefix,
        "--bpffs",
        where.bpffs,
        "--state-dir",
        where.stateDir,
        "--config-dir",
        where.configDir,
        "health",
      ],
      timeout: HEALTH_TIMEOUT,
    }, true);
    health.label = "mustWork aegisbpf health";
    health.env = runtimeEnv();
    probes.push(health);
  }
  for (const probe of checks.mustWork ?? []) probes.push(planned("mustWork", probe, false));
  const audit = auditReason(policy, where.bpffs);
  if (audit && (checks.mustDeny?.length ?? 0) > 0) {
    notes.push(`${checks.mustDeny!.length} mustDeny probes skipped: ${audit}, nothing is denied`);
  } else {
    for (const probe of checks.mustDeny ?? []) probes.push(planned("mustDeny", probe, false));
  }
  return { probes, notes };
}

/** Why the hooks audit rather than deny now: the policy's mode, or the kernel's forced-audit or break-glass word. */
function auditReason(policy: CheckedPolicy, bpffs: string): string | undefined {
  if (policy.spec.mode === "audit") return "the policy's mode is audit";
  let words;
  try {
    words = readModeWords(bpffs);
  } catch {
    return undefined;
  }
  if (words?.breakGlass.on) return "break-glass is on";
  if (words?.forceAudit) return "the kernel forces audit (run --audit, or a detach that did not finish)";
  return undefined;
}

function planned(expect: Expectation, probe: ProbeSpec, implicit: boolean): PlannedProbe {
  return { expect, probe, label: describeProbe(expect, probe), implicit };
}

/** What the runtime of `aegisbpf health` needs from this process's environment (a `deno run`'s cache). */
function runtimeEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of ["HOME", "DENO_DIR", "XDG_CACHE_HOME", "NO_COLOR"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/**
 * Where the implicit SSH probe connects: the first `Port` of /etc/ssh/sshd_config (else 22) on loopback,
 * IPv4 when something listens there on IPv4, else IPv6; or why it is skipped.
 */
export function sshTarget(
  config = readOr("/etc/ssh/sshd_config"),
  tcp = readOr("/proc/net/tcp"),
  tcp6 = readOr("/proc/net/tcp6"),
): { connect: string } | string {
  const port = Number(/^\s*Port\s+(\d{1,5})\s*$/im.exec(config)?.[1] ?? 22);
  if (listens(tcp, port)) return { connect: `127.0.0.1:${port}` };
  if (listens(tcp6, port)) return { connect: `[::1]:${port}` };
  return `nothing listens on TCP port ${port} (sshd's port${config === "" ? ", the default" : ""})`;
}

/** Whether /proc/net/tcp{,6} text has a socket listening on `port` (state 0A). */
function listens(table: string, port: number): boolean {
  const hex = port.toString(16).toUpperCase().padStart(4, "0");
  return table.split("\n").slice(1).some((line) => {
    const fields = line.trim().split(/\s+/);
    return fields[1]?.endsWith(`:${hex}`) === true && fields[3] === "0A";
  });
}

function readOr(path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return "";
  }
}

/** Runs `probe` where it is placed; a probe runner for tests to replace. */
export type ProbeRunner = (
  probe: ProbeSpec,
  place: ProbePlace,
  env?: Record<string, string>,
) => Promise<ProbeResult>;

/**
 * Runs every probe of `policy`, one after the other, each in its cgroup (its `in`, else a cgroup of its own
 * made under the policy's first scope cgroup, else under the cgroup v2 root: in the policy's scope either
 * way), and returns what each got. Undefined for a policy without checks.
 */
export async function runSelfChecks(
  policy: CheckedPolicy,
  where: CheckWhere,
  runner: ProbeRunner = runProbe,
  cgroupRoot?: string,
): Promise<CheckReport | undefined> {
  if (!hasChecks(policy)) return undefined;
  const { probes, notes } = plannedProbes(policy, where);
  const root = cgroupRoot ?? cgroup2Root();
  const base = `${root}${policy.spec.scope?.cgroups?.[0] ?? ""}`;
  await removeLeftoverCgroups(base);
  const outcomes: ProbeOutcome[] = [];
  for (const [index, planned] of probes.entries()) {
    let result: ProbeResult;
    if (planned.probe.in !== undefined) {
      result = await runner(
        planned.probe,
        { cgroupDir: `${root}${planned.probe.in}`, own: false },
        planned.env,
      );
    } else {
      const dir = `${base}/${CGROUP_PREFIX}${Deno.pid}-${index}`;
      try {
        Deno.mkdirSync(dir);
      } catch (error) {
        if (!(error instanceof Deno.errors.AlreadyExists)) {
          outcomes.push(
            outcomeOf(planned, { got: "failed", detail: `could not make the cgroup ${dir}: ${error}` }),
          );
          continue;
        }
      }
      try {
        result = await runner(planned.probe, { cgroupDir: dir, own: true }, planned.env);
      } finally {
        await removeCgroup(dir);
      }
    }
    outcomes.push(outcomeOf(planned, result));
  }
  return { outcomes, notes, failed: outcomes.filter((outcome) => !outcome.passed) };
}

function outcomeOf(planned: PlannedProbe, result: ProbeResult): ProbeOutcome {
  const passed = planned.expect === "mustWork" ? result.got === "worked" : result.got === "denied";
  return { ...planned, ...result, passed };
}

const CGROUP_PREFIX = "aegisbpf-check-";

/**
 * Probe cgroups an earlier, killed run left under `base` (their command is gone; a probe it started may still
 * run there): killed and removed, waited for as a probe's own cgroup is.
 */
async function removeLeftoverCgroups(base: string): Promise<void> {
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(base)];
  } catch {
    return; // No such base cgroup: the probes say so.
  }
  for (const entry of entries) {
    const pid = entry.isDirectory && entry.name.startsWith(CGROUP_PREFIX)
      ? Number(entry.name.slice(CGROUP_PREFIX.length).split("-")[0])
      : undefined;
    if (pid === undefined || pid === Deno.pid || alive(pid)) continue;
    await removeCgroup(`${base}/${entry.name}`);
  }
}

function alive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/**
 * Removes a probe's cgroup once its processes are gone (killed first, waited for up to 5 s: a loaded host
 * takes a while to reap them; what is still there then is left for the next run).
 */
async function removeCgroup(dir: string): Promise<void> {
  for (let attempt = 0; attempt < 250; attempt++) {
    try {
      Deno.removeSync(dir);
      return;
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return;
      if (attempt === 0) killCgroup(dir);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

/** The longest the probes of `policy` may take together (their timeouts), and a margin. */
export function checkBudgetMs(policy: CheckedPolicy, where: CheckWhere): number {
  const { probes } = plannedProbes(policy, where);
  return probes.reduce((sum, { probe }) => sum + probeTimeoutMs(probe), 30_000);
}

/** One line per probe: `pass mustWork connect 127.0.0.1:22/tcp: worked (succeeded)`. */
export function reportLines(report: CheckReport): string[] {
  return [
    ...report.outcomes.map((o) => `${o.passed ? "pass" : "FAIL"} ${o.label}: ${o.got} (${o.detail})`),
    ...report.notes,
  ];
}

/** The probes' answers as the JSON summary carries them. */
export function reportJson(report: CheckReport | undefined): object {
  if (!report) return {};
  return {
    checks: {
      passed: report.failed.length === 0,
      probes: report.outcomes.map(({ expect, label, implicit, got, detail, passed }) => ({
        expect,
        probe: label,
        implicit,
        got,
        detail,
        passed,
      })),
      notes: report.notes,
    },
  };
}

/** A self-check that failed: the previous policy was put back. Exit 3. */
export class SelfCheckFailedError extends RefusedError {
  override name = "SelfCheckFailedError";
  readonly report: CheckReport;
  constructor(message: string, report: CheckReport) {
    super(message);
    this.report = report;
  }
}

/** What a failed check puts back: the entry in force before, or nothing (no policy was in force). */
export type RollBack = (previous: HistoryEntry | undefined) => Promise<HistoryEntry>;

/** Writes an agent-style event from a command: appended as one line to the agent's event log. */
export type Emit = (type: AgentEventType, fields: Record<string, unknown>) => void;

export function logEvent(stateDir: string, policy?: { name: string; version: number; sha256: string }): Emit {
  return (type, fields) => {
    const event = agentEvent({ host: hostname(), mode: "enforce", policy }, type, fields);
    try {
      Deno.writeTextFileSync(eventLogPath(stateDir), `${jsonText(event)}\n`, {
        append: true,
        create: true,
        mode: PRIVATE_FILE_MODE,
      });
    } catch {
      // The event is also the command's error and the history note.
    }
  };
}

export type Identity = { sha256: string; name: string; version: number };

/**
 * Runs `flip` (an apply that puts `policy` in force), then its probes; a failed probe puts the previous
 * entry back through `rollBack` and throws SelfCheckFailedError. Without checks, just `flip`. The caller
 * holds the state lock throughout.
 */
export async function checkedFlip<T extends { entry: HistoryEntry }>(
  where: CheckWhere,
  policy: CheckedPolicy,
  identity: Identity,
  options: {
    holder: string;
    rollBack: RollBack;
    emit?: Emit;
    runner?: ProbeRunner;
    /** The cgroup v2 mount (found in /proc/mounts by default). */
    cgroupRoot?: string;
    /** What a failure puts back when not the entry in force now (a refresh: the entry before it). */
    previousOf?: () => HistoryEntry | undefined;
  },
  flip: () => Promise<T>,
): Promise<T & { checks?: CheckReport }> {
  if (!hasChecks(policy)) return await flip();
  const { stateDir } = where;
  const previous = options.previousOf ? options.previousOf() : currentEntry(listHistory(stateDir));
  const marker = {
    ...identity,
    ...previous && { previousSeq: previous.seq },
    holder: options.holder,
    pid: Deno.pid,
    time: new Date().toISOString(),
    budgetMs: checkBudgetMs(policy, where),
  };
  writeSelfCheckMarker(stateDir, marker);
  let result: T;
  try {
    result = await flip();
  } catch (error) {
    clearSelfCheckMarker(stateDir);
    throw error;
  }
  writeSelfCheckMarker(stateDir, { ...marker, seq: result.entry.seq });
  const report = (await runSelfChecks(policy, where, options.runner, options.cgroupRoot))!;
  if (report.failed.length > 0) {
    await failCheck(where, result.entry, previous, report, { ...options, identity });
  }
  clearSelfCheckMarker(stateDir);
  return { ...result, checks: report };
}

/** Marks `entry` check-failed, puts `previous` back, records the event; throws SelfCheckFailedError. */
async function failCheck(
  where: CheckWhere,
  entry: HistoryEntry,
  previous: HistoryEntry | undefined,
  report: CheckReport,
  options: { rollBack: RollBack; emit?: Emit; identity: Identity; late?: string },
): Promise<never> {
  const { stateDir } = where;
  const first = report.failed[0]!;
  const more = report.failed.length > 1 ? ` (and ${report.failed.length - 1} more)` : "";
  const expected = first.expect === "mustWork" ? "expected it to work" : "expected it to be denied";
  const why = `self-check failed${options.late ?? ""}: ${first.label}: ${expected}, got ${first.got} ` +
    `(${first.detail})${more}`;
  setOutcome(stateDir, entry.seq, "check-failed", why);
  let restored: HistoryEntry;
  try {
    restored = await options.rollBack(previous);
  } catch (error) {
    throw new RefusedError(
      `${why}; putting the previous policy back failed: ${error instanceof Error ? error.message : error}; ` +
        "run aegisbpf policy rollback",
    );
  }
  clearSelfCheckMarker(stateDir);
  const back = previous
    ? `rolled back to history entry ${previous.seq} (policy ${previous.name} version ${previous.version})`
    : "no policy was in force before it: an empty audit policy was put in force";
  (options.emit ?? logEvent(stateDir, options.identity))("policy.check_failed", {
    history: entry.seq,
    probe: first.label,
    expect: first.expect,
    got: first.got,
    detail: first.detail,
    failed: report.failed.map((outcome) => outcome.label),
    restored: previous?.seq ?? null,
    rollback: restored.seq,
  });
  throw new SelfCheckFailedError(`${why}; ${back}, recorded as entry ${restored.seq}`, report);
}

/**
 * Finishes a self-check a killed command left pending (`self-check.json`), under the state lock: the
 * probes of the policy in force run now; when they fail, the entry before it is put back. Returns what was
 * done, for the caller to say; undefined when nothing was pending. Never throws for a failed check (the
 * caller goes on with its own work): the message says it.
 */
export async function resolvePendingCheck(
  where: CheckWhere,
  options: {
    /** The policy of a history entry (the one in force), parsed. */
    policyOf: (entry: HistoryEntry) => Promise<CheckedPolicy>;
    rollBack: RollBack;
    emit?: Emit;
    runner?: ProbeRunner;
    cgroupRoot?: string;
  },
): Promise<string | undefined> {
  const { stateDir } = where;
  const marker = readSelfCheckMarker(stateDir);
  if (!marker) return undefined;
  const entries = listHistory(stateDir);
  const current = currentEntry(entries);
  if (
    !current || current.sha256 !== marker.sha256 || (marker.seq !== undefined && current.seq !== marker.seq)
  ) {
    clearSelfCheckMarker(stateDir);
    return `a self-check left pending by ${marker.holder} (pid ${marker.pid}) is moot: its policy never went ` +
      "into force";
  }
  const policy = await options.policyOf(current);
  const report = await runSelfChecks(policy, where, options.runner, options.cgroupRoot);
  if (!report || report.failed.length === 0) {
    clearSelfCheckMarker(stateDir);
    return `the self-check left pending by ${marker.holder} (pid ${marker.pid}, killed) passed now: ` +
      `history entry ${current.seq} stays in force`;
  }
  const previous = marker.previousSeq === undefined
    ? undefined
    : entries.find((entry) => entry.seq === marker.previousSeq);
  try {
    await failCheck(where, current, previous, report, {
      ...options,
      identity: marker,
      late: ` (finished after ${marker.holder}, pid ${marker.pid}, was killed)`,
    });
  } catch (error) {
    if (error instanceof SelfCheckFailedError) return error.message;
    throw error;
  }
  return undefined;
}
