/**
 * A read-only view of what is pinned under `<bpffs>/aegisbpf/`, through the pins alone: no object is
 * loaded, nothing is attached or created and no lock is taken, so it is fast and safe beside a running
 * agent, a wedged one, or none. `health` and `status` read the kernel through it.
 */

import {
  BpfLink,
  COUNTER,
  DECISION,
  decodeGenInfo,
  decodeRuleHitKey,
  decodeRuleHitSlots,
  decodeXdpSlots,
  decodeXdpStatKey,
  encodeU32,
  FdMap,
  type GenInfo,
  HOOK_NAMES,
  LINK_TYPE,
  ruleHitSlotOf,
  sumPerCpu,
} from "../../ffi/mod.ts";
import type { Area } from "../policy/plan.ts";
import {
  CGROUP_PROGRAMS,
  EGRESS_LSM_PROGRAMS,
  EXEC_AUDIT_PROGRAMS,
  EXEC_LSM_PROGRAMS,
  FILE_AUDIT_PROGRAMS,
  FILE_LSM_PROGRAMS,
  GUARD_LSM_PROGRAMS,
  IDENTITY_PROGRAMS,
} from "./load.ts";
import { type DnsStats, dnsStats } from "./learned.ts";
import { ingressLinkName } from "./links.ts";
import { openAegisObject, PROGRAMS } from "./object.ts";
import { exists, listDir } from "./pin_dir.ts";
import { filterInterface, filterStatus, recordedFilters } from "./tc_filter.ts";

export type Hook = typeof HOOK_NAMES[number];

export type Counters = {
  decisions: Record<Hook, { deny: bigint; audit: bigint }>;
  eventsLost: bigint;
  eventsSuppressed: bigint;
};

/** The counters from a reader of per-CPU slots (summed over CPUs). */
export function countersFrom(slot: (index: number) => bigint): Counters {
  const decisions = Object.fromEntries(
    HOOK_NAMES.map((hook, i) => [hook, { deny: slot(i * 2), audit: slot(i * 2 + 1) }]),
  ) as Counters["decisions"];
  return {
    decisions,
    eventsLost: slot(COUNTER.EVENTS_LOST),
    eventsSuppressed: slot(COUNTER.EVENTS_SUPPRESSED),
  };
}

export function pinDirOf(bpffs: string): string {
  return `${bpffs}/aegisbpf`;
}

/** Whether anything of aegisbpf is pinned under `bpffs` (its config map is the mark). */
export function isPinned(bpffs: string): boolean {
  return exists(`${pinDirOf(bpffs)}/maps/aegis_cfg`);
}

/** The maps this build pins (every map of the object but the internal ones). */
export function expectedMaps(): string[] {
  const open = openAegisObject([]);
  try {
    return open.mapNames().filter((name) => !name.includes(".")).sort();
  } finally {
    open.close();
  }
}

export function pinnedMaps(bpffs: string): string[] {
  return listDir(`${pinDirOf(bpffs)}/maps`);
}

/** A pinned link and what the kernel says of it. */
export type PinnedLink = {
  name: string;
  /** The kernel's link type, by name. */
  type: string;
  programId: number;
  /** False for a cgroup or XDP link that was detached, or a pin that does not open as a link. */
  attached: boolean;
  error?: string;
};

const LINK_TYPE_NAMES: Record<number, string> = {
  [LINK_TYPE.RAW_TRACEPOINT]: "raw_tracepoint",
  [LINK_TYPE.TRACING]: "tracing",
  [LINK_TYPE.CGROUP]: "cgroup",
  [LINK_TYPE.XDP]: "xdp",
  [LINK_TYPE.PERF_EVENT]: "perf_event",
  [LINK_TYPE.TCX]: "tcx",
};

/**
 * The pinned links, then the classic tc filters recorded under tc/ (type "tc", where the kernel has no
 * tcx links), each attached while its interface's filter runs the recorded program.
 */
export function pinnedLinks(bpffs: string): PinnedLink[] {
  const dir = `${pinDirOf(bpffs)}/links`;
  return [...listDir(dir).map((name) => pinnedLink(dir, name)), ...recordedFilterLinks(pinDirOf(bpffs))];
}

