/**
 * What `metrics` reports (SPEC section 7), read from the pins and the state directory only, so that it works
 * with or without a running agent and changes nothing: `collect` reads, `families` turns the reading into
 * metric families (pure).
 */

import { DECISION, HOOK_NAMES, ifName, RULE_HIT, ruleMapFill } from "../../ffi/mod.ts";
import { libbpfVersion } from "../kernel/info.ts";
import { type DnsStats, learnedEvictions } from "../kernel/learned.ts";
import {
  type Counters,
  HOOK_PROGRAMS,
  pinnedCounters,
  pinnedDnsStats,
  pinnedGenInfo,
  pinnedLinks,
  pinnedMapFill,
  pinnedRuleHits,
  pinnedXdpStats,
} from "../kernel/inspect.ts";
import { storedInput } from "../ops/policy_source.ts";
import { readApplied, storedPolicy } from "../state/apply_state.ts";
import { compilePolicy } from "../policy/compile.ts";
import { readModeWords } from "../kernel/mode_words.ts";
import { PROGRAMS } from "../kernel/object.ts";
import { currentEntry, listHistory } from "../state/history.ts";
import { readTamperRecord, TAMPER_KINDS, type TamperKind } from "../state/tamper_record.ts";
import { readAgentState } from "../state/agent_state.ts";
import { VERSION } from "../version.ts";
import { exceptionCounts, listExceptions } from "../ops/exceptions.ts";
import type { Family } from "./exposition.ts";

export type MetricsReading = {
  build: { version: string; libbpf: string; kernel: string };
  /** Whether anything of aegisbpf is pinned under the bpffs. */
  pinned: boolean;
  /** The live generation's mode, when a rule set is applied. */
  policyMode?: "enforce" | "audit";
  forceAudit: boolean;
  breakGlass: boolean;
  /** Seconds until the deadman falls back to audit (0: it has); absent when there is no deadman. */
  deadmanRemaining?: number;
  /** The policy in force according to history. */
  policy?: { name: string; version: number; sha256: string; appliedAt: number };
  counters?: Counters;
  maps: { map: string; entries: number; capacity: number }[];
  /** Pinned links whose program is attached (a detached cgroup or XDP link does not count). */
  links: string[];
  /** Packets seen by XDP, by interface (its name where this network namespace has it) and verdict. */
  xdp: { interface: string; action: "pass" | "drop"; packets: bigint }[];
  /** Tampering the running agent found and put back, by kind, since the state directory was made. */
  tamper?: Partial<Record<TamperKind, number>>;
  /** Decisions of the live generation's rules that fired, by rule id (as the policy names it). */
  ruleHits: { rule: string; tags?: string; decision: "deny" | "audit" | "allow"; count: bigint }[];
  /** File and exec rules the running agent could not re-resolve at its last refresh (see agent.json). */
  unresolvedRules?: number;
  /** Live expiring exceptions by kind (`aegisbpf exception list`). */
  exceptions?: Record<"exec" | "file" | "egress", number> | undefined;
  /** Learning from DNS answers (map `dns_stats`) and the learned-address table's evictions (estimated). */
  dns?: DnsStats & { evictions: bigint };
};

type RuleLabels = { rule: string; tags?: string };

function labelsOf(rule: string, tags: string | undefined): RuleLabels {
  return tags === undefined ? { rule } : { rule, tags };
}

/** XDP_DROP and XDP_PASS as the kernel returns them. */
const XDP_ACTIONS: Readonly<Record<number, "pass" | "drop">> = { 1: "drop", 2: "pass" };

/**
 * The rule ids of generation `gen` as the policy names them, when applied.json says which history entry it
 * holds; otherwise `#N` (a policy this state directory did not apply). Compiling the policy is the costly
 * part, so the names of the last entry read are kept: a process that writes the textfile on a timer (the
 * agent) compiles once per apply, not once per write.
 */
let namesCache: { key: string; names: readonly string[]; tags: readonly (string | undefined)[] } | undefined;

/** A rule's tags as one metrics label value: comma-separated, in the policy's order. */
export function tagsLabel(tags: readonly string[] | undefined): string | undefined {
  return tags === undefined || tags.length === 0 ? undefined : tags.join(",");
}

