/**
 * `health`: is aegisbpf doing what it should, now? Read from the pins (nothing loaded, no lock taken), the
 * applied record, the break-glass marker and agent.json, so it answers in milliseconds with or without an
 * agent. `status` shows the same facts on one screen with the counters.
 */

import { markerWriterAlive, readSelfCheckMarker, type SelfCheckMarker } from "../state/self_check_marker.ts";
import {
  type Counters,
  expectedMaps,
  isPinned,
  missingLinks,
  pinDirOf,
  pinnedCounters,
  pinnedDnsStats,
  pinnedGenInfo,
  type PinnedLink,
  pinnedLinks,
  pinnedMapFill,
  pinnedMaps,
} from "../kernel/inspect.ts";
import { PROGRAMS } from "../kernel/object.ts";
import { FILE_FALLBACK_COVERAGE } from "../kernel/load.ts";
import { forwardLinkName } from "../kernel/links.ts";
import { learnedEvictions } from "../kernel/learned.ts";
import { bootNsToEpochMs, readModeWords } from "../kernel/mode_words.ts";
import { readApplied } from "../state/apply_state.ts";
import { exceptionCounts, type ExceptionView, listExceptions } from "../ops/exceptions.ts";
import type { Area } from "../policy/plan.ts";
import { sweepConnections } from "../kernel/connections.ts";
import { type AgentStatus, partialAreas, readAgentState } from "../state/agent_state.ts";
import { cmdlineBreakGlass, readMarker } from "../state/break_glass_marker.ts";
import {
  describeTampering,
  type FloorRecord,
  readFloorRecord,
  readTamperRecord,
  recentTampering,
  TAMPER_RECENT_MS,
  type TamperEntry,
} from "../state/tamper_record.ts";
import { describeStale, findStaleRules, type StaleCheck } from "./stale.ts";
import { type WindowReport, windowsReport } from "./windows_report.ts";
import { HEARTBEAT_STALE_MS, heartbeatAge, readHeartbeat } from "../state/heartbeat.ts";

/** The share of the learned-address table's capacity at which it counts as full. */
const LEARNED_FULL = 0.98;

export type Paths = { bpffs: string; stateDir: string; configDir: string };

export type HealthReport = {
  healthy: boolean;
  /** What makes it unhealthy, each a line saying what to do. */
  problems: string[];
  /** Worth knowing, not unhealthy. */
  warnings: string[];
  pins: { dir: string; present: boolean; missingMaps: string[] };
  links: PinnedLink[];
  missingLinks: string[];
  policy: { name: string; version: number; sha256: string; seq: number; appliedAt: string } | null;
  mode: {
    effective: "enforce" | "audit" | "none";
    /** The mode the live generation was applied with. */
    policy: "enforce" | "audit" | null;
    /** Why effective is audit where the policy says enforce. */
    reasons: string[];
    /** What the policy in force and the agent's flags ask for; null when nothing is pinned. */
    requested: "enforce" | "audit" | null;
    /** The hooks audit where enforce was asked for, and no break-glass explains it: unhealthy. */
    belowRequested: boolean;
  };
  breakGlass: {
    on: boolean;
    until: string | null;
    reason: string | null;
    marker: boolean;
    /** On with no marker and no kernel command line flag: nobody asked for it (written behind aegisbpf's back). */
    unasked?: boolean;
  };
  /** What the running agent found changed behind its back and put back (tamper.detected), newest first. */
  tamper: { recent: TamperEntry[]; recentWindowMs: number; total: Partial<Record<string, number>> };
  deadman: { armed: boolean; expired: boolean; remainingMs: number | null };
  agent: AgentSummary;
  partial: { area: string; reason?: string }[];
  /** null when not checked (a probe). */
  staleRules: Omit<StaleCheck, "errors" | "warnings"> | null;
  /**
   * File and exec rules whose path the running agent's last refresh could not resolve (from agent.json):
   * they keep denying their last inodes while the other rules are refreshed. Empty without an agent.
   */
  unresolvedRules: { rule: string; area: string; path: string; error: string; since: string | null }[];
  /**
   * Connections to denied destinations made before the apply and still open; null when not listed: no
   * egress rules applied, or the apply closed them (listsConnections).
   */
  connections: { open: number; sample: string[] } | null;
  /**
   * The learned-address table of rules by name (map `learned`): entries (expired ones included, until
   * evicted or renewed), capacity, and the addresses its LRU evicted (inserts counted beyond the entries
   * held); and the DNS answers the kernel read (`answers`: parsed; addresses learned from them; answers not
   * learned from: malformed, unsolicited, foreign). Null when the policy in force has no rules by name.
   */
  names: {
    learned: number;
    capacity: number;
    evictions: number;
    answers: { parsed: number; addresses: number; malformed: number; unsolicited: number; foreign: number };
  } | null;
  /** The rules of the policy in force with a time window (`when:`): open now or not, and the next change. */
  windows: WindowReport[];
  /**
   * Expiring exceptions (`aegisbpf exception list`): live ones by kind, and every one listed with its state.
   * An active exception is a warning: it lets through what the policy denies.
   */
  exceptions: { active: number; byKind: Record<"exec" | "file" | "egress", number>; list: ExceptionView[] };
  events: { lost: number; suppressed: number };
  /** The counters read for this report (status prints them). */
  counters: Counters | null;
  tookMs: number;
};

