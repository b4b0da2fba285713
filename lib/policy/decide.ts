/**
 * The decision the kernel takes for an event under a plan, computed without a kernel. This is the contract
 * the BPF programs implement (and the oracle of the differential test), so every rule below is the
 * kernel's:
 *
 * - A network rule is matched by the most specific key: the longest prefix; at equal length a rule with a
 *   port beats a port-less one naming a protocol, which beats a port-less one naming none. Rules with the
 *   same key (same network, port and protocol) merge: deny beats allow, else the first rule in plan order.
 * - A rule with a port and no protocol matches TCP, UDP, UDP-Lite, SCTP and DCCP; a port-less rule without a protocol
 *   matches every protocol. A destination (or source) `::ffff:a.b.c.d` is matched as IPv4.
 * - Egress: a winning allow means no rule. With no deny, the users entry of the uid, else of the gid,
 *   decides by destination port. A deny then applies only in scope.
 * - Subjects (rules with `exe`, for TCP and UDP egress and every bind): a task's subjects are, in this order, its own exe's (children: false,
 *   then children: true), then those of its ancestors' exes named with children: true, nearest first; at
 *   most four. The most specific rule wins among the rules of its subjects and the rules naming no
 *   program; at equal specificity (same prefix length, port and protocol level) the earlier subject wins,
 *   and a rule naming no program comes last. Users entries: the first subject (in that order) with an
 *   entry for the uid, else the gid, decides; then the entries naming no program. Bind: a rule naming no
 *   program, else the first subject's.
 * - network.egress.default: deny: a destination view no rule matches is denied by the default, except
 *   loopback (127.0.0.0/8, ::1); a rule for 0.0.0.0/0 (or ::/0) with no port nor protocol and no exe takes
 *   the default's place for its family, loopback included.
 * - Names (egress rules with `host`): an address learned for a name (the `learned` table: names resolved
 *   at apply and refreshed) is decided by the rules of the most specific pattern covering the name (the
 *   name itself, else the longest wildcard), matched by port and protocol as CIDR rules are, wherever no
 *   CIDR rule of the address itself (a /32 or /128) matches: a name beats every shorter CIDR rule and the
 *   default, and the address's own CIDR rule beats the name (whichever program either names). Among the
 *   pattern's rules, subjects rank as among CIDR rules: the most specific level (port, then protocol, then
 *   neither) wins, at equal level the earlier subject, a rule naming no program last; a rule by name with
 *   `exe` decides only TCP and UDP connects and sends of its subjects, as a CIDR rule with `exe` does. An
 *   expired entry decides nothing. (A deny by name without port, protocol or exe also drops the name's DNS
 *   queries at the packet backstop: decided by the question a packet carries, which no event here holds,
 *   so not modelled.)
 * - Forwarded packets (network.egress.forwarded): the egress CIDR rules alone; no users entry, no scope.
 * - Bind: (port, protocol) exactly, then scope. Ingress: only the plan's interfaces; failsafe ports pass
 *   first; then the most specific rule; else the interface default. Scope does not apply to packets.
 * - File and exec: the rules whose inode the file has (the first in plan order reports), then scope.
 * - Exec with exec.default: deny: where no exec.deny rule decides, a file that no exec.allow entry names
 *   (or that has no name: memfd, deleted) is refused as `untrusted` by the exec.default rule; one a sha256
 *   entry names is refused as `hash-mismatch` by that entry once its content changed since apply. A `trust`
 *   entry allows the inodes it resolved to (event `ruleIds`; by path alone it names no file), each checked
 *   as a sha256 entry's file is (after the sha256 entries, before the path entries). Then scope.
 * - A write (files.protect): the protect rules whose inode the file has, by path the entry's own path or
 *   one below a recursive entry; for an entry change (create, unlink, rename, link), also the directory it
 *   is made in when an entry names that directory. Reading and running are never a write. Then scope.
 *   Then the writers (files.writers): a task one of whose subjects (as above) is a writer's is allowed,
 *   and the decision names the writer (`writer`), the first in subject order.
 */
import { type Cidr, cidrContains, parseCidr, unmapIpv4 } from "./cidr.ts";
import { canonicalHost, hostCovers } from "./host_name.ts";
import {
  type InodeTarget,
  type Mode,
  type NetRule,
  PORT_PROTOCOL_NUMBERS,
  PROTOCOL_NUMBER,
  type RuleSetPlan,
  type UserRule,
} from "./plan.ts";

