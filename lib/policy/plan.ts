/**
 * The compiled form of a policy: what the kernel should hold, with no kernel access needed to build it.
 * Paths, cgroups and interfaces are still names here; the apply step resolves them to (dev, ino), cgroup
 * ids and interface indexes.
 */

import type { ChecksSpec } from "./checks.ts";
import type { RuleWindow } from "./window_spec.ts";

export type Mode = "audit" | "enforce";
export type Protocol = "tcp" | "udp";
export type Area = "file" | "exec" | "egress" | "bind" | "ingress";

export const PROTOCOL_NUMBER: Readonly<Record<Protocol, number>> = { tcp: 6, udp: 17 };

/**
 * What a rule with a port and no protocol matches: every protocol whose ports the hooks read, TCP, UDP,
 * UDP-Lite (136), SCTP (132) and DCCP (33), which all carry source and destination port first.
 */
export const PORT_PROTOCOL_NUMBERS: readonly number[] = [6, 17, 136, 132, 33];

/** The well-known NAT64 prefix (RFC 6052), matched whatever the policy says. */
export const WELL_KNOWN_NAT64 = "64:ff9b::/96";

/** What the kernel's numeric rule id stands for; rule ids index `RuleSetPlan.rules`. */
export type RuleInfo = {
  id: string;
  area: Area;
  action: "deny" | "allow";
  path?: string;
  /** The program a network rule names (`exe`), for events and explain. */
  exe?: string;
  /** The host pattern an egress rule names (`host`, canonical), for events and explain. */
  host?: string;
  /** The rule's `tags` (e.g. MITRE ATT&CK techniques), carried into its events. */
  tags?: string[];
};

/** A file or executable to deny by inode; `recursive` covers every file under a directory. */
export type InodeTarget = {
  ruleId: number;
  path: string;
  recursive?: boolean;
  optional?: boolean;
  /** A recursive rule's cap on the entries its walk meets (default in lib/kernel/tree.ts). */
  maxFiles?: number;
};

/** An exec.allow entry: its inodes may run (or its one file, while its content is the `sha256` given). */
export type AllowTarget = InodeTarget & { sha256?: string };

/** An exec.allow `trust` entry: the files of the installed packages of `source`, checked against it. */
export type TrustTarget = { ruleId: number; source: "dpkg" };

/**
 * A CIDR rule for egress (destination) or ingress (source). `port` absent: every port; `protocol`
 * absent: every protocol (with a port: those of PORT_PROTOCOL_NUMBERS).
 */
export type NetRule = {
  ruleId: number;
  action: "deny" | "allow";
  family: 4 | 6;
  /** Network address bytes: 4 for IPv4, 16 for IPv6. */
  addr: Uint8Array<ArrayBuffer>;
  prefixLength: number;
  protocol?: Protocol;
  port?: number;
  /** The program the rule applies to (an index of `RuleSetPlan.subjects`); absent: every program. */
  subject?: number;
};

/** A NetRule as read: an absent field may also be there as undefined (the reused rule of CompileOptions). */
export type NetRuleView = Readonly<Omit<NetRule, "protocol" | "port" | "subject">> & {
  readonly protocol?: Protocol | undefined;
  readonly port?: number | undefined;
  readonly subject?: number | undefined;
};

/**
 * An egress rule by host name: the addresses learned for a name it covers (from the DNS answers the scope
 * receives, and from resolving an exact name at apply) are matched as if the rule named each as a /32
 * (IPv4) or /128 (IPv6) with its port and protocol. `host` is canonical (lower case, no trailing dot);
 * `*.example.com` covers every name below example.com, not example.com itself.
 */
export type HostRule = {
  ruleId: number;
  action: "deny" | "allow";
  host: string;
  protocol?: Protocol;
  port?: number;
  subject?: number;
};

/**
 * A program that rules name (`exe`, and `children: true` for every process it starts): each distinct pair
 * gets its number, 1 up, in rule order. The kernel knows a task's program by the inode of its executable.
 */
export type Subject = {
  subject: number;
  exe: string;
  children: boolean;
  /** The exe may be missing on this host: its rules are then skipped, with a warning. */
  optional: boolean;
  /** The first rule that names it, for messages. */
  ruleId: number;
};

/** A trusted writer: the subject of its program, and the rule that made it one. */
/**
 * A trusted writer. `allowedOnly`: its renames pass an exec.allow allowance to the new inode, but it may not
 * change protected files (the package manager that `trust: dpkg` names); files.writers entries may do both.
 */
export type Writer = { ruleId: number; subject: number; exe: string; children: boolean; allowedOnly?: true };

export type PortRule = { ruleId: number; port: number; protocol: Protocol };
/**
 * A bind deny rule: `protocol` absent covers every protocol that binds to a port (PORT_PROTOCOL_NUMBERS:
 * TCP, UDP, UDP-Lite, SCTP, DCCP), not only TCP and UDP.
 */
export type BindRule = { ruleId: number; port: number; protocol?: Protocol; subject?: number };
/**
 * An egress restriction for the processes of one effective uid or gid: `allowPorts` denies every other
 * destination port, `denyPorts` denies the listed ones. A uid entry beats a gid entry for the same process,
 * and a user entry decides only where no CIDR deny rule matched (a CIDR allow does not lift it).
 */
export type UserRule =
  & { ruleId: number; ports: number[]; portsAre: "allowed" | "denied"; subject?: number }
  & ({ uid: number; gid?: never } | { gid: number; uid?: never });
export type IngressInterface = { name: string; defaultDrop: boolean; ruleId: number };