export type AgentSummary = {
  state: AgentStatus["state"];
  pid?: number;
  startedAt?: string;
  mode?: string;
  why?: string;
  /** The running agent's last heartbeat (or its start, before the first), and how long ago. */
  heartbeatAt?: string;
  heartbeatAgeMs?: number;
  /** No heartbeat for HEARTBEAT_STALE_MS: stopped (SIGSTOP) or wedged. */
  stalled?: boolean;
};

/**
 * `--require-enforce`: false, true (every area the policy uses, and the whole plane), or the areas that
 * must enforce.
 */
export type RequireEnforce = boolean | readonly Area[];

export function checkHealth(
  paths: Paths,
  options: {
    requireEnforce: RequireEnforce;
    /**
     * false never lists connections made before the apply (it loads two BPF iterator programs, about 0.4 s;
     * listsConnections says when it is needed at all): for probes.
     */
    connections?: boolean;
    /** false skips the stale-rule check (a stat of every denied inode, a walk of every recursive rule's
     * tree): for probes. */
    staleRules?: boolean;
    /**
     * false skips walking recursive rules' directories (a million files take seconds): for the running
     * agent's API, whose event loop must not stall and whose watcher covers those directories.
     */
    trees?: boolean;
  },
): HealthReport {
  const started = performance.now();
  const problems: string[] = [];
  const warnings: string[] = [];
  const pinDir = pinDirOf(paths.bpffs);
  const present = isPinned(paths.bpffs);
  const applied = readApplied(paths.stateDir);
  const agentState = readAgentState(paths.stateDir);
  const agentRecord = agentState.state === "running" || agentState.state === "died"
    ? agentState.record
    : undefined;

  let missingMaps: string[] = [];
  let links: PinnedLink[] = [];
  let missing: string[] = [];
  let counters: Counters | undefined;
  let policyMode: "enforce" | "audit" | null = null;
  const reasons: string[] = [];
  let breakGlass: HealthReport["breakGlass"] = { on: false, until: null, reason: null, marker: false };
  let deadman: HealthReport["deadman"] = { armed: false, expired: false, remainingMs: null };
  const marker = readMarker(paths.configDir);
  const usedAreas = new Set<Area>(applied?.areas ?? []);
  for (const [area, mode] of Object.entries(agentRecord?.areas ?? {})) {
    if (mode !== "unused") usedAreas.add(area as Area);
  }
  if (!present) {
    problems.push(
      `nothing of aegisbpf is pinned under ${pinDir}: start the agent (aegisbpf run) or apply a policy`,
    );
  } else {
    const pinned = new Set(pinnedMaps(paths.bpffs));
    missingMaps = expectedMaps().filter((name) => !pinned.has(name));
    if (missingMaps.length > 0) {
      problems.push(
        `maps missing under ${pinDir}/maps: ${missingMaps.join(", ")}: run aegisbpf detach, then apply`,
      );
    }
    links = pinnedLinks(paths.bpffs);
    for (const link of links.filter((link) => !link.attached)) {
      problems.push(`link ${link.name} is pinned but not attached${link.error ? ` (${link.error})` : ""}`);
    }
    const interfaces = [...new Set([...(applied?.interfaces ?? []), ...(agentRecord?.ingress ?? [])])];
    missing = missingLinks([...usedAreas], interfaces, links);
    // A forward link unpinned since the apply (one pinned but detached is reported above).
    const pinnedNames = new Set(links.map((link) => link.name));
    missing.push(...(applied?.forward ?? []).map(forwardLinkName).filter((name) => !pinnedNames.has(name)));
    if (missing.length > 0) {
      problems.push(
        `programs not attached: ${missing.join(", ")}: re-apply the policy (aegisbpf policy rollback --to ` +
          `${applied?.seq ?? "SEQ"}) or restart the agent`,
      );
    }
    const words = readModeWords(paths.bpffs);
    counters = pinnedCounters(paths.bpffs);
    if (words) {
      policyMode = pinnedGenInfo(paths.bpffs, words.activeGen)?.enforce ? "enforce" : "audit";
      if (words.breakGlass.on) {
        const until = words.breakGlass.untilBootNs === undefined
          ? null
          : new Date(bootNsToEpochMs(words.breakGlass.untilBootNs)).toISOString();
        const unasked = marker === undefined && !cmdlineBreakGlass();
        breakGlass = {
          on: true,
          until,
          reason: marker?.reason ?? null,
          marker: marker !== undefined,
          ...(unasked && { unasked }),
        };
        reasons.push(
          unasked
            ? "break-glass word set but no marker and no kernel command line flag: nobody asked for it " +
              "(written behind aegisbpf's back); aegisbpf break-glass off clears it"
            : `break-glass is on${until ? ` until ${until}` : ""}`,
        );
      } else {
        breakGlass = { ...breakGlass, marker: marker !== undefined, reason: marker?.reason ?? null };
      }
      if (words.forceAudit) reasons.push(forcedAuditReason(agentState, readFloorRecord(paths.stateDir)));
      if (words.deadmanDeadlineNs !== undefined) {
        const remainingNs = words.deadmanDeadlineNs - words.nowBootNs;
        const expired = remainingNs <= 0n;
        deadman = { armed: true, expired, remainingMs: expired ? 0 : Number(remainingNs / 1_000_000n) };
        if (expired) {
          reasons.push("the deadman expired: the agent stopped refreshing it");
          problems.push(
            "the deadman expired: the hooks only audit because the agent stopped refreshing it; find out " +
              "why the agent is stalled (see agent below), or restart it (aegisbpf run)",
          );
        }
      }
      if (policyMode === "audit") reasons.push("the policy's mode is audit");
    }
  }
  const effective: HealthReport["mode"]["effective"] = !present
    ? "none"
    : reasons.length === 0 && policyMode === "enforce"
    ? "enforce"
    : "audit";
  // What was asked for: the agent's requested mode (its --audit or --enforce over the policy's), else the
  // live generation's. Break-glass is a deliberate audit, not a shortfall.
  const requested = !present
    ? null
    : agentRecord?.requestedMode === "enforce"
    ? "enforce"
    : agentRecord?.requestedMode === "audit"
    ? "audit"
    : policyMode;
  // A break-glass word nobody asked for (no marker, no command line flag) excuses nothing.
  const belowRequested = requested === "enforce" && effective === "audit" &&
    (!breakGlass.on || breakGlass.unasked === true);
  if (belowRequested) {
    const why = reasons.filter((reason) => !reason.startsWith("the deadman"));
    if (why.length > 0 || !deadman.expired) {
      problems.push(
        `the hooks only audit although ${
          agentRecord?.requestedMode === "enforce" ? "the agent asks" : "the policy asks"
        } for enforce and break-glass is off: ${
          why.join("; ") || "the deadman expired"
        }; re-apply the policy or restart the agent (aegisbpf run)`,
      );
    }
  }

  const policy = applied
    ? {
      name: applied.name,
      version: applied.version,
      sha256: applied.sha256,
      seq: applied.seq,
      appliedAt: applied.time,
    }
    : null;
  if (present && policy === null && !agentRecord?.policy) {
    problems.push("no policy applied: apply one with aegisbpf policy apply FILE");
  }

  const agent = summarizeAgent(agentState);
  if (agentState.state === "running") {
    const { lastMs, ageMs } = heartbeatAge(readHeartbeat(paths.stateDir), agentState.record.startedAt);
    agent.heartbeatAt = new Date(lastMs).toISOString();
    agent.heartbeatAgeMs = ageMs;
    agent.stalled = ageMs > HEARTBEAT_STALE_MS;
    if (agent.stalled) {
      problems.push(
        `the agent (pid ${agentState.record.pid}) has made no progress for ${Math.round(ageMs / 1000)} s ` +
          `(last heartbeat ${agent.heartbeatAt}): it is stopped (SIGSTOP) or wedged; look at it ` +
          `(cat /proc/${agentState.record.pid}/status), or restart it`,
      );
    }
  }
  if (agentState.state === "died") {
    problems.push(`the agent died (${agentState.why}): enforcement stays pinned; restart it (aegisbpf run)`);
  } else if (agentState.state === "unreadable") {
    problems.push(`cannot read the agent's record: ${agentState.why}`);
  } else if (agentState.state === "absent" && present) {
    warnings.push(
      "no agent is running: enforcement stays pinned, but nothing reads events or refreshes rules",
    );
  }

  const partial = agentRecord ? partialAreas(agentRecord) : [];
  if (policyMode === "enforce") {
    const attached = new Set(links.filter((link) => link.attached).map((link) => link.name));
    for (const [area, lsm] of [["file", PROGRAMS.fileOpen], ["exec", PROGRAMS.exec]] as const) {
      const used = applied?.areas?.includes(area) || agentRecord?.areas?.[area] !== undefined &&
          agentRecord.areas[area] !== "unused";
      if (used && !attached.has(lsm) && !partial.some((entry) => entry.area === area)) {
        const coverage = area === "file" ? `; ${FILE_FALLBACK_COVERAGE}` : "";
        partial.push({ area, reason: `BPF-LSM not attached: audited through tracepoints${coverage}` });
      }
    }
  }
  for (const { area, reason } of partial) {
    warnings.push(`${area} runs audit-only${reason ? `: ${reason}` : ""}`);
  }
  if (present) {
    const words = readModeWords(paths.bpffs);
    const unguarded = ptraceUnguarded(words && pinnedGenInfo(paths.bpffs, words.activeGen), links);
    if (unguarded) warnings.push(unguarded);
  }

  const checked = options.staleRules === false
    ? null
    : findStaleRules(applied, { trees: options.trees ?? true });
  let staleRules: HealthReport["staleRules"] = null;
  if (checked) {
    const { errors: walkErrors, warnings: walkWarnings, ...rest } = checked;
    staleRules = rest;
    for (const rule of rest.stale) {
      problems.push(`stale ${describeStale(rule)}: re-apply the policy to cover it`);
    }
    if (rest.omitted > 0) problems.push(`${rest.omitted} more stale files not listed`);
    problems.push(...walkErrors);
    warnings.push(...walkWarnings);
  }
  const unresolvedRules = agentState.state === "running"
    ? (agentState.record.unresolved ?? []).map(({ rule, area, path, error, since }) => ({
      rule,
      area,
      path,
      error,
      since: since ?? null,
    }))
    : [];
  for (const { rule, area, error, since } of unresolvedRules) {
    problems.push(
      `the agent cannot re-resolve ${area} rule ${rule}${
        since ? ` (since ${since})` : ""
      }: ${error}; it keeps ` +
        "denying the rule's last inodes and refreshes the other rules; restore the path, or change the " +
        "policy (optional: true, or without the rule) and apply it",
    );
  }
  if (staleRules?.known === false) {
    warnings.push(
      "the applied record predates inode recording: re-apply the policy to check rules for staleness",
    );
  }

  // Connections made before the apply to what it now denies, still open (where the kernel cannot close
  // them, or in audit): listed only, nothing is closed here.
  let connections: HealthReport["connections"] = null;
  const egress = present && applied?.areas?.includes("egress") === true;
  if (options.connections !== false && listsConnections(egress, effective, Deno.osRelease())) {
    try {
      const open = sweepConnections(pinDir, { close: false }).connections;
      connections = {
        open: open.length,
        sample: open.slice(0, 10).map((c) =>
          `${c.protocol} ${c.saddr}:${c.sport} -> ${c.daddr}:${c.dport} (uid ${c.uid}, rule #${c.ruleId})`
        ),
      };
      if (open.length > 0) {
        warnings.push(
          `${open.length} connections made before the apply still reach denied destinations ` +
            `(first: ${
              connections.sample[0]
            }); they end when their processes close them, or re-apply on 6.5+`,
        );
      }
    } catch (error) {
      warnings.push(`connections made before the apply could not be listed: ${(error as Error).message}`);
    }
  }

  let names: HealthReport["names"] = null;
  const live = present ? readModeWords(paths.bpffs) : undefined;
  if (live && pinnedGenInfo(paths.bpffs, live.activeGen)?.hostRules) {
    const fill = pinnedMapFill(paths.bpffs, "learned");
    if (fill) {
      const dns = pinnedDnsStats(paths.bpffs);
      names = {
        learned: fill.entries,
        capacity: fill.capacity,
        evictions: dns ? Number(learnedEvictions(dns, fill.entries)) : 0,
        answers: {
          parsed: Number(dns?.answers ?? 0n),
          addresses: Number(dns?.learned ?? 0n),
          malformed: Number(dns?.malformed ?? 0n),
          unsolicited: Number(dns?.unsolicited ?? 0n),
          foreign: Number(dns?.foreign ?? 0n),
        },
      };
      // An LRU hash evicts a batch ahead of need: full reads a little below its capacity.
      if (fill.entries >= fill.capacity * LEARNED_FULL) {
        warnings.push(
          `the learned-address table is full (${fill.entries} of ${fill.capacity} addresses): the least ` +
            "recently used are evicted, and a name decides nothing for an evicted address until it is " +
            "resolved again",
        );
      }
    }
  }

  const { windows, warnings: windowWarnings } = windowsReport(paths.stateDir, {
    agentRunning: agentState.state === "running",
    appliedAt: applied?.time,
  });
  warnings.push(...windowWarnings);

  const exceptions = exceptionsOf(paths, warnings);

  const tamperRecord = readTamperRecord(paths.stateDir);
  const tamper = {
    recent: recentTampering(tamperRecord),
    recentWindowMs: TAMPER_RECENT_MS,
    total: tamperRecord.total,
  };
  for (const entry of tamper.recent) {
    warnings.push(`tampering: ${describeTampering(entry)} by the agent (pid ${entry.pid}) at ${entry.at}`);
  }

  const pendingCheck = pendingCheckWarning(paths.stateDir);
  if (pendingCheck) warnings.push(pendingCheck);

  const lost = Number(counters?.eventsLost ?? 0n);
  const suppressed = Number(counters?.eventsSuppressed ?? 0n);
  if (lost > 0) warnings.push(`${lost} events were lost (ring buffer full): the agent read too slowly`);
  for (const reason of reasons) warnings.push(`mode is audit: ${reason}`);

  if (options.requireEnforce === true) {
    if (effective !== "enforce") {
      problems.push(`not enforcing (--require-enforce): ${reasons.join("; ") || "nothing is pinned"}`);
    }
    for (const { area } of partial) problems.push(`${area} only audits (--require-enforce)`);
  } else if (options.requireEnforce) {
    const flag = `--require-enforce ${options.requireEnforce.join(",")}`;
    for (const area of options.requireEnforce) {
      const why = !usedAreas.has(area)
        ? "the policy in force does not use it"
        : effective !== "enforce"
        ? reasons.join("; ") || "nothing is pinned"
        : partial.find((entry) => entry.area === area)?.reason ?? "";
      const audits = !usedAreas.has(area) || effective !== "enforce" ||
        partial.some((entry) => entry.area === area);
      if (audits) problems.push(`${area} is not enforcing (${flag})${why ? `: ${why}` : ""}`);
    }
  }
  return {
    healthy: problems.length === 0,
    problems,
    warnings,
    pins: { dir: pinDir, present, missingMaps },
    links,
    missingLinks: missing,
    policy,
    mode: { effective, policy: policyMode, reasons, requested, belowRequested },
    breakGlass,
    tamper,
    deadman,
    agent,
    partial,
    staleRules,
    unresolvedRules,
    connections,
    names,
    windows,
    exceptions,
    events: { lost, suppressed },
    counters: counters ?? null,
    tookMs: Math.round((performance.now() - started) * 10) / 10,
  };
}

