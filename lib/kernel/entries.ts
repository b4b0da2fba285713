import {
  ACTION,
  AEGIS_IFACE_SLOT,
  AEGIS_NET_KEY,
  AEGIS_RULE,
  AEGIS_RULE_KEY,
  CAPACITY,
  encodeGenInfo,
  EXEC_ALLOW,
  FAMILY,
  HOST_SHAPE,
  INGRESS_ABSENT,
  NET,
  NET_KEY_FULL_PREFIX,
  NET_KEY_HEAD_BITS,
  RULE,
  type RuleKey,
  type RuleValue,
  SCOPE,
  STAT_LIMITS,
  SUBJECTS,
  USER_PORTS,
  writeIfaceSlot,
  writeNetKey,
  WRITER_SCOPE,
  writeRule,
  writeRuleKey,
} from "../../ffi/mod.ts";
import type { DpkgTrust, UntrustedFile } from "../dpkg/trust.ts";
import { cidrContains, clearHostBits, unmapIpv4 } from "../policy/cidr.ts";
import { type CompileOptions, compilePolicy } from "../policy/compile.ts";
import { patternKey, patternShapes } from "../policy/host_name.ts";
import type { Policy } from "../policy/schema.ts";
import { windowClock } from "../policy/windows.ts";
import { DEFAULT_TTL_FLOOR } from "./learned.ts";
import {
  type EncodedNet,
  type HostRule,
  type NetRule,
  type NetRuleView,
  PORT_PROTOCOL_NUMBERS,
  PROTOCOL_NUMBER,
  type RuleSetPlan,
} from "../policy/plan.ts";

/** A plan with names resolved to what the kernel keys on. */
export type ResolvedRuleSet = {
  plan: RuleSetPlan;
  files: ResolvedInode[];
  exec: ResolvedInode[];
  /** With exec.default: deny: the inodes exec.allow resolved to (a hashed file's with its ctime stamp). */
  execAllow?: AllowedInode[];
  /** With exec.default: deny and a `trust` entry: what the package database gave and left untrusted. */
  trust?: TrustReport;
  /** files.protect: the protected inodes (files, and directories whose entries are fixed). */
  protect?: ResolvedInode[];
  scope: { include: bigint[]; exempt: bigint[] };
  interfaces: { ifindex: number; name: string; defaultDrop: boolean; ruleId: number }[];
  /** With network.egress.forwarded: the interfaces forwarded packets are judged on (all but lo). */
  forward?: { ifindex: number; name: string }[];
  /** The programs rules name (plan.subjects), each by every (dev, ino) its exe is known by. */
  subjects?: ResolvedSubject[];
};

/** What a `trust` entry resolved to: how many files it trusts, and the files it left untrusted. */
export type TrustReport = {
  source: "dpkg";
  ruleId: number;
  trusted: number;
  untrusted: UntrustedFile[];
  stats: DpkgTrust["stats"];
};

/** A program a rule names, resolved: the inode of its executable. */
export type ResolvedSubject = { subject: number; children: boolean; dev: number; ino: bigint; path: string };

/**
 * A file the rule set denies, and the path it was found at (recorded so that a replaced file shows);
 * `generation`: its i_generation where the filesystem shows one (allowed and protected inodes only).
 */
export type ResolvedInode = { dev: number; ino: bigint; ruleId: number; path?: string; generation?: number };

/** An inode exec.allow lets run; `ctimeNs`: a sha256 entry's file, as it was when hashed at apply. */
export type AllowedInode = ResolvedInode & { ctimeNs?: bigint };

/** One inner map's entries, back to back, ready for one batch write. */
export type Batch = {
  keys: Uint8Array<ArrayBuffer>;
  values: Uint8Array<ArrayBuffer>;
  count: number;
};

/**
 * The rule maps of a generation (each an outer map with one inner map per generation) and their capacity:
 * exact rules of every kind, the CIDR rules in a trie, and the CIDR rules of a whole address (/32, /128) in
 * a hash (splitNetEntries).
 */
export const RULE_MAPS = {
  rules: { keySize: AEGIS_RULE_KEY.size, capacity: CAPACITY.RULES },
  net_rules: { keySize: AEGIS_NET_KEY.size, capacity: CAPACITY.NET_RULES },
  net_exact: { keySize: AEGIS_NET_KEY.size, capacity: CAPACITY.NET_RULES },
} as const;
export type RuleMapName = keyof typeof RULE_MAPS;

/** A rule set larger than a rule map holds: nothing was written. */
export class CapacityError extends RangeError {
  override name = "CapacityError";
  constructor(readonly map: RuleMapName, readonly capacity: number, readonly count: number) {
    super(`Rule set needs ${count} entries in map ${map}, which holds at most ${capacity}`);
  }
}

/**
 * Every map entry of a rule set, with duplicate keys merged (deny beats allow on an exact tie), and the
 * gen_info value. Pure: the same rule set gives the same bytes. Throws CapacityError before anything is
 * written when a map cannot hold the set.
 */