function ruleNamesOf(stateDir: string, gen: number): (ruleId: number) => RuleLabels {
  const applied = readApplied(stateDir);
  const entry = applied?.generation === gen
    ? listHistory(stateDir).find((candidate) => candidate.seq === applied.seq)
    : undefined;
  if (!entry) return (ruleId) => ({ rule: `#${ruleId}` });
  const key = `${stateDir}\0${entry.seq}\0${entry.contentSha256}`;
  if (namesCache?.key !== key) {
    const plan = compilePolicy(storedInput(storedPolicy(stateDir, entry)).parsed.policy);
    namesCache = {
      key,
      names: plan.rules.map((rule) => rule.id),
      tags: plan.rules.map((r) => tagsLabel(r.tags)),
    };
  }
  const { names, tags } = namesCache;
  return (ruleId) => labelsOf(names[ruleId] ?? `#${ruleId}`, tags[ruleId]);
}

/**
 * Reads the pins under `bpffs` and the history under `stateDir`. A process that knows the rule tables (the
 * agent) passes `ruleName`, and the policy is then never compiled here.
 */
export function collect(
  where: { bpffs: string; stateDir: string },
  options: {
    ruleName?: (gen: number, ruleId: number) => string;
    /** The rule's tags, when `ruleName` is given (the agent's tables know them). */
    ruleTags?: (gen: number, ruleId: number) => readonly string[] | undefined;
  } = {},
): MetricsReading {
  const build = { version: VERSION, libbpf: libbpfVersion(), kernel: Deno.osRelease() };
  const entry = currentEntry(listHistory(where.stateDir));
  const policy = entry && {
    name: entry.name,
    version: entry.version,
    sha256: entry.sha256,
    appliedAt: Date.parse(entry.time) / 1000,
  };
  const words = readModeWords(where.bpffs);
  const tamper = readTamperRecord(where.stateDir).total;
  const exceptions = liveExceptions(where);
  if (!words) {
    // Nothing pinned (never applied, or detached): history still names the last policy, but none is in
    // force, and saying one is would be a stale value.
    return {
      build,
      pinned: false,
      forceAudit: false,
      breakGlass: false,
      tamper,
      maps: [],
      links: [],
      xdp: [],
      ruleHits: [],
      unresolvedRules: 0,
      exceptions,
    };
  }
  const info = pinnedGenInfo(where.bpffs, words.activeGen);
  const counters = pinnedCounters(where.bpffs);
  const sessions = pinnedMapFill(where.bpffs, "ingress_session");
  const maps = info ? ruleMapFill(info) : [];
  if (sessions) maps.push({ map: "ingress_session", ...sessions });
  // The learned-address table: full, its oldest entries are evicted (names learned again when resolved).
  const learned = pinnedMapFill(where.bpffs, "learned");
  if (learned) maps.push({ map: "learned", ...learned });
  const dnsCounts = pinnedDnsStats(where.bpffs);
  const dns = dnsCounts && { ...dnsCounts, evictions: learnedEvictions(dnsCounts, learned?.entries ?? 0) };
  const deadline = words.deadmanDeadlineNs;
  const xdp = pinnedXdpStats(where.bpffs).flatMap(({ ifindex, action, packets }) => {
    const verdict = XDP_ACTIONS[action];
    return verdict ? [{ interface: ifName(ifindex) ?? `ifindex:${ifindex}`, action: verdict, packets }] : [];
  });
  const hits = pinnedRuleHits(where.bpffs, words.activeGen);
  const known = options.ruleName;
  const knownTags = options.ruleTags;
  const ruleLabels = hits.length === 0
    ? () => ({ rule: "" })
    : known
    ? (ruleId: number) =>
      labelsOf(known(words.activeGen, ruleId), tagsLabel(knownTags?.(words.activeGen, ruleId)))
    : ruleNamesOf(where.stateDir, words.activeGen);
  const ruleHits = hits.map(({ ruleId, decision, count }) => ({
    ...ruleLabels(ruleId),
    decision: decision === DECISION.DENY
      ? "deny" as const
      : decision === RULE_HIT.NAME_ALLOW
      ? "allow" as const
      : "audit" as const,
    count,
  }));
  return {
    build,
    pinned: true,
    ...(info && { policyMode: info.enforce ? "enforce" as const : "audit" as const }),
    forceAudit: words.forceAudit,
    breakGlass: words.breakGlass.on,
    ...(deadline !== undefined && {
      deadmanRemaining: Math.max(0, Number(deadline - words.nowBootNs) / 1e9),
    }),
    ...(policy && { policy }),
    ...(counters && { counters }),
    tamper,
    maps,
    ...(dns && { dns }),
    links: pinnedLinks(where.bpffs).filter((link) => link.attached).map((link) => link.name),
    xdp,
    ruleHits,
    unresolvedRules: unresolvedRules(where.stateDir),
    exceptions,
  };
}