/** A rule with a time window (`when:`), and whether the plan holds it (open) or only numbers it (closed). */
export type PlanWindow = { rule: string; area: Area; when: RuleWindow; open: boolean };

export type RuleSetPlan = {
  mode: Mode;
  /**
   * The rules with a time window. A closed one keeps its rule id (numbering stays stable) but puts nothing
   * in the kernel; its area is attached all the same, so that opening it is one flip.
   */
  windows?: PlanWindow[];
  /** Index = kernel rule id. Id 0 is reserved for "no rule" (ingress default drop). */
  rules: RuleInfo[];
  files: InodeTarget[];
  exec: InodeTarget[];
  /**
   * files.protect: inodes that may be read and run but not changed. A directory's entries are fixed too;
   * a recursive target covers every file and directory below it (never maxFiles: the walk's default cap).
   */
  protect?: InodeTarget[];
  egress: NetRule[];
  /** Egress rules by host name (absent: none), one per port. */
  egressHosts?: HostRule[];
  /** network.egress.nameTtlFloor: the least seconds a learned address is kept (absent: the default, 30). */
  nameTtlFloor?: number;
  egressUsers: UserRule[];
  bind: BindRule[];
  ingress: { interfaces: IngressInterface[]; failsafe: PortRule[]; rules: NetRule[] };
  /** Cgroup v2 paths relative to its root, e.g. /system.slice/sshd.service. */
  scope: { include: string[]; exempt: string[] };
  /**
   * Present with exec.default: deny: in scope, only the inodes of `execAllow` run or map executable (an
   * exec.deny rule still wins); the rule id reports what is refused as untrusted.
   */
  execDefaultDeny?: { ruleId: number };
  /** The exec.allow entries that name files (absent: none); they decide only with `execDefaultDeny`. */
  execAllow?: AllowTarget[];
  /**
   * The exec.allow `trust` entries (absent: none): every file a package database lists for an installed
   * package, whose content matches the database's checksum when resolved. Decide only with `execDefaultDeny`.
   */
  execTrust?: TrustTarget[];
  /** Present when exec of a memfd (fileless exec: memfd_create + fexecve) is denied, in scope. */
  denyMemfdExec?: { ruleId: number };
  /** Present with a scope: a task in scope may not move a task out of it (or into an exempt cgroup). */
  scopeGuard?: { ruleId: number };
  /** Present with a scope: a task in scope may not trace, or reach the memory of, a task outside it. */
  ptraceGuard?: { ruleId: number };
  /** Present when creating AF_PACKET sockets is denied, in scope. */
  denyPacketSockets?: { ruleId: number };
  /**
   * files.writers: programs (subjects, by number) that may change protected files, and whose rename of a
   * new file over a protected or allowed one passes the rule to the new file. Absent: none.
   */
  writers?: Writer[];
  /** The programs rules name; absent or empty: no rule names one (the kernel never reads the task's exe). */
  subjects?: Subject[];
  /**
   * Present with subjects: a task in scope may not change the executable the kernel knows it by
   * (prctl PR_SET_MM_EXE_FILE or PR_SET_MM_MAP), which would let it pass for another program.
   */
  identityGuard?: { ruleId: number };
  /**
   * Present with network.egress.default: deny: a destination no egress rule matches is denied (the rule
   * reported), except loopback (127.0.0.0/8, ::1), which passes unless a rule says otherwise.
   */
  egressDefaultDeny?: { ruleId: number };
  /** Present when any egress rule exists: setting a routing header or a source route is refused, in scope. */
  routeGuard?: { ruleId: number };
  /** Present with network.egress.forwarded: the egress CIDR rules judge packets the host forwards too. */
  forwarded?: { ruleId: number };
  /**
   * The first 12 bytes of each /96 NAT64 prefix (64:ff9b::/96 and the policy's own): an egress destination
   * in one of them, or IPv4-compatible (::a.b.c.d), is matched both as its IPv4 address and as itself, and
   * either one's deny applies. Absent: none.
   */
  nat64Prefixes?: Uint8Array[];
  /**
   * Present in a plan whose CIDR rules were encoded into their map entries and dropped (what the agent
   * holds, so that 100,000 rules cost their entries' bytes and no objects): `egress` and `ingress.rules`
   * are then empty and these stand for them, and `rules` holds only the rules not named after their place
   * (the rest are in the RuleTable the plan came with).
   */
  encodedNet?: EncodedNet;
  /** The policy's self-check probes (`spec.checks`), run after every flip into it (lib/ops/self_check.ts). */
  checks?: ChecksSpec;
};

/** A plan's CIDR rules as `net_rules` entries, back to back, and how many rules they came from. */
export type EncodedNet = {
  keys: Uint8Array<ArrayBuffer>;
  values: Uint8Array<ArrayBuffer>;
  count: number;
  egressRules: number;
  ingressRules: number;
  /** Ingress deny rules with a port (XDP reads the port only when some exist). */
  ingressPortDenies: number;
  /**
   * The subjects (programs) the encoded egress rules name, where the encoding kept them (compileEncoded);
   * absent: not known, and every subject counts as naming some.
   */
  egressSubjects?: number[];
};

/** A plan that denies nothing: the state before any policy. */
export function emptyPlan(mode: Mode = "audit"): RuleSetPlan {
  return {
    mode,
    rules: [{ id: "default", area: "ingress", action: "deny" }],
    files: [],
    exec: [],
    egress: [],
    egressUsers: [],
    bind: [],
    ingress: { interfaces: [], failsafe: [], rules: [] },
    scope: { include: [], exempt: [] },
  };
}