function recordedFilterLinks(pinDir: string): PinnedLink[] {
  return recordedFilters(pinDir).map((name) => {
    try {
      const status = filterStatus(pinDir, name);
      const error = status.ifindex === undefined
        ? `no interface ${filterInterface(name)}`
        : status.running === undefined
        ? `no tc filter on ${filterInterface(name)}'s egress`
        : status.attached
        ? undefined
        : `the tc filter on ${
          filterInterface(name)
        }'s egress runs program ${status.running}, not ${status.programId}`;
      return {
        name,
        type: "tc",
        programId: status.programId ?? 0,
        attached: status.attached,
        ...error && { error },
      };
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      return { name, type: "tc", programId: 0, attached: false, error: message };
    }
  });
}

function pinnedLink(dir: string, name: string): PinnedLink {
  try {
    using link = BpfLink.open(`${dir}/${name}`);
    const info = link.info();
    return {
      name,
      type: LINK_TYPE_NAMES[info.type] ?? `type ${info.type}`,
      programId: info.programId,
      attached: info.programId !== 0 && info.attached !== false,
    };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return { name, type: "unknown", programId: 0, attached: false, error: message };
  }
}

/**
 * The links an area needs attached; any one of the alternatives will do (BPF-LSM, or the audit
 * tracepoints where this kernel refuses it). Ingress needs one link per interface.
 */
export function linksNeeded(area: Area, interfaces: readonly string[] = []): string[][][] {
  switch (area) {
    case "file":
      return [
        [[...FILE_LSM_PROGRAMS, ...GUARD_LSM_PROGRAMS], [...FILE_AUDIT_PROGRAMS]],
        [[...IDENTITY_PROGRAMS.lsm], [...IDENTITY_PROGRAMS.fallback]],
      ];
    case "exec":
      return [[[...EXEC_LSM_PROGRAMS, ...GUARD_LSM_PROGRAMS], [...EXEC_AUDIT_PROGRAMS]]];
    case "egress":
      return [
        [[...CGROUP_PROGRAMS.egress]],
        [[...EGRESS_LSM_PROGRAMS.lsm], [...EGRESS_LSM_PROGRAMS.fallback]],
        [[...IDENTITY_PROGRAMS.lsm], [...IDENTITY_PROGRAMS.fallback]],
      ];
    case "bind":
      return [[[...CGROUP_PROGRAMS.bind]], [[...IDENTITY_PROGRAMS.lsm], [...IDENTITY_PROGRAMS.fallback]]];
    case "ingress":
      return interfaces.map((iface) => [[ingressLinkName(iface)]]);
  }
}

/**
 * Links missing for `areas`: for each need none of whose alternatives is wholly attached, the names of
 * its first alternative's missing links (or, where an alternative is partly there, of that one).
 */
export function missingLinks(
  areas: readonly Area[],
  interfaces: readonly string[],
  links: readonly PinnedLink[],
): string[] {
  const attached = new Set(links.filter((link) => link.attached).map((link) => link.name));
  const missing: string[] = [];
  for (const area of areas) {
    for (const alternatives of linksNeeded(area, interfaces)) {
      if (alternatives.some((names) => names.every((name) => attached.has(name)))) continue;
      const partial = alternatives.find((names) => names.some((name) => attached.has(name))) ??
        alternatives[0];
      missing.push(...(partial ?? []).filter((name) => !attached.has(name)));
    }
  }
  return missing;
}

function openPinnedMap(bpffs: string, name: string): FdMap | undefined {
  const path = `${pinDirOf(bpffs)}/maps/${name}`;
  return exists(path) ? FdMap.open(path) : undefined;
}

/** The rule-set facts of generation `gen` (its mode, entry counts), or undefined without pins. */
export function pinnedGenInfo(bpffs: string, gen: number): GenInfo | undefined {
  using map = openPinnedMap(bpffs, "gen_info");
  const value = map?.lookup(encodeU32(gen));
  return value && decodeGenInfo(value);
}

/** Decision and event counters summed over CPUs, or undefined without pins. */
export function pinnedCounters(bpffs: string): Counters | undefined {
  using map = openPinnedMap(bpffs, "counters");
  if (!map) return undefined;
  return countersFrom((index) => sumPerCpu(map.lookup(encodeU32(index))));
}

/** What learning from DNS answers counted (map `dns_stats`), or undefined without it (an older build's pins). */
export function pinnedDnsStats(bpffs: string): DnsStats | undefined {
  using map = openPinnedMap(bpffs, "dns_stats");
  return map && dnsStats(map);
}

/** Every deny decision counted so far, over all hooks (0 when nothing is pinned yet). */
export function totalDenies(counters: Counters | undefined): bigint {
  if (!counters) return 0n;
  return Object.values(counters.decisions).reduce((sum, hook) => sum + hook.deny, 0n);
}