/** Live exceptions by kind; undefined (no samples) when the record cannot be read (health says why). */
function liveExceptions(
  where: { bpffs: string; stateDir: string },
): Record<"exec" | "file" | "egress", number> | undefined {
  try {
    return exceptionCounts(listExceptions(where));
  } catch {
    return undefined;
  }
}

/** How many rules the running agent keeps on their last inodes; 0 without a running agent. */
function unresolvedRules(stateDir: string): number {
  const agent = readAgentState(stateDir);
  return agent.state === "running" ? agent.record.unresolved?.length ?? 0 : 0;
}

/** Whether the kernel denies now: an enforce rule set, and no forced audit, break-glass or expired deadman. */
export function enforcing(reading: MetricsReading): boolean {
  return reading.policyMode === "enforce" && !reading.forceAudit && !reading.breakGlass &&
    reading.deadmanRemaining !== 0;
}

const XDP_LINK_PREFIX = `${PROGRAMS.ingress}@`;

/** The metric families of SPEC section 7 for one reading. Pure. */
export function families(reading: MetricsReading): Family[] {
  const flag = (on: boolean) => [{ value: on ? 1 : 0 }];
  const hooks = HOOK_PROGRAMS.filter((program) => program !== PROGRAMS.ingress).map((program) => ({
    labels: { hook: program.replace(/^aegis_/, "") },
    value: reading.links.includes(program) ? 1 : 0,
  }));
  const xdp = reading.links.filter((name) => name.startsWith(XDP_LINK_PREFIX));
  hooks.push(
    ...(xdp.length > 0
      ? xdp.map((name) => ({ labels: { hook: `xdp@${name.slice(XDP_LINK_PREFIX.length)}` }, value: 1 }))
      : [{ labels: { hook: "xdp" }, value: 0 }]),
  );
  const decisions = reading.counters
    ? HOOK_NAMES.flatMap((hook) =>
      (["deny", "audit"] as const).map((decision) => ({
        labels: { hook, decision },
        value: reading.counters!.decisions[hook][decision],
      }))
    )
    : [];
  const { policy, counters } = reading;
  return [
    {
      name: "aegisbpf_build_info",
      help: "The aegisbpf build, the libbpf it loaded and the running kernel; always 1",
      type: "gauge",
      samples: [{ labels: reading.build, value: 1 }],
    },
    {
      name: "aegisbpf_pinned",
      help: "1 when the aegisbpf data plane is pinned in the kernel (loaded), 0 when not",
      type: "gauge",
      samples: flag(reading.pinned),
    },
    {
      name: "aegisbpf_enforcing",
      help:
        "1 when the kernel denies what the policy denies; 0 in audit, break-glass, forced audit or after the deadman",
      type: "gauge",
      samples: flag(enforcing(reading)),
    },
    {
      name: "aegisbpf_break_glass_active",
      help: "1 while break-glass forces audit everywhere",
      type: "gauge",
      samples: flag(reading.breakGlass),
    },
    {
      name: "aegisbpf_policy_info",
      help: "The policy in force (from history); always 1",
      type: "gauge",
      samples: policy ? [{ labels: { name: policy.name, sha256: policy.sha256 }, value: 1 }] : [],
    },
    {
      name: "aegisbpf_policy_version",
      help: "metadata.version of the policy in force",
      type: "gauge",
      samples: policy ? [{ value: policy.version }] : [],
    },
    {
      name: "aegisbpf_policy_applied_timestamp_seconds",
      help: "When the policy in force was applied, in seconds since the epoch",
      type: "gauge",
      samples: policy ? [{ value: policy.appliedAt }] : [],
    },
    {
      name: "aegisbpf_decisions_total",
      help:
        "Decisions the kernel took, by hook and decision (deny: blocked; audit: let through and reported)",
      type: "counter",
      samples: decisions,
    },
    {
      name: "aegisbpf_events_dropped_total",
      help: "Events not delivered: ring_buffer_full (lost), rate_limited (suppressed, counted in summaries)",
      type: "counter",
      samples: counters
        ? [
          { labels: { reason: "ring_buffer_full" }, value: counters.eventsLost },
          { labels: { reason: "rate_limited" }, value: counters.eventsSuppressed },
        ]
        : [],
    },
    {
      name: "aegisbpf_tamper_detected_total",
      help:
        "Mode words changed and link pins removed behind the running agent's back, which it put back, by what",
      type: "counter",
      samples: reading.tamper
        ? TAMPER_KINDS.map((what) => ({ labels: { what }, value: reading.tamper?.[what] ?? 0 }))
        : [],
    },
    {
      name: "aegisbpf_exceptions",
      help: "Live expiring exceptions by kind (exec, file, egress): each lets through what the policy denies",
      type: "gauge",
      samples: reading.exceptions
        ? Object.entries(reading.exceptions).map(([kind, value]) => ({ labels: { kind }, value }))
        : [],
    },
    {
      name: "aegisbpf_map_entries",
      help: "Entries of the live rule maps and of the ingress session map",
      type: "gauge",
      samples: reading.maps.map(({ map, entries }) => ({ labels: { map }, value: entries })),
    },
    {
      name: "aegisbpf_map_capacity",
      help: "Capacity of the live rule maps and of the ingress session map",
      type: "gauge",
      samples: reading.maps.map(({ map, capacity }) => ({ labels: { map }, value: capacity })),
    },
    {
      name: "aegisbpf_dns_answers_total",
      help:
        "DNS answers the kernel read for rules by name: parsed (learned from), or not learned from because " +
        "malformed (truncated, cut short, over 2048 bytes), unsolicited (no query asked) or foreign (a server the " +
        "policy does not allow on port 53)",
      type: "counter",
      samples: reading.dns
        ? ([
          ["parsed", reading.dns.answers],
          ["malformed", reading.dns.malformed],
          ["unsolicited", reading.dns.unsolicited],
          ["foreign", reading.dns.foreign],
        ] as const).map(([result, value]) => ({ labels: { result }, value }))
        : [],
    },
    {
      name: "aegisbpf_dns_learned_addresses_total",
      help: "Addresses the kernel wrote into the learned-address table from DNS answers",
      type: "counter",
      samples: reading.dns ? [{ labels: {}, value: reading.dns.learned }] : [],
    },
    {
      name: "aegisbpf_learned_evictions_total",
      help:
        "Addresses the learned-address table's LRU evicted: every address inserted new beyond the entries held",
      type: "counter",
      samples: reading.dns ? [{ labels: {}, value: reading.dns.evictions }] : [],
    },
    {
      name: "aegisbpf_hook_attached",
      help: "1 when the hook's program is attached (its link pinned); xdp@IFACE per ingress interface",
      type: "gauge",
      samples: hooks,
    },
    {
      name: "aegisbpf_xdp_packets_total",
      help: "Packets the XDP program saw on each interface it filters, by verdict (pass or drop)",
      type: "counter",
      samples: sumBy(reading.xdp, (x) => `${x.interface}\0${x.action}`, (x) => x.packets).map(([k, v]) => {
        const [iface = "", action = ""] = k.split("\0");
        return { labels: { interface: iface, action }, value: v };
      }),
    },
    {
      name: "aegisbpf_rule_hits_total",
      help:
        "Decisions per rule of the policy in force since it was applied (deny: refused; audit: reported; " +
        "allow: a connect or sendmsg a rule by name allowed by a learned address)",
      type: "counter",
      samples: sumBy(reading.ruleHits, (h) => `${h.rule}\0${h.decision}\0${h.tags ?? ""}`, (h) => h.count)
        .map(([k, v]) => {
          const [rule = "", decision = "", tags = ""] = k.split("\0");
          return { labels: tags === "" ? { rule, decision } : { rule, decision, tags }, value: v };
        }),
    },
    {
      name: "aegisbpf_rules_unresolved",
      help:
        "File and exec rules whose path the running agent could not re-resolve at its last refresh; each keeps denying its last inodes",
      type: "gauge",
      samples: [{ value: reading.unresolvedRules ?? 0 }],
    },
    {
      name: "aegisbpf_deadman_seconds_remaining",
      help:
        "Seconds until the kernel falls back to audit unless the agent refreshes the deadman; no sample without one",
      type: "gauge",
      samples: reading.deadmanRemaining === undefined ? [] : [{ value: reading.deadmanRemaining }],
    },
  ];
}

/** Sums `value` by `key` (several rule ids share an id's name when a rule expands; names may repeat). */
function sumBy<T>(
  items: readonly T[],
  key: (item: T) => string,
  value: (item: T) => bigint,
): [string, bigint][] {
  const sums = new Map<string, bigint>();
  for (const item of items) sums.set(key(item), (sums.get(key(item)) ?? 0n) + value(item));
  return [...sums].sort(([a], [b]) => a.localeCompare(b));
}
