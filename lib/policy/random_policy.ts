/**
 * Seeded random policies and events, reproducible from the seed on every machine. Networks and ports come
 * from small overlapping pools, so that random rules nest, tie and shadow each other often: the cases where
 * a decision function and the kernel could disagree. Used by property tests here and by the kernel
 * differential test.
 */
import type { IpProtocol } from "./decide.ts";
import type { NetRuleSpec, Policy, PortRuleSpec, UserRuleSpec } from "./schema.ts";

/** mulberry32: tiny, fast, and the same sequence everywhere for a seed. */
export class Random {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** A number in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  chance(probability: number): boolean {
    return this.next() < probability;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  /** Between `min` and `max` distinct items, in pool order. */
  subset<T>(items: readonly T[], min: number, max = items.length): T[] {
    const count = min + this.int(Math.min(max, items.length) - min + 1);
    const chosen = new Set<number>();
    while (chosen.size < count) chosen.add(this.int(items.length));
    return [...chosen].sort((a, b) => a - b).map((i) => items[i]!);
  }
}

/** Networks that nest and overlap, in both families and in IPv4-mapped form. */
export const NETWORKS = [
  "0.0.0.0/0",
  "10.0.0.0/8",
  "10.1.0.0/16",
  "10.1.2.0/24",
  "10.1.2.128/25",
  "10.1.2.3/32",
  "192.0.2.0/24",
  "192.0.2.1",
  "198.51.100.0/24",
  "127.0.0.0/8",
  "::ffff:10.1.0.0/112",
  "::ffff:192.0.2.1",
  "::/0",
  "2001:db8::/32",
  "2001:db8:1::/48",
  "2001:db8:1::1",
  "fd00::/8",
] as const;

/** Addresses inside, at the edges of and outside `NETWORKS`. */
export const ADDRESSES = [
  "10.1.2.3",
  "10.1.2.200",
  "10.1.2.127",
  "10.1.3.1",
  "10.200.0.1",
  "192.0.2.1",
  "192.0.2.99",
  "198.51.100.7",
  "127.0.0.1",
  "203.0.113.5",
  "::ffff:10.1.2.3",
  "::ffff:203.0.113.5",
  "2001:db8:1::1",
  "2001:db8:2::5",
  "fd00::1",
  "::1",
] as const;

export const PORTS = [22, 53, 80, 443, 8080] as const;
const UIDS = [0, 1000, 1001];
const GIDS = [0, 100, 1000];

export type RandomPolicyOptions = {
  /** Ingress interfaces to filter (none: no ingress section). */
  interfaces?: readonly string[];
  /** Cgroup paths the scope may name (none: no scope). */
  cgroups?: readonly string[];
  /** Paths file and exec rules may deny (none: no file or exec rules). */
  paths?: readonly string[];
  /** The most rules in one list; 6 unless given. */
  maxRules?: number;
  /** Programs egress, users and bind entries may name (`exe`, with `children` at random); none: no exe. */
  exes?: readonly string[];
  /** Whether the egress default may be deny (at random); not unless given. */
  egressDefault?: boolean;
  /** Host names egress rules may name (`host`, instead of a cidr); none: no rules by name. */
  hosts?: readonly string[];
};

/** A valid policy, the same for the same seed and options. */
export function randomPolicy(seed: number, options: RandomPolicyOptions = {}): Policy {
  const random = new Random(seed);
  const ids = new RuleIds(random);
  const max = options.maxRules ?? 6;
  const rules = <T>(make: () => T) => Array.from({ length: random.int(max + 1) }, make);
  const spec: Policy["spec"] = { mode: random.pick(["audit", "enforce"] as const) };
  const paths = options.paths ?? [];
  if (paths.length) {
    const fileRules = () => random.subset(paths, 0, max).map((path) => ids.with({ path }));
    spec.files = { deny: fileRules() };
    spec.exec = { deny: fileRules(), ...random.chance(0.3) && { denyMemfd: true } };
    const protect = random.subset(paths, 0, max).map((path) =>
      ids.with({ path, ...random.chance(0.3) && { recursive: true } })
    );
    if (protect.length > 0) spec.files.protect = protect;
  }
  const cgroups = options.cgroups ?? [];
  if (cgroups.length) {
    spec.scope = { cgroups: random.subset(cgroups, 0, 2), exempt: random.subset(cgroups, 0, 2) };
  }
  // Drawn only when asked for: the policies of a seed stay the same for callers that do not.
  const exes = options.exes ?? [];
  const subject = <T extends object>(rule: T): T =>
    exes.length && random.chance(0.5)
      ? { ...rule, exe: random.pick(exes), ...random.chance(0.5) && { children: true } }
      : rule;
  spec.network = {
    egress: {
      deny: rules(() => subject(netRule(random, ids))),
      allow: rules(() => subject(netRule(random, ids))),
      users: userRules(random, ids).map(subject),
      ...random.chance(0.2) && { denyPacketSockets: true },
      ...options.egressDefault && random.chance(0.5) && { default: "deny" as const },
    },
    bind: { deny: rules(() => subject(portRule(random, ids))) },
  };
  if (exes.length) spec.network.egress!.users = uniqueUsers(spec.network.egress!.users!);
  const hosts = options.hosts ?? [];
  if (hosts.length) {
    const egress = spec.network.egress!;
    const byName = () => {
      const { cidr: _cidr, ...rule } = netRule(random, ids);
      return subject({ ...rule, host: random.pick(hosts) });
    };
    egress.deny = [...egress.deny ?? [], ...rules(byName).slice(0, 2)];
    egress.allow = [...egress.allow ?? [], ...rules(byName).slice(0, 3)];
  }
  const interfaces = options.interfaces ?? [];
  if (interfaces.length) {
    spec.network.ingress = {
      interfaces: random.subset(interfaces, 1),
      default: random.pick(["pass", "drop"] as const),
      allow: rules(() => netRule(random, ids)),
      deny: rules(() => netRule(random, ids)),
      ...random.chance(0.5) && { failsafe: portRule(random, ids) },
    };
  }
  return {
    apiVersion: "aegisbpf.io/v1",
    kind: "Policy",
    metadata: { name: `random-${seed >>> 0}`, version: 1 + random.int(1000) },
    spec,
  };
}

/** Explicit ids for about half of the rules, unique in the policy. */
class RuleIds {
  #next = 0;
  constructor(readonly random: Random) {}
  with<T extends object>(rule: T): T & { id?: string } {
    return this.random.chance(0.5) ? { id: `r${this.#next++}`, ...rule } : rule;
  }
}

function netRule(random: Random, ids: RuleIds): NetRuleSpec {
  const ports = random.pick(["none", "port", "ports"] as const);
  return ids.with({
    ...(ports === "none" || random.chance(0.85)) && { cidr: random.pick(NETWORKS) },
    ...ports === "port" && { port: random.pick(PORTS) },
    ...ports === "ports" && { ports: random.subset(PORTS, 1, 2) },
    ...random.chance(0.6) && { protocol: random.pick(["tcp", "udp"] as const) },
  });
}

function portRule(random: Random, ids: RuleIds): PortRuleSpec {
  return ids.with({
    ...random.chance(0.5) ? { port: random.pick(PORTS) } : { ports: random.subset(PORTS, 1, 2) },
    ...random.chance(0.7) && { protocol: random.pick(["tcp", "udp"] as const) },
  });
}

function userRules(random: Random, ids: RuleIds): UserRuleSpec[] {
  const who = [
    ...random.subset(UIDS, 0, 2).map((uid) => ({ uid })),
    ...random.subset(GIDS, 0, 2).map((gid) => ({ gid })),
  ];
  return who.map((entry) =>
    ids.with({
      ...entry,
      ...random.chance(0.5)
        ? { allowPorts: random.subset(PORTS, 0, 2) }
        : { denyPorts: random.subset(PORTS, 1, 2) },
    })
  );
}

/** One users entry per uid or gid and program: a later repeat is dropped. */
function uniqueUsers(users: UserRuleSpec[]): UserRuleSpec[] {
  const seen = new Set<string>();
  return users.filter((user) => {
    const key = `${user.uid ?? ""}/${user.gid ?? ""}/${user.exe ?? ""}/${user.children === true}`;
    return !seen.has(key) && seen.add(key);
  });
}

const PROTOCOLS: IpProtocol[] = ["tcp", "tcp", "udp", "udp", "udplite", "icmp"];

/** A connect or sendmsg: an address and port from the pools, a protocol, and ids the users entries name. */
export function randomEgressEvent(random: Random, cgroups: readonly string[] = []) {
  return {
    area: "egress" as const,
    addr: random.pick(ADDRESSES),
    port: random.chance(0.9) ? random.pick(PORTS) : 1 + random.int(65535),
    protocol: random.pick(PROTOCOLS),
    uid: random.pick([...UIDS, 65534]),
    gid: random.pick([...GIDS, 65534]),
    ...cgroups.length && { cgroup: random.pick(cgroups) },
  };
}

export function randomBindEvent(random: Random, cgroups: readonly string[] = []) {
  return {
    area: "bind" as const,
    port: random.pick(PORTS),
    protocol: random.pick(["tcp", "udp"] as const),
    ...cgroups.length && { cgroup: random.pick(cgroups) },
  };
}

export function randomIngressEvent(random: Random, interfaces: readonly string[]) {
  return {
    area: "ingress" as const,
    interface: random.pick(interfaces),
    addr: random.pick(ADDRESSES),
    port: random.pick(PORTS),
    protocol: random.pick(["tcp", "udp", "icmp"] as const),
  };
}