/** The exceptions and their counts; each active one is a warning naming it, its reason and its end. */
function exceptionsOf(paths: Paths, warnings: string[]): HealthReport["exceptions"] {
  let list: ExceptionView[] = [];
  try {
    list = listExceptions(paths);
  } catch (error) {
    warnings.push(`expiring exceptions could not be read: ${(error as Error).message}`);
  }
  const byKind = exceptionCounts(list);
  for (const view of list) {
    if (view.state !== "active" && view.state !== "unnamed") continue;
    warnings.push(
      `exception ${view.id} lets ${view.allow ?? view.kind} through${view.in ? ` in ${view.in}` : ""}` +
        `${view.expires ? ` until ${view.expires}` : ""}${view.reason ? ` (${view.reason})` : ""}`,
    );
  }
  return { active: byKind.exec + byKind.file + byKind.egress, byKind, list };
}

/**
 * Whether connections made before the apply can still be open, so that health lists them (loading the list
 * iterators, verified at every load: about 0.4 s). Only with egress rules applied, and where the apply's
 * sweep left them open: a kernel before 6.5 (no bpf_sock_destroy), or hooks that do not enforce now (audit,
 * break-glass, forced audit: the sweep only lists then). On 6.5 and later an apply whose rules enforce closed
 * every connection they deny, and the hooks refuse new ones. Pure.
 */