export type IpProtocol = "tcp" | "udp" | "udplite" | "sctp" | "dccp" | "icmp" | "icmpv6" | number;

const IP_PROTOCOL: Record<Exclude<IpProtocol, number>, number> = {
  ...PROTOCOL_NUMBER,
  udplite: 136,
  sctp: 132,
  dccp: 33,
  icmp: 1,
  icmpv6: 58,
};

/** An address as text (`10.0.0.1`, `2001:db8::1`, `::ffff:10.0.0.1`) or bytes (4 or 16). */
export type Address = string | Uint8Array;

export type DecisionEvent =
  | {
    area: "egress";
    addr: Address;
    port?: number;
    protocol: IpProtocol;
    uid?: number;
    gid?: number;
    /** The task's cgroup v2 path, e.g. /system.slice/nginx.service; absent: the root. */
    cgroup?: string;
  } & TaskProgram
  | { area: "bind"; port: number; protocol: IpProtocol; cgroup?: string } & TaskProgram
  | { area: "ingress"; interface: string; addr: Address; port?: number; protocol: IpProtocol }
  /** A packet the host forwards (network.egress.forwarded): the egress CIDR rules alone, no task. */
  | { area: "forward"; addr: Address; port?: number; protocol: IpProtocol }
  | {
    area: "file" | "exec";
    /** The rule ids whose targets resolved to the file's inode; or else `path`, matched by name. */
    ruleIds?: readonly number[];
    path?: string;
    cgroup?: string;
    /** Exec: the file changed since apply (a sha256 entry no longer holds). */
    changed?: boolean;
    /** Exec: the file has no name in any directory (memfd, O_TMPFILE, deleted). */
    nameless?: boolean;
  }
  | {
    area: "write";
    op: WriteOp;
    /** The program that writes and its ancestors', for files.writers. */
    exe?: string;
    ancestors?: readonly string[];
    /** The rule ids whose targets resolved to the inode written (or the directory changed); else `path`. */
    ruleIds?: readonly number[];
    /** The file written, or the entry made, removed or renamed. */
    path?: string;
    cgroup?: string;
  };

/** What a file.write event tried (lib/kernel/events.ts FILE_WRITE_OPS). */
export type WriteOp =
  | "open-write"
  | "truncate"
  | "unlink"
  | "rename"
  | "link"
  | "setattr"
  | "setxattr"
  | "removexattr"
  | "create"
  | "mount";

/** The operations that change a directory's entries: decided by the directory too. */
const ENTRY_OPS: ReadonlySet<WriteOp> = new Set(["create", "unlink", "rename", "link"]);

/** The program a task runs and those of its ancestors, by path (as the plan's subjects name them). */
export type TaskProgram = {
  /** The task's executable, e.g. /usr/bin/curl. */
  exe?: string;
  /** The executables of its parent, grandparent, ...: nearest first. */
  ancestors?: readonly string[];
};

/** Subjects one task holds at most (AEGIS_SUBJECT_SLOTS). */
const SUBJECT_SLOTS = 4;

/** Why an exec was refused: an exec.deny rule, not in the allowed set, or a sha256 entry's file changed. */
export type ExecReason = "denied" | "untrusted" | "hash-mismatch";

export type Decision = {
  decision: "allow" | "deny" | "audit";
  ruleId?: number;
  ruleName?: string;
  /** Exec decisions only. */
  reason?: ExecReason;
  /** A write a protect rule would refuse, allowed because the task is a trusted writer: that entry. */
  writer?: { ruleId: number; ruleName?: string };
};

/** What a network rule is matched against. */
export type Packet = { cidr: Cidr; port: number; protocol: number };

/**
 * An address the kernel learned for a host name (map `learned`), as the decision sees it: an entry past
 * its expiry decides nothing.
 */
export type LearnedAddress = { addr: Address; host: string; expired?: boolean };

export type DecideOptions = {
  /** Overrides the plan's mode (break-glass, deadman, `--audit`). */
  mode?: Mode;
  /** The learned-address table: which names the destination was learned for. Absent: none. */
  learned?: readonly LearnedAddress[];
};