export function ruleSetEntries(
  set: ResolvedRuleSet,
  capacity: Partial<Record<RuleMapName, number>> = {},
  /** The plan's `net_rules` entries when encoded already (`encodeNetRules`, for a write ahead). */
  net?: EncodedNet,
): Record<RuleMapName, Batch> & { genInfo: Uint8Array<ArrayBuffer>; ifaceSlots: Uint8Array<ArrayBuffer> } {
  const rules = new EntryTable(AEGIS_RULE_KEY.size);
  const exact = (key: RuleKey, value: RuleValue, deny = true) =>
    rules.put((target, offset) => writeRuleKey(target, offset, key), value, deny);
  for (const file of set.files) exact({ kind: RULE.FILE, a: file.ino, b: file.dev }, denyValue(file.ruleId));
  for (const exe of set.exec) exact({ kind: RULE.EXEC, a: exe.ino, b: exe.dev }, denyValue(exe.ruleId));
  if (set.plan.execDefaultDeny) {
    exact({ kind: RULE.EXEC_DEFAULT_DENY, a: 0, b: 0 }, denyValue(set.plan.execDefaultDeny.ruleId));
    // An inode a sha256 entry names is checked, whatever path entry names it too (as decide() says).
    // trust: dpkg's files are stamped as hashed ones are, and marked packaged: the package manager's replace
    // of one (an upgrade, renamed over it) is allowed unstamped until the next resolve stamps it.
    const packaged = new Set((set.plan.execTrust ?? []).map((trust) => trust.ruleId));
    for (const allowed of set.execAllow ?? []) {
      const hashed = allowed.ctimeNs !== undefined;
      const action = !hashed
        ? EXEC_ALLOW.INODE
        : packaged.has(allowed.ruleId)
        ? EXEC_ALLOW.PACKAGED
        : EXEC_ALLOW.HASHED;
      exact({ kind: RULE.EXEC_ALLOW, a: allowed.ino, b: allowed.dev }, {
        ruleId: allowed.ruleId,
        action,
        prefixLength: 0,
      }, hashed);
      if (hashed) {
        const stamp = { kind: RULE.EXEC_STAMP, a: allowed.ctimeNs!, b: Number(allowed.ino & 0xffffffffn) };
        exact(stamp, { ruleId: allowed.ruleId, action: ACTION.ALLOW, prefixLength: 0 }, false);
      }
      generationStamp(exact, allowed);
    }
  }
  for (const inode of set.protect ?? []) {
    exact({ kind: RULE.PROTECT, a: inode.ino, b: inode.dev }, denyValue(inode.ruleId));
    generationStamp(exact, inode);
  }
  // files.writers (and trust: dpkg's package manager): each writer's subject with what it may change (a
  // subject named twice may do what either entry gives), and the switch the protect and rename hooks read.
  const scopes = new Map<number, { ruleId: number; scope: number }>();
  for (const writer of set.plan.writers ?? []) {
    const scope = writer.allowedOnly ? WRITER_SCOPE.ALLOWED : WRITER_SCOPE.PROTECTED | WRITER_SCOPE.ALLOWED;
    const known = scopes.get(writer.subject);
    if (known) known.scope |= scope;
    else scopes.set(writer.subject, { ruleId: writer.ruleId, scope });
  }
  for (const [subject, { ruleId, scope }] of scopes) {
    exact({ kind: RULE.WRITER, a: subject, b: 0 }, { ruleId, action: scope, prefixLength: 0 }, false);
  }
  if ((set.plan.writers ?? []).length > 0) {
    exact({ kind: RULE.WRITERS, a: 0, b: 0 }, {
      ruleId: set.plan.writers![0]!.ruleId,
      action: ACTION.ALLOW,
      prefixLength: 0,
    }, false);
  }
  for (const id of set.scope.include) {
    exact({ kind: RULE.SCOPE, a: id, b: 0 }, { ruleId: 0, action: SCOPE.INCLUDE, prefixLength: 0 }, false);
  }
  // Exempt wins over include for the same cgroup: marked as a deny, which an include never replaces.
  for (const id of set.scope.exempt) {
    exact({ kind: RULE.SCOPE, a: id, b: 0 }, { ruleId: 0, action: SCOPE.EXEMPT, prefixLength: 0 });
  }
  for (const user of set.plan.egressUsers) {
    const byUid = user.uid !== undefined;
    const id = user.uid ?? user.gid;
    const action = user.portsAre === "allowed" ? USER_PORTS.ALLOWED : USER_PORTS.DENIED;
    const subject = user.subject ?? 0;
    exact({ kind: byUid ? RULE.USER_UID : RULE.USER_GID, a: subject, b: id }, {
      ruleId: user.ruleId,
      action,
      prefixLength: 0,
    });
    for (const port of user.ports) {
      exact(
        { kind: byUid ? RULE.USER_UID_PORT : RULE.USER_GID_PORT, a: subjectPort(subject, port), b: id },
        denyValue(user.ruleId),
      );
    }
  }
  const encoded = net ?? encodeNetRules(set.plan);
  // Subjects: the programs' inodes to their numbers, with what egress rules each has none of, and the switch
  // that makes the hooks read the task's exe (with what the rules naming no program have none of).
  const absent = subjectAbsentBits(set.plan, encoded);
  const subjects = set.subjects ?? [];
  for (const subject of subjects) {
    const kind = subject.children ? RULE.SUBJECT_TREE : RULE.SUBJECT;
    exact({ kind, a: subject.ino, b: subject.dev }, {
      ruleId: subject.subject,
      action: absent(subject.subject),
      prefixLength: 0,
    });
  }
  // The switch (gen_info): what the rules naming no program have none of, and whether ancestors are walked.
  const planSubjects = set.plan.subjects ?? [];
  const subjectSwitch = planSubjects.length > 0
    ? SUBJECTS.ON | (planSubjects.some((subject) => subject.children) ? SUBJECTS.TREE : 0) | absent(0)
    : 0;
  // Policy switches: one entry each, in the generation, so they flip with the rest of the policy.
  if (set.plan.denyMemfdExec) {
    exact({ kind: RULE.MEMFD_EXEC, a: 0, b: 0 }, denyValue(set.plan.denyMemfdExec.ruleId));
  }
  // The switch the hooks read first: without it, they never look a protected inode up.
  const protect = set.plan.protect ?? [];
  if (protect.length > 0) {
    exact({ kind: RULE.PROTECT_ON, a: 0, b: 0 }, denyValue(protect[0]!.ruleId));
  }
  if (set.plan.scopeGuard) {
    exact({ kind: RULE.SCOPE_GUARD, a: 0, b: 0 }, denyValue(set.plan.scopeGuard.ruleId));
  }
  if (set.plan.ptraceGuard) {
    exact({ kind: RULE.PTRACE_GUARD, a: 0, b: 0 }, denyValue(set.plan.ptraceGuard.ruleId));
  }
  if (set.plan.identityGuard) {
    exact({ kind: RULE.IDENTITY_GUARD, a: 0, b: 0 }, denyValue(set.plan.identityGuard.ruleId));
  }
  for (const rule of set.plan.bind) {
    const protocols = rule.protocol ? [PROTOCOL_NUMBER[rule.protocol]] : PORT_PROTOCOL_NUMBERS;
    for (const protocol of protocols) {
      exact(
        { kind: RULE.BIND, a: subjectPort(rule.subject ?? 0, rule.port), b: protocol },
        denyValue(rule.ruleId),
      );
    }
  }
  for (const rule of set.plan.ingress.failsafe) {
    const key = { kind: RULE.FAILSAFE, a: rule.port, b: PROTOCOL_NUMBER[rule.protocol] };
    exact(key, { ruleId: rule.ruleId, action: ACTION.ALLOW, prefixLength: 0 });
  }
  if (set.plan.denyPacketSockets) {
    exact({ kind: RULE.DENY_PACKET_SOCKETS, a: 0, b: 0 }, denyValue(set.plan.denyPacketSockets.ruleId));
  }
  if (set.plan.routeGuard) {
    exact({ kind: RULE.ROUTE_GUARD, a: 0, b: 0 }, denyValue(set.plan.routeGuard.ruleId));
  }
  if (set.plan.forwarded) {
    exact({ kind: RULE.FORWARDED, a: 0, b: 0 }, denyValue(set.plan.forwarded.ruleId));
  }
  for (const prefix of set.plan.nat64Prefixes ?? []) {
    const view = new DataView(prefix.buffer, prefix.byteOffset, 12);
    const key = { kind: RULE.NAT64_PREFIX, a: view.getBigUint64(0, true), b: view.getUint32(8, true) };
    exact(key, { ruleId: 0, action: ACTION.ALLOW, prefixLength: 96 }, false);
  }
  const hostEntries = rules.count;
  // Rules by name that name a program: (pattern, subject) -> a pair number, with the levels (port, protocol,
  // neither) its rules have none of, then (pair, port, protocol).
  const pairs = new Map<string, { key: RuleKey; pair: number; absent: number }>();
  for (const rule of set.plan.egressHosts ?? []) {
    const { wildcard, key: hostKey } = patternKey(rule.host);
    let kind: number = wildcard ? RULE.HOST_WILDCARD : RULE.HOST;
    let a: number | bigint = hostKey;
    if (rule.subject !== undefined) {
      const pairKey = `${rule.host} ${rule.subject}`;
      let pair = pairs.get(pairKey);
      if (pair === undefined) {
        const key = { kind: RULE.HOST_SUBJECT, a, b: rule.subject * 2 + (wildcard ? 1 : 0) };
        pair = { key, pair: pairs.size + 1, absent: PAIR_LEVELS };
        pairs.set(pairKey, pair);
      }
      pair.absent &= ~pairLevel(rule);
      kind = RULE.HOST_SUBJECT_RULE;
      a = pair.pair;
    }
    const value = {
      ruleId: rule.ruleId,
      action: rule.action === "allow" ? ACTION.ALLOW : ACTION.DENY,
      prefixLength: 0,
    };
    // As a port rule of the trie: one with a port and no protocol stands for every protocol with ports.
    const protocols = rule.protocol
      ? [PROTOCOL_NUMBER[rule.protocol]]
      : rule.port === undefined
      ? [ANY_PROTOCOL]
      : PORT_PROTOCOL_NUMBERS;
    for (const protocol of protocols) {
      exact(
        { kind, a, b: (rule.port ?? 0) * 256 + protocol },
        value,
        rule.action !== "allow",
      );
    }
  }
  for (const { key, pair, absent } of pairs.values()) {
    exact(key, { ruleId: pair, action: absent, prefixLength: 0 }, false);
  }
  // What the DNS answer parser looks an answer's names up by (bpf/dns_learn.bpf.h): each pattern once,
  // whatever its rules' ports, with the TTL floor of what it learns for it.
  const patterns = new Set((set.plan.egressHosts ?? []).map((rule) => rule.host));
  const floor = set.plan.nameTtlFloor ?? DEFAULT_TTL_FLOOR;
  for (const pattern of patterns) {
    const { wildcard, key: hostKey } = patternKey(pattern);
    const key = { kind: RULE.HOST_PATTERN, a: hostKey, b: wildcard ? 1 : 0 };
    exact(key, { ruleId: floor, action: ACTION.ALLOW, prefixLength: 0 }, false);
  }
  const shapes = patternShapes(patterns);
  // The levels (port, protocol, neither) the rules by name naming no program have none of.
  let levels = PAIR_LEVELS;
  for (const rule of set.plan.egressHosts ?? []) {
    if (rule.subject === undefined) levels &= ~pairLevel(rule);
  }
  const hostRules = rules.count === hostEntries
    ? 0
    : HOST_SHAPE.HOST_ANY | (shapes.exact ? HOST_SHAPE.HOST_EXACT : 0) | shapes.wildcardLabels |
      levels << HOST_SHAPE.HOST_LEVELS_SHIFT;
  for (const iface of set.interfaces) {
    exact({ kind: RULE.IFACE, a: 0, b: iface.ifindex }, ifaceValue(iface));
  }
  const batches = { rules: rules.batch(), ...splitNetEntries(encoded) };
  for (const name of Object.keys(RULE_MAPS) as RuleMapName[]) {
    const limit = Math.min(capacity[name] ?? RULE_MAPS[name].capacity, RULE_MAPS[name].capacity);
    if (batches[name].count > limit) throw new CapacityError(name, limit, batches[name].count);
  }
  const genInfo = encodeGenInfo({
    enforce: set.plan.mode === "enforce",
    scopeInclude: set.scope.include.length,
    scopeExempt: set.scope.exempt.length,
    // Users entries and programs of network rules: non-zero when an egress decision must look at the task.
    taskRules: set.plan.egressUsers.length + networkSubjects(set.plan),
    ingressPortDenies: encoded.ingressPortDenies,
    rulesEntries: batches.rules.count,
    netRulesEntries: batches.net_rules.count,
    failsafeAbsent: failsafeAbsentBits(set.plan.ingress.failsafe.map((rule) => rule.port)),
    hostRules,
    ingressAbsent: ingressAbsentBits(encoded.keys, encoded.count),
    egressAbsent: egressAbsentBits(encoded.keys, encoded.count),
    netExactEntries: batches.net_exact.count,
    subjectSwitch,
  });
  return { ...batches, genInfo, ifaceSlots: ifaceSlots(set.interfaces) };
}