export function listsConnections(
  egressApplied: boolean,
  effective: HealthReport["mode"]["effective"],
  release: string,
): boolean {
  if (!egressApplied) return false;
  const [major = 0, minor = 0] = release.split(/[.-]/).map(Number);
  const canClose = major > 6 || (major === 6 && minor >= 5);
  return !canClose || effective !== "enforce";
}

function summarizeAgent(state: AgentStatus): AgentSummary {
  if (state.state === "absent") return { state: "absent" };
  if (state.state === "unreadable") return { state: "unreadable", why: state.why };
  const { pid, startedAt, mode } = state.record;
  const base = { state: state.state, pid, startedAt, ...(mode === undefined ? {} : { mode }) };
  return state.state === "died" ? { ...base, why: state.why } : base;
}

/**
 * Who holds the forced-audit word: a running agent's `--audit` floor, what a stopped `run --audit` agent or a
 * detach that did not finish left (`forced_audit.json`), or nobody: written behind aegisbpf's back.
 */
function forcedAuditReason(agent: AgentStatus, floor: FloorRecord | undefined): string {
  if (agent.state === "running") {
    if (agent.record.floor === "audit") {
      return `the agent forces audit (run --audit, pid ${agent.record.pid}), whatever the policy's mode says`;
    }
    return `force-audit word set but no agent or command asked for audit (written behind aegisbpf's back); ` +
      `the running agent (pid ${agent.record.pid}) puts it back within a second unless it is stalled`;
  }
  if (floor) {
    const who = floor.by === "detach"
      ? `a detach that did not finish (pid ${floor.pid}, ${floor.since})`
      : `a stopped run --audit agent (pid ${floor.pid}, since ${floor.since})`;
    return `audit is forced, left by ${who}: the next aegisbpf run without --audit lifts it`;
  }
  return "force-audit word set but no agent or command asked for audit (written behind aegisbpf's back): " +
    "the next aegisbpf run without --audit lifts it";
}