/** The decision for `event` (see DecideOptions). */
export function decide(plan: RuleSetPlan, event: DecisionEvent, options: DecideOptions = {}): Decision {
  if (plan.encodedNet !== undefined && event.area === "egress") {
    // Its egress CIDR rules are only in the kernel's encoding (lib/kernel/entries.ts compileEncoded): deciding
    // here would see none of them and allow what they deny.
    throw new Error(
      "decide(): this plan's egress rules are encoded for the kernel; decide on compilePolicy's",
    );
  }
  const found: { ruleId?: number | undefined; reason?: ExecReason } | undefined = event.area === "exec"
    ? execRule(plan, event)
    : { ruleId: decidingRule(plan, event, options.learned ?? []) };
  const ruleId = found?.ruleId;
  if (ruleId !== undefined && event.area === "write") {
    const writer = trustedWriter(plan, event);
    if (writer !== undefined) {
      const ruleName = plan.rules[writer]?.id;
      return {
        decision: "allow",
        writer: ruleName === undefined ? { ruleId: writer } : { ruleId: writer, ruleName },
      };
    }
  }
  if (ruleId === undefined) return { decision: "allow" };
  const decision = (options.mode ?? plan.mode) === "enforce" ? "deny" : "audit";
  const name = plan.rules[ruleId]?.id;
  const result: Decision = name === undefined ? { decision, ruleId } : { decision, ruleId, ruleName: name };
  if (found?.reason) result.reason = found.reason;
  return result;
}

/** The rule that refuses an exec and why, or undefined when it may run (see the header). */
function execRule(
  plan: RuleSetPlan,
  event: Extract<DecisionEvent, { area: "file" | "exec" }>,
): { ruleId: number; reason: ExecReason } | undefined {
  if (!inScope(plan, event.cgroup)) return undefined;
  const denied = inodeRule(plan.exec, event);
  if (denied !== undefined) return { ruleId: denied, reason: "denied" };
  if (!plan.execDefaultDeny) return undefined;
  const entries = plan.execAllow ?? [];
  // A sha256 entry's check holds whatever path entry names the file too.
  // A trust entry's files are known by inode only (the package database's answer at apply): by rule id.
  const trust = plan.execTrust ?? [];
  const trusted = () => trust.find((target) => event.ruleIds?.includes(target.ruleId))?.ruleId;
  // The checked entries (sha256, then trust: each file's content as checked at apply) hold whatever path
  // entry names the file too.
  const allowed = event.nameless
    ? undefined
    : inodeRule(entries.filter((target) => target.sha256 !== undefined), event) ?? trusted() ??
      inodeRule(entries, event);
  if (allowed === undefined) return { ruleId: plan.execDefaultDeny.ruleId, reason: "untrusted" };
  const hashed = entries.find((target) => target.ruleId === allowed)?.sha256 !== undefined ||
    trust.some((target) => target.ruleId === allowed);
  return hashed && event.changed ? { ruleId: allowed, reason: "hash-mismatch" } : undefined;
}

/** The id of the rule that denies `event`, or undefined when it is allowed. */
function decidingRule(
  plan: RuleSetPlan,
  event: DecisionEvent,
  learned: readonly LearnedAddress[],
): number | undefined {
  switch (event.area) {
    case "egress": {
      const ruleId = egressRule(plan, event, learned);
      return ruleId !== undefined && inScope(plan, event.cgroup) ? ruleId : undefined;
    }
    case "bind": {
      const protocol = protocolNumber(event.protocol);
      const matches = (subject: number | undefined) =>
        plan.bind.find((r) =>
          r.subject === subject && r.port === event.port &&
          (r.protocol ? PROTOCOL_NUMBER[r.protocol] === protocol : PORT_PROTOCOL_NUMBERS.includes(protocol))
        );
      const rule = matches(undefined) ??
        taskSubjects(plan, event).map(matches).find((found) => found !== undefined);
      return rule && inScope(plan, event.cgroup) ? rule.ruleId : undefined;
    }
    case "ingress":
      return ingressRule(plan, event);
    case "forward":
      return plan.forwarded
        ? egressCidrRule(plan, toPacket(event.addr, event.port, event.protocol), [], learned)
        : undefined;
    case "file":
    case "exec": {
      const ruleId = inodeRule(event.area === "file" ? plan.files : plan.exec, event);
      return ruleId !== undefined && inScope(plan, event.cgroup) ? ruleId : undefined;
    }
    case "write": {
      const ruleId = protectRule(plan.protect ?? [], event);
      return ruleId !== undefined && inScope(plan, event.cgroup) ? ruleId : undefined;
    }
  }
}