/** An interface's AEGIS_RULE_IFACE value: its default verdict and the rule that reports it. */
function ifaceValue(iface: ResolvedRuleSet["interfaces"][number]): RuleValue {
  return { ruleId: iface.ruleId, action: iface.defaultDrop ? ACTION.DENY : ACTION.ALLOW, prefixLength: 0 };
}

/**
 * The generation's ingress_ifaces values, slot by slot (ifindex % XDP_STAT_SLOTS): each interface in the slot
 * its index falls on where it is the first of the rule set there, with the value of its AEGIS_RULE_IFACE entry
 * (the first entry of an interface listed twice, as the rules map keeps); 0 (none) in every other slot, so
 * that no slot keeps an interface of an earlier rule set.
 */
export function ifaceSlots(interfaces: ResolvedRuleSet["interfaces"]): Uint8Array<ArrayBuffer> {
  const slots = STAT_LIMITS.XDP_STAT_SLOTS;
  const bytes = new Uint8Array(slots * AEGIS_IFACE_SLOT.size);
  const taken = new Set<number>();
  for (const iface of interfaces) {
    const slot = iface.ifindex % slots;
    if (taken.has(slot)) continue;
    taken.add(slot);
    writeIfaceSlot(bytes, slot * AEGIS_IFACE_SLOT.size, iface.ifindex, ifaceValue(iface));
  }
  return bytes;
}