/** Entries and capacity of an ordinary (not map-of-maps) pinned map, counted by walking its keys. */
export function pinnedMapFill(
  bpffs: string,
  name: string,
): { entries: number; capacity: number } | undefined {
  using map = openPinnedMap(bpffs, name);
  return map && { entries: map.keys().length, capacity: map.maxEntries };
}

/** Programs run on demand, not attached: the rate-limit flusher and the connection sweeps. */
const ON_DEMAND: ReadonlySet<string> = new Set([
  PROGRAMS.flushRates,
  PROGRAMS.sweepTcp,
  PROGRAMS.sweepUdp,
  PROGRAMS.listTcp,
  PROGRAMS.listUdp,
]);

/** The programs that run as hooks. */
export const HOOK_PROGRAMS: readonly string[] = Object.values(PROGRAMS).filter((name) =>
  !ON_DEMAND.has(name)
);

type XdpCount = { ifindex: number; action: number; packets: bigint };

/**
 * Packets the XDP program saw, by interface index and verdict, summed over CPUs: the per-CPU slots of
 * xdp_slots, and xdp_stats for an interface that found its slot taken on some CPU.
 */
export function pinnedXdpStats(bpffs: string): XdpCount[] {
  const counts: XdpCount[] = [];
  using slots = openPinnedMap(bpffs, "xdp_slots");
  for (let index = 0; slots && index < slots.definition.maxEntries; index++) {
    counts.push(...decodeXdpSlots(slots.lookup(encodeU32(index)) ?? new Uint8Array()));
  }
  using map = openPinnedMap(bpffs, "xdp_stats");
  for (const key of map?.keys() ?? []) {
    const value = map!.lookup(key);
    if (value) counts.push({ ...decodeXdpStatKey(key), packets: sumPerCpu(value) });
  }
  const total = new Map<string, XdpCount>();
  for (const count of counts) {
    const id = `${count.ifindex}:${count.action}`;
    const seen = total.get(id);
    if (seen) seen.packets += count.packets;
    else total.set(id, { ...count });
  }
  return [...total.values()].filter((count) => count.packets > 0n);
}

type RuleHit = { ruleId: number; decision: number; count: bigint };

/** Decisions per rule id of generation `gen`, summed over CPUs. */
export function pinnedRuleHits(bpffs: string, gen: number): RuleHit[] {
  using map = openPinnedMap(bpffs, "rule_hits");
  using slots = openPinnedMap(bpffs, "rule_hit_slots");
  return map ? ruleHitsOf(map, slots, gen) : [];
}

/**
 * Deny decisions of the rules of generation `gen` that `counts` takes, summed over CPUs; undefined when
 * nothing is pinned. The hooks count a decision only for a task in the rule set's scope, so these are the
 * denies of that rule set in its scope, and none of the other generation's.
 */
export function pinnedGenerationDenies(
  bpffs: string,
  gen: number,
  counts: (ruleId: number) => boolean,
): bigint | undefined {
  using map = openPinnedMap(bpffs, "rule_hits");
  using slots = openPinnedMap(bpffs, "rule_hit_slots");
  if (!map) return undefined;
  return ruleHitsOf(map, slots, gen)
    .filter((hit) => hit.decision === DECISION.DENY && counts(hit.ruleId))
    .reduce((sum, hit) => sum + hit.count, 0n);
}

/**
 * One count per rule and decision: rule_hits' entries, and the ingress decisions of rule_hit_slots (absent in
 * pins of an older build), where a rule may count on some CPUs and in rule_hits on others.
 */
function ruleHitsOf(map: FdMap, slots: FdMap | undefined, gen: number): RuleHit[] {
  const hits = new Map<string, RuleHit>();
  const add = (ruleId: number, decision: number, count: bigint) => {
    const id = `${ruleId}:${decision}`;
    const seen = hits.get(id);
    if (seen) seen.count += count;
    else hits.set(id, { ruleId, decision, count });
  };
  for (const key of map.keys()) {
    const hit = decodeRuleHitKey(key);
    const value = hit.gen === gen ? map.lookup(key) : undefined;
    if (value) add(hit.ruleId, hit.decision, sumPerCpu(value));
  }
  for (let index = 0; slots && index < slots.definition.maxEntries; index++) {
    const { gen: slotGen, decision } = ruleHitSlotOf(index);
    if (slotGen !== gen) continue;
    for (const { ruleId, count } of decodeRuleHitSlots(slots.lookup(encodeU32(index)) ?? new Uint8Array())) {
      add(ruleId, decision, count);
    }
  }
  return [...hits.values()];
}