function egressRule(
  plan: RuleSetPlan,
  event: Extract<DecisionEvent, { area: "egress" }>,
  learned: readonly LearnedAddress[],
): number | undefined {
  const packet = toPacket(event.addr, event.port, event.protocol);
  // Rules that name a program judge TCP and UDP only (other protocols are judged packet by packet).
  const subjects = packet.protocol === 6 || packet.protocol === 17 ? taskSubjects(plan, event) : [];
  const cidr = egressCidrRule(plan, packet, subjects, learned);
  if (cidr !== undefined) return cidr;
  const user = [...subjects, undefined].map((subject) =>
    userRule(plan.egressUsers.filter((entry) => entry.subject === subject), event.uid, event.gid)
  ).find((entry) => entry !== undefined);
  if (!user) return undefined;
  const listed = user.ports.includes(packet.port);
  return listed === (user.portsAre === "denied") ? user.ruleId : undefined;
}

/**
 * The subject numbers of a task, in precedence order (see the top of this file): its exe's, then its
 * ancestors' with children: true, nearest first; at most SUBJECT_SLOTS.
 */
export function taskSubjects(plan: RuleSetPlan, task: TaskProgram): number[] {
  const subjects = plan.subjects ?? [];
  if (subjects.length === 0) return [];
  const found: number[] = [];
  const add = (exe: string | undefined, children: boolean) => {
    const subject = subjects.find((s) => s.exe === exe && s.children === children);
    if (subject && found.length < SUBJECT_SLOTS) found.push(subject.subject);
  };
  if (task.exe !== undefined) {
    add(task.exe, false);
    add(task.exe, true);
  }
  for (const ancestor of task.ancestors ?? []) add(ancestor, true);
  return found;
}

/**
 * The CIDR deny rule for a destination, seen in each of its views (egressViews), for a task of `subjects`;
 * the default (network.egress.default: deny) for a view no rule matches, loopback aside.
 */
function egressCidrRule(
  plan: RuleSetPlan,
  packet: Packet,
  subjects: readonly number[] = [],
  learned: readonly LearnedAddress[] = [],
): number | undefined {
  for (const view of egressViews(packet, plan.nat64Prefixes ?? [])) {
    let rule = matchSubjects(plan.egress, view, subjects);
    if (!rule || rule.prefixLength < view.cidr.addr.length * 8) {
      rule = matchSubjects(learnedRules(plan, view, learned), view, subjects) ?? rule;
    }
    if (rule?.action === "deny") return rule.ruleId;
    if (!rule && plan.egressDefaultDeny && !isLoopback(view)) return plan.egressDefaultDeny.ruleId;
  }
  return undefined;
}

/**
 * The rules by name that decide for `view`'s address: those of the most specific pattern covering a name
 * it was learned for (and has not expired), each as the NetRule of that address alone (with its subject:
 * matchSubjects picks among them as among CIDR rules).
 */
export function learnedRules(
  plan: RuleSetPlan,
  view: Packet,
  learned: readonly LearnedAddress[],
): NetRule[] {
  const hosts = plan.egressHosts ?? [];
  if (hosts.length === 0 || learned.length === 0) return [];
  const { family, addr } = view.cidr;
  const patterns = new Set<string>();
  for (const entry of learned) {
    if (entry.expired) continue;
    const { cidr } = toPacket(entry.addr, 0, 0);
    if (cidr.family !== family || !cidr.addr.every((byte, i) => byte === addr[i])) continue;
    const pattern = coveringPattern(hosts, entry.host);
    if (pattern) patterns.add(pattern);
  }
  const rules: NetRule[] = [];
  for (const host of hosts) {
    if (!patterns.has(host.host)) continue;
    const rule: NetRule = {
      ruleId: host.ruleId,
      action: host.action,
      family,
      addr: new Uint8Array(addr),
      prefixLength: addr.length * 8,
    };
    if (host.protocol) rule.protocol = host.protocol;
    if (host.port !== undefined) rule.port = host.port;
    if (host.subject !== undefined) rule.subject = host.subject;
    rules.push(rule);
  }
  return rules;
}