/**
 * The i_generation an allowed or protected inode had at apply (AEGIS_RULE_INODE_GEN), where its filesystem
 * shows one; two rules of one inode write the same value.
 */
function generationStamp(
  exact: (key: RuleKey, value: RuleValue, deny?: boolean) => void,
  inode: ResolvedInode,
): void {
  if (inode.generation === undefined) return;
  exact({ kind: RULE.INODE_GEN, a: inode.ino, b: inode.dev }, {
    ruleId: inode.generation,
    action: ACTION.ALLOW,
    prefixLength: 0,
  }, false);
}

/**
 * What egress rules each subject (0: the rules naming no program) has none of, as the AEGIS_SUBJECT_NO_* bits
 * of its entry: its CIDR rules read from the encoded `net_rules` keys (space = subject << 16 | space << 8 |
 * family), its rules by name and users entries from the plan. An egress decision skips their lookups.
 */
export function subjectAbsentBits(plan: RuleSetPlan, encoded: EncodedNet): (subject: number) => number {
  const net = new Set<number>();
  const spaceAt = AEGIS_NET_KEY.fields.space.offset;
  const keys = encoded.keys;
  for (let i = 0; i < encoded.count; i++) {
    const at = i * AEGIS_NET_KEY.size + spaceAt;
    const space = keys[at + 1]!;
    if (space === NET.EGRESS_PORT || space === NET.EGRESS_ANY) net.add(keys[at + 2]! | keys[at + 3]! << 8);
  }
  const names = new Set((plan.egressHosts ?? []).map((rule) => rule.subject ?? 0));
  const users = new Set(plan.egressUsers.map((user) => user.subject ?? 0));
  return (subject) =>
    (net.has(subject) ? 0 : SUBJECTS.NO_NET) | (names.has(subject) ? 0 : SUBJECTS.NO_NAMES) |
    (users.has(subject) ? 0 : SUBJECTS.NO_USERS);
}