/**
 * The ptrace guard is a BPF-LSM program: when the live rules have a scope and it is not attached (BPF-LSM
 * cannot load here, or only bind and ingress rules are served), what a task in scope can still do. Pure.
 */
export function ptraceUnguarded(
  live: { scopeInclude: number; scopeExempt: number } | undefined,
  links: readonly Pick<PinnedLink, "name" | "attached">[],
): string | undefined {
  if (!live || live.scopeInclude + live.scopeExempt === 0) return undefined;
  if (links.some((link) => link.attached && link.name === PROGRAMS.ptraceAccess)) return undefined;
  return "the ptrace guard is not enforced (it is a BPF-LSM program, attached with file, exec or egress " +
    "rules where BPF-LSM loads): a task in the scope can trace, or write the memory of, a task outside it; " +
    "kernel.yama.ptrace_scope=2 refuses that to tasks without CAP_SYS_PTRACE";
}

/**
 * A self-check a command left pending (`self-check.json`): running now, or left by a killed command (the
 * next apply or rollback, or the agent, finishes it). A warning, not a problem: `aegisbpf health` is itself
 * one of the probes.
 */
function pendingCheckWarning(stateDir: string): string | undefined {
  let marker: SelfCheckMarker | undefined;
  try {
    marker = readSelfCheckMarker(stateDir);
  } catch (error) {
    return `cannot read the pending self-check record: ${(error as Error).message}`;
  }
  if (!marker) return undefined;
  const what = `policy ${marker.name} version ${marker.version}` +
    (marker.seq === undefined ? "" : ` (history entry ${marker.seq})`);
  return markerWriterAlive(marker)
    ? `self-check running: ${what}, by ${marker.holder} (pid ${marker.pid})`
    : `self-check pending: ${what}: ${marker.holder} (pid ${marker.pid}) was killed before its probes ` +
      "ended; the next policy apply or rollback (or the running agent) finishes it";
}