/** The pattern of `hosts` that decides for `name`: the name itself, else the longest wildcard covering it. */
export function coveringPattern(hosts: readonly { host: string }[], name: string): string | undefined {
  const canonical = canonicalHost(name);
  let best: string | undefined;
  for (const { host } of hosts) {
    if (host === canonical) return host;
    if (hostCovers(host, canonical) && host.length > (best?.length ?? 0)) best = host;
  }
  return best;
}

/**
 * matchNet over the rules of `subjects` and the rules naming no program: the highest rank wins; at equal
 * rank the earlier subject, the rules naming no program last.
 */
export function matchSubjects(
  rules: readonly NetRule[],
  packet: Packet,
  subjects: readonly number[],
): NetRule | undefined {
  if (subjects.length === 0 && !rules.some((rule) => rule.subject !== undefined)) {
    return matchNet(rules, packet);
  }
  let best: NetRule | undefined;
  let bestRank = -1;
  for (const subject of [...subjects, undefined]) {
    const rule = matchNet(rules.filter((candidate) => candidate.subject === subject), packet);
    const rank = rule ? matchRank(rule, packet) : -1;
    if (rank > bestRank) {
      best = rule;
      bestRank = rank;
    }
  }
  return best;
}

/** 127.0.0.0/8 and ::1: what an egress default deny lets through. */
export function isLoopback(packet: Packet): boolean {
  const { family, addr } = packet.cidr;
  if (family === 4) return addr[0] === 127;
  return addr.subarray(0, 15).every((byte) => byte === 0) && addr[15] === 1;
}

/**
 * How egress matches a destination: an IPv6 address that embeds an IPv4 one (IPv4-compatible ::a.b.c.d but
 * not :: or ::1, or inside a NAT64 prefix) as that IPv4 address first and as itself second; either one's
 * deny applies. Any other address as itself (`::ffff:` is IPv4 already).
 */
export function egressViews(packet: Packet, nat64Prefixes: readonly Uint8Array[]): Packet[] {
  const { addr, family } = packet.cidr;
  if (family !== 6) return [packet];
  const head = addr.subarray(0, 12);
  const compatible = head.every((byte) => byte === 0) &&
    (addr[12]! | addr[13]! | addr[14]!) + (addr[15]! > 1 ? 1 : 0) > 0;
  const nat64 = nat64Prefixes.some((prefix) => prefix.every((byte, i) => byte === head[i]));
  if (!compatible && !nat64) return [packet];
  const ipv4 = { family: 4 as const, addr: addr.slice(12), prefixLength: 32 };
  return [{ ...packet, cidr: ipv4 }, packet];
}

/** The users entry of the uid, else of the gid. */
export function userRule(users: readonly UserRule[], uid?: number, gid?: number): UserRule | undefined {
  return users.find((user) => uid !== undefined && user.uid === uid) ??
    users.find((user) => gid !== undefined && user.gid === gid);
}

function ingressRule(
  plan: RuleSetPlan,
  event: Extract<DecisionEvent, { area: "ingress" }>,
): number | undefined {
  const iface = plan.ingress.interfaces.find((candidate) => candidate.name === event.interface);
  if (!iface) return undefined;
  const protocol = protocolNumber(event.protocol);
  // XDP reads the ports of the protocols that carry them first, and no other.
  const port = PORT_PROTOCOL_NUMBERS.includes(protocol) ? event.port ?? 0 : 0;
  const failsafe = port !== 0 &&
    plan.ingress.failsafe.some((rule) => rule.port === port && PROTOCOL_NUMBER[rule.protocol] === protocol);
  if (failsafe) return undefined;
  const rule = matchNet(plan.ingress.rules, toPacket(event.addr, port, protocol));
  if (rule) return rule.action === "deny" ? rule.ruleId : undefined;
  return iface.defaultDrop ? iface.ruleId : undefined;
}

function inodeRule(
  targets: readonly InodeTarget[],
  event: Extract<DecisionEvent, { area: "file" | "exec" }>,
): number | undefined {
  const { ruleIds, path } = event;
  const matches = targets.filter((target) =>
    ruleIds
      ? ruleIds.includes(target.ruleId)
      : path !== undefined && (path === target.path || (target.recursive && isUnder(path, target.path)))
  );
  return matches[0]?.ruleId;
}