/** Every level of a pattern's rules (AEGIS_SUBJECT_PAIR_NO_*): a pair's `absent` before its rules are seen. */
const PAIR_LEVELS = SUBJECTS.PAIR_NO_PORT | SUBJECTS.PAIR_NO_PROTOCOL | SUBJECTS.PAIR_NO_ANY;

/** The level of a rule by name (AEGIS_SUBJECT_PAIR_NO_* bit): a port, else a protocol, else neither. */
function pairLevel(rule: HostRule): number {
  return rule.port !== undefined
    ? SUBJECTS.PAIR_NO_PORT
    : rule.protocol !== undefined
    ? SUBJECTS.PAIR_NO_PROTOCOL
    : SUBJECTS.PAIR_NO_ANY;
}

/** Subjects that network rules name (a writer's alone makes no egress decision look at the task). */
function networkSubjects(plan: RuleSetPlan): number {
  // CIDR rules encoded without their subjects kept: every subject counts, as before writers.
  if (plan.encodedNet && !plan.encodedNet.egressSubjects) return plan.subjects?.length ?? 0;
  const writers = new Set((plan.writers ?? []).map((writer) => writer.subject));
  const network = new Set<number>(plan.encodedNet?.egressSubjects);
  for (const rule of plan.egress) if (rule.subject !== undefined) network.add(rule.subject);
  for (const rule of plan.bind) if (rule.subject !== undefined) network.add(rule.subject);
  for (const rule of plan.egressUsers) if (rule.subject !== undefined) network.add(rule.subject);
  for (const rule of plan.egressHosts ?? []) if (rule.subject !== undefined) network.add(rule.subject);
  return (plan.subjects ?? []).filter((subject) =>
    network.has(subject.subject) || !writers.has(subject.subject)
  )
    .length;
}

/**
 * The gen_info word that tells XDP which ports cannot be failsafe: bit (port & 31) set where no failsafe
 * port has those low five bits. A packet about to be refused skips the failsafe lookup when its port's bit
 * is set (a flood to a port far from every failsafe port). Inverted so that 0, the word an older release
 * left, means "look every port up".
 */
export function failsafeAbsentBits(ports: readonly number[]): number {
  return ~ports.reduce((bits, port) => bits | 1 << (port & 31), 0) >>> 0;
}

/**
 * The gen_info word that tells XDP which lookups of a packet cannot match: INGRESS_ABSENT bits for the shapes
 * of ingress rule none of the `count` encoded `net_rules` keys has (a port, a protocol without a port, neither).
 * Read from the keys themselves, so that a plan encoded ahead (`encodedNet`) gives the same word. Inverted so
 * that 0, the word an older release left, looks every shape up.
 */
export function ingressAbsentBits(keys: Uint8Array, count: number): number {
  return absentBits(keys, count, NET.INGRESS_PORT, NET.INGRESS_ANY);
}

/** ingressAbsentBits for the egress spaces, over every subject's rules (gen_info.egress_absent). */
export function egressAbsentBits(keys: Uint8Array, count: number): number {
  return absentBits(keys, count, NET.EGRESS_PORT, NET.EGRESS_ANY);
}

function absentBits(keys: Uint8Array, count: number, portSpace: number, anySpace: number): number {
  const size = AEGIS_NET_KEY.size;
  const space = AEGIS_NET_KEY.fields.space.offset;
  const protocol = AEGIS_NET_KEY.fields.protocol.offset;
  const view = new DataView(keys.buffer, keys.byteOffset, keys.byteLength);
  let present = 0;
  for (let offset = 0; offset < count * size; offset += size) {
    // space = subject << 16 | AEGIS_NET_* << 8 | family (ingress rules name no subject).
    const kind = (view.getUint32(offset + space, true) >>> 8) & 0xff;
    if (kind === portSpace) present |= INGRESS_ABSENT.NO_PORT;
    else if (kind === anySpace) {
      present |= keys[offset + protocol] === ANY_PROTOCOL
        ? INGRESS_ABSENT.NO_ANY
        : INGRESS_ABSENT.NO_PROTOCOL;
    }
  }
  const all = INGRESS_ABSENT.NO_PORT | INGRESS_ABSENT.NO_PROTOCOL | INGRESS_ABSENT.NO_ANY;
  return all & ~present;
}

const ANY_PROTOCOL = 0;

/**
 * The `net_rules` entries of a plan's CIDR rules (duplicates merged as in `ruleSetEntries`); a plan that
 * carries them already encoded (`encodedNet`) gives those.
 */
export function encodeNetRules(plan: RuleSetPlan): EncodedNet {
  if (plan.encodedNet) return plan.encodedNet;
  const net = new EntryTable(AEGIS_NET_KEY.size, plan.egress.length + plan.ingress.rules.length);
  for (const rule of plan.egress) addEgressNetRule(net, rule);
  if (plan.egressDefaultDeny) addDefaultDeny(net, plan.egress, plan.egressDefaultDeny.ruleId);
  return withIngress(net, plan, plan.egress.length);
}

/** An egress CIDR rule's entries, in the spaces of its subject (none: the rules naming no program). */
function addEgressNetRule(net: EntryTable, rule: NetRuleView): void {
  const shift = (rule.subject ?? 0) << 8;
  addNetRule(net, rule, shift | NET.EGRESS_PORT, shift | NET.EGRESS_ANY);
}