/**
 * The writer entry that lets the task change protected files: the first of its subjects (in precedence
 * order, at most four) that a files.writers entry names, as the kernel asks them. Undefined: none.
 */
export function trustedWriter(plan: RuleSetPlan, task: TaskProgram): number | undefined {
  const writers = (plan.writers ?? []).filter((entry) => !entry.allowedOnly);
  if (writers.length === 0) return undefined;
  for (const subject of taskSubjects(plan, task)) {
    const writer = writers.find((entry) => entry.subject === subject);
    if (writer) return writer.ruleId;
  }
  return undefined;
}

function protectRule(
  targets: NonNullable<RuleSetPlan["protect"]>,
  event: Extract<DecisionEvent, { area: "write" }>,
): number | undefined {
  const { ruleIds, path } = event;
  if (ruleIds) return targets.find((target) => ruleIds.includes(target.ruleId))?.ruleId;
  if (path === undefined) return undefined;
  const own = inodeRule(targets, { area: "file", path });
  if (own !== undefined || !ENTRY_OPS.has(event.op)) return own;
  const parent = path.slice(0, path.lastIndexOf("/")) || "/";
  return targets.find((target) => target.path === parent)?.ruleId;
}

/**
 * The rule that decides `packet` among `rules` (egress destinations or ingress sources), or undefined.
 * Exported for lint, which asks what decides a resolver or the operator's SSH connection.
 */
export function matchNet(rules: readonly NetRule[], packet: Packet): NetRule | undefined {
  let best: NetRule | undefined;
  let bestRank = -1;
  for (const rule of rules) {
    const rank = matchRank(rule, packet);
    if (rank > bestRank || (rank === bestRank && rule.action === "deny" && best?.action === "allow")) {
      best = rule;
      bestRank = rank;
    }
  }
  return best;
}

/** How specific `rule` is for `packet` (higher wins), or -1 when it does not match. */
export function matchRank(rule: NetRule, packet: Packet): number {
  // unmapIpv4 only reads the bytes; a plan built by hand may hold a ::ffff: network. An IPv4 rule is its
  // own network: nothing is built per rule of a scan over 100,000 (lint asks what decides each resolver).
  const network = rule.family === 4 ? rule : unmapIpv4({
    family: rule.family,
    addr: rule.addr as Uint8Array<ArrayBuffer>,
    prefixLength: rule.prefixLength,
  });
  if (!cidrContains(network, packet.cidr)) return -1;
  const named = rule.protocol === undefined ? undefined : PROTOCOL_NUMBER[rule.protocol];
  let level: number;
  if (rule.port !== undefined) {
    const protocolMatches = named === undefined
      ? PORT_PROTOCOL_NUMBERS.includes(packet.protocol)
      : named === packet.protocol;
    if (packet.port === 0 || rule.port !== packet.port || !protocolMatches) return -1;
    level = 2;
  } else if (named !== undefined) {
    if (named !== packet.protocol) return -1;
    level = 1;
  } else {
    level = 0;
  }
  return network.prefixLength * 3 + level;
}

/** A packet for `matchNet`: the address as a host network, IPv4-mapped addresses as IPv4. */
export function toPacket(addr: Address, port: number | undefined, protocol: IpProtocol): Packet {
  const cidr = typeof addr === "string" ? parseCidr(addr) : {
    family: addr.length === 4 ? 4 as const : 6 as const,
    addr: new Uint8Array(addr),
    prefixLength: addr.length * 8,
  };
  return { cidr: unmapIpv4(cidr), port: port ?? 0, protocol: protocolNumber(protocol) };
}

export function protocolNumber(protocol: IpProtocol): number {
  return typeof protocol === "number" ? protocol : IP_PROTOCOL[protocol];
}

/** Never in an exempt subtree; inside an included one when any is listed. A task without a cgroup is at the root. */
export function inScope(plan: RuleSetPlan, cgroup = "/"): boolean {
  const { include, exempt } = plan.scope;
  if (exempt.some((path) => isUnder(cgroup, path))) return false;
  return include.length === 0 || include.some((path) => isUnder(cgroup, path));
}

/** Whether `path` is `ancestor` or inside it. */
function isUnder(path: string, ancestor: string): boolean {
  const base = ancestor.replace(/\/+$/, "");
  return path === ancestor || path === base || path.startsWith(`${base}/`);
}