/** The entries of `net` (its egress rules added) with the plan's ingress rules added last, and the counts. */
function withIngress(net: EntryTable, plan: RuleSetPlan, egressRules: number): EncodedNet {
  const ingress = plan.ingress.rules;
  for (const rule of ingress) addNetRule(net, rule, NET.INGRESS_PORT, NET.INGRESS_ANY);
  return {
    ...net.batch(),
    egressRules,
    ingressRules: ingress.length,
    ingressPortDenies: ingress.filter((rule) => rule.action === "deny" && rule.port !== undefined).length,
  };
}

/**
 * compilePolicy, with the egress CIDR rules encoded into their `net_rules` entries as they are compiled
 * (`plan.encodedNet`, `plan.egress` empty): the same entries encodeNetRules makes of the plain plan, with no
 * object per rule on the way (a fleet's 100,000 rules cost their entries' bytes). The ingress rules stay in
 * the plan as well. For what puts a plan in the kernel (`policy apply`, rollback), not for what decides on
 * it (lint, explain, simulate): those read `plan.egress`. A policy with `network.egress.default: deny` is
 * compiled plainly: its default's entries and its lock-out check read every egress rule.
 */
export function compileEncoded(policy: Policy, options: Omit<CompileOptions, "egressNet"> = {}): RuleSetPlan {
  const egress = policy.spec.network?.egress;
  if (egress?.default === "deny") return compilePolicy(policy, options);
  const net = new EntryTable(AEGIS_NET_KEY.size, (egress?.deny?.length ?? 0) + (egress?.allow?.length ?? 0));
  const subjects = new Set<number>();
  let egressRules = 0;
  const plan = compilePolicy(policy, {
    ...options,
    egressNet: (rule) => {
      egressRules++;
      if (rule.subject !== undefined) subjects.add(rule.subject);
      addEgressNetRule(net, rule);
    },
  });
  plan.encodedNet = {
    ...withIngress(net, plan, egressRules),
    egressSubjects: [...subjects].sort((a, b) => a - b),
  };
  return plan;
}

/** compileEncoded at this moment: rules outside their time window left out (what compileForNow gives). */
export function compileEncodedForNow(policy: Policy): RuleSetPlan {
  return compileEncoded(policy, { now: windowClock() });
}

const ADDR_OFFSET = AEGIS_NET_KEY.fields.addr.offset;
const PREFIX_OFFSET = AEGIS_NET_KEY.fields.prefixlen.offset;
const SPACE_OFFSET = AEGIS_NET_KEY.fields.space.offset;

/**
 * The encoded CIDR entries split by where the kernel holds them: a rule of a whole address (/32, /128) in the
 * `net_exact` hash, keyed as every hook looks up (the full prefix length; the bytes past an IPv4 address are
 * zero, as writeNetKey leaves them), the rest in the `net_rules` trie as encoded. The hooks ask the hash
 * first: a whole address is the longest prefix there is. The hash takes 100,000 entries in about a third of
 * the trie's time.
 */
export function splitNetEntries(encoded: Batch): { net_rules: Batch; net_exact: Batch } {
  const known = splits.get(encoded);
  if (known) return known;
  const keySize = AEGIS_NET_KEY.size;
  const valueSize = AEGIS_RULE.size;
  const { keys, values, count } = encoded;
  const view = new DataView(keys.buffer, keys.byteOffset, keys.byteLength);
  const isExact = (i: number) =>
    view.getUint32(i * keySize + PREFIX_OFFSET, true) ===
      NET_KEY_HEAD_BITS + (keys[i * keySize + SPACE_OFFSET] === FAMILY.IPV4 ? 32 : 128);
  // Runs of entries bound for the same map, each copied at once (a fleet's blocklist is one run).
  const runs: { exact: boolean; from: number; to: number }[] = [];
  let exactCount = 0;
  for (let i = 0; i < count; i++) {
    const exact = isExact(i);
    if (exact) exactCount++;
    const last = runs[runs.length - 1];
    if (last && last.exact === exact) last.to = i + 1;
    else runs.push({ exact, from: i, to: i + 1 });
  }
  let split: { net_rules: Batch; net_exact: Batch };
  if (exactCount === 0) split = { net_rules: encoded, net_exact: { keys: EMPTY, values: EMPTY, count: 0 } };
  else {
    const batch = (entries: number) => ({
      keys: new Uint8Array(entries * keySize),
      values: new Uint8Array(entries * valueSize),
      count: 0,
    });
    split = { net_rules: batch(count - exactCount), net_exact: batch(exactCount) };
    for (const { exact, from, to } of runs) {
      const into = exact ? split.net_exact : split.net_rules;
      into.keys.set(keys.subarray(from * keySize, to * keySize), into.count * keySize);
      into.values.set(values.subarray(from * valueSize, to * valueSize), into.count * valueSize);
      into.count += to - from;
    }
    const exactKeys = new DataView(split.net_exact.keys.buffer);
    for (let i = 0; i < exactCount; i++) {
      exactKeys.setUint32(i * keySize + PREFIX_OFFSET, NET_KEY_FULL_PREFIX, true);
    }
  }
  splits.set(encoded, split);
  return split;
}

/** Each encoded batch's split, made once: the write ahead and the stage of the same plan both ask. */
const splits = new WeakMap<Batch, { net_rules: Batch; net_exact: Batch }>();

const EMPTY = new Uint8Array(0);

// Reused for every rule: encoding 100,000 rules allocates nothing per rule (the garbage was most of the time).
const scratchKey = {
  space: 0,
  family: 4 as 4 | 6,
  protocol: ANY_PROTOCOL,
  port: 0,
  addr: new Uint8Array(4) as Uint8Array<ArrayBuffer>,
  prefixLength: 0,
};
const scratchValue: RuleValue = { ruleId: 0, action: 0, prefixLength: 0 };
const ONE_PROTOCOL = [0];
const ANY_PROTOCOLS = [ANY_PROTOCOL];

function addNetRule(
  table: EntryTable,
  rule: NetRuleView,
  portSpace: number,
  anySpace: number,
  rank?: number,
): void {
  let protocols: readonly number[];
  if (rule.protocol !== undefined) {
    ONE_PROTOCOL[0] = PROTOCOL_NUMBER[rule.protocol];
    protocols = ONE_PROTOCOL;
  } else protocols = rule.port === undefined ? ANY_PROTOCOLS : PORT_PROTOCOL_NUMBERS;
  const cidr = unmapIpv4(rule);
  const deny = rule.action !== "allow";
  scratchValue.ruleId = rule.ruleId;
  scratchValue.action = deny ? ACTION.DENY : ACTION.ALLOW;
  scratchValue.prefixLength = rank ?? cidr.prefixLength;
  const key = scratchKey;
  key.space = rule.port === undefined ? anySpace : portSpace;
  key.family = cidr.family;
  key.port = rule.port ?? 0;
  key.addr = cidr.addr;
  key.prefixLength = cidr.prefixLength;
  const hostBits = cidr.prefixLength < cidr.addr.length * 8;
  for (const protocol of protocols) {
    key.protocol = protocol;
    const offset = table.nextKey();
    const target = table.keys;
    writeNetKey(target, offset, key);
    // Host bits cleared, so that 10.1.2.3/8 and 10.0.0.0/8 are the same key.
    if (hostBits) {
      clearHostBits(
        target.subarray(offset + ADDR_OFFSET, offset + ADDR_OFFSET + cidr.addr.length),
        key.prefixLength,
      );
    }
    // The default never replaces a rule of the same key: it is the least specific of all.
    table.commit(scratchValue, deny && rank === undefined);
  }
}

/** The `a` of a port entry of a subject (users ports, bind rules): port | subject << 16. */
function subjectPort(subject: number, port: number): number {
  return subject * 0x10000 + port;
}

/**
 * network.egress.default: deny as entries of the rule-less space: every network but loopback (127.0.0.0/8,
 * ::1) in the fewest CIDRs, each reported as the default and ranked least specific of all (the value's
 * prefix length 0: a rule of any length beats it, as if it were 0.0.0.0/0 and ::/0). A family whose rules
 * name the whole of it with no port nor protocol (0.0.0.0/0, ::/0) needs none: that rule decides, loopback
 * included.
 */
function addDefaultDeny(table: EntryTable, egress: readonly NetRule[], ruleId: number): void {
  for (const family of [4, 6] as const) {
    const whole = egress.some((rule) =>
      rule.family === family && rule.prefixLength === 0 && rule.subject === undefined &&
      rule.port === undefined && rule.protocol === undefined
    );
    if (whole) continue;
    // The rules a network's entry would hide from the trie's longest-prefix lookup: those of the same
    // space (no port, no protocol, no exe) that are less specific and contain it.
    const around = egress.filter((rule) =>
      rule.family === family && rule.subject === undefined && rule.port === undefined &&
      rule.protocol === undefined
    );
    for (const cidr of defaultDenyNetworks(family)) {
      const chunk = { family, addr: cidr.addr, prefixLength: cidr.prefixLength };
      const inner = around.filter((rule) =>
        rule.prefixLength < cidr.prefixLength && cidrContains(rule, chunk)
      )
        .sort((a, b) => b.prefixLength - a.prefixLength || (a.action === "deny" ? -1 : 1))[0];
      // Such a rule decides the network's addresses as it would have: its value, its specificity.
      const rule: NetRule = inner
        ? { ...inner, addr: cidr.addr, prefixLength: cidr.prefixLength }
        : { ruleId, action: "deny", family, addr: cidr.addr, prefixLength: cidr.prefixLength };
      addNetRule(table, rule, NET.EGRESS_PORT, NET.EGRESS_ANY, inner ? inner.prefixLength : 0);
    }
  }
}

/** Every network of `family` but loopback, as CIDRs: the complement of 127.0.0.0/8, or of ::1/128. */
export function defaultDenyNetworks(
  family: 4 | 6,
): { addr: Uint8Array<ArrayBuffer>; prefixLength: number }[] {
  const loopback = family === 4 ? [127, 0, 0, 0] : [...new Array(15).fill(0), 1];
  const length = family === 4 ? 8 : 128;
  const networks = [];
  // At each bit of the loopback prefix, the sibling network (that bit flipped, the rest zero).
  for (let bit = 0; bit < length; bit++) {
    const addr = new Uint8Array(loopback.length);
    for (let i = 0; i < bit; i++) {
      if (loopback[i >> 3]! & (0x80 >> (i & 7))) addr[i >> 3]! |= 0x80 >> (i & 7);
    }
    if (!(loopback[bit >> 3]! & (0x80 >> (bit & 7)))) addr[bit >> 3]! |= 0x80 >> (bit & 7);
    networks.push({ addr, prefixLength: bit + 1 });
  }
  return networks;
}

function denyValue(ruleId: number): RuleValue {
  return { ruleId, action: ACTION.DENY, prefixLength: 0 };
}

/**
 * Entries by key bytes, written straight into one growing buffer of keys and one of values; the first entry
 * of a key stays unless a later deny meets an earlier allow. Keys are found through an open-addressing table
 * of entry numbers by their 32-bit FNV-1a hash and compared in place: no object, array or closure per key
 * (100,000 small arrays cost hundreds of MB, and a Map of them most of the time).
 */
class EntryTable {
  readonly #keySize: number;
  #keys = new Uint8Array(0);
  #values = new Uint8Array(0);
  #deny = new Uint8Array(0);
  #count = 0;
  /** `#keys` as 32-bit words (keys are whole words and start on one): hashed and compared a word at a time. */
  #words = new Int32Array(0);
  /** Entry number + 1 by hash slot (0: empty); its size a power of two, at most half full. */
  #slots = new Int32Array(64);

  /** `expected`: the entries it will most likely hold, made room for at once (no growing, no rehashing). */
  constructor(keySize: number, expected = 0) {
    if (keySize % 4 !== 0) throw new Error(`EntryTable: a key of ${keySize} bytes is not whole 32-bit words`);
    this.#keySize = keySize;
    if (expected > 0) {
      this.#reserve(expected);
      this.#slots = new Int32Array(2 ** Math.ceil(Math.log2(Math.max(64, expected * 2 + 1))));
    }
  }

  /** The key buffer (valid until the next `nextKey`): write the next key at the offset it gives. */
  get keys(): Uint8Array<ArrayBuffer> {
    return this.#keys;
  }

  /** Makes room for one more entry and returns the offset in `keys` where its key is to be written. */
  nextKey(): number {
    this.#reserve(this.#count + 1);
    return this.#count * this.#keySize;
  }

  /** Adds the key written at `nextKey()` with `value`, or merges it into the entry of the same key. */
  commit(value: RuleValue, deny: boolean): void {
    const mask = this.#slots.length - 1;
    let slot = this.#hash(this.#count) & mask;
    for (;;) {
      const held = this.#slots[slot]!;
      if (held === 0) break;
      if (this.#sameKey(held - 1, this.#count)) {
        const index = held - 1;
        // Deny beats allow on a tie; otherwise the first rule in plan order keeps the key (as decide() says).
        if (this.#deny[index] || !deny) return;
        writeRule(this.#values, index * AEGIS_RULE.size, value);
        this.#deny[index] = 1;
        return;
      }
      slot = (slot + 1) & mask;
    }
    writeRule(this.#values, this.#count * AEGIS_RULE.size, value);
    this.#deny[this.#count] = deny ? 1 : 0;
    this.#slots[slot] = ++this.#count;
    if (this.#count * 2 > this.#slots.length) this.#rehash();
  }

  put(
    writeKey: (target: Uint8Array<ArrayBuffer>, offset: number) => void,
    value: RuleValue,
    deny: boolean,
  ): void {
    const offset = this.nextKey(); // first: it may grow the key buffer
    writeKey(this.#keys, offset);
    this.commit(value, deny);
  }

  /** Entries held (merged keys once). */
  get count(): number {
    return this.#count;
  }

  batch(): Batch {
    return {
      keys: this.#keys.slice(0, this.#count * this.#keySize),
      values: this.#values.slice(0, this.#count * AEGIS_RULE.size),
      count: this.#count,
    };
  }

  #reserve(entries: number): void {
    if (entries * this.#keySize <= this.#keys.byteLength) return;
    const grown = Math.max(64, this.#count === 0 ? entries : entries * 2);
    const keys = new Uint8Array(grown * this.#keySize);
    keys.set(this.#keys);
    const values = new Uint8Array(grown * AEGIS_RULE.size);
    values.set(this.#values);
    const deny = new Uint8Array(grown);
    deny.set(this.#deny);
    this.#keys = keys;
    this.#words = new Int32Array(keys.buffer);
    this.#values = values;
    this.#deny = deny;
  }

  #rehash(): void {
    const slots = new Int32Array(this.#slots.length * 2);
    const mask = slots.length - 1;
    for (let index = 0; index < this.#count; index++) {
      let slot = this.#hash(index) & mask;
      while (slots[slot] !== 0) slot = (slot + 1) & mask;
      slots[slot] = index + 1;
    }
    this.#slots = slots;
  }

  #sameKey(a: number, b: number): boolean {
    const size = this.#keySize >> 2;
    const words = this.#words;
    for (let i = 0; i < size; i++) if (words[a * size + i] !== words[b * size + i]) return false;
    return true;
  }

  /** The key of entry `index` hashed a word at a time (FNV-1a's step per word, then a final mix). */
  #hash(index: number): number {
    const size = this.#keySize >> 2;
    const words = this.#words;
    let hash = 0x811c9dc5;
    for (let i = index * size; i < (index + 1) * size; i++) hash = Math.imul(hash ^ words[i]!, 0x01000193);
    hash ^= hash >>> 15;
    hash = Math.imul(hash, 0x2c1b3c6d);
    return (hash ^ (hash >>> 12)) >>> 0;
  }
}
