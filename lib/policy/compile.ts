/**
 * The pure compiler: a validated policy to the rule-set plan the kernel holds. Deterministic: the same
 * policy gives a deep-equal plan, with rules numbered in the order of `policyRules` (document order within
 * each list).
 */
import { type Cidr, parseCidr, unmapIpv4 } from "./cidr.ts";
import { canonicalHost } from "./host_name.ts";
import {
  type Area,
  type BindRule,
  emptyPlan,
  type HostRule,
  type NetRule,
  type NetRuleView,
  type PortRule,
  type Protocol,
  type RuleInfo,
  type RuleSetPlan,
  type Subject,
  WELL_KNOWN_NAT64,
  type Writer,
} from "./plan.ts";
import type {
  EgressRuleSpec,
  NetRuleSpec,
  Policy,
  PortRuleSpec,
  RuleList,
  RuleRef,
  UserRuleSpec,
} from "./schema.ts";
import { forEachRule } from "./schema.ts";
import { windowClock, windowOpen } from "./windows.ts";

/** Where a rule without a cidr applies: every destination (or source) of both families. */
const EVERYWHERE = ["0.0.0.0/0", "::/0"];
/** A port rule without a protocol: TCP and UDP (the port-keyed hooks see no other protocol by name). */
const PORT_PROTOCOLS: Protocol[] = ["tcp", "udp"];
/** The ports of a rule without any: every port. */
const NO_PORT: readonly (number | undefined)[] = [undefined];

const AREA: Record<RuleList, { area: Area; action: "deny" | "allow" }> = {
  "files.deny": { area: "file", action: "deny" },
  "exec.deny": { area: "exec", action: "deny" },
  "network.egress.deny": { area: "egress", action: "deny" },
  "network.egress.allow": { area: "egress", action: "allow" },
  "network.egress.users": { area: "egress", action: "deny" },
  "network.bind.deny": { area: "bind", action: "deny" },
  "network.ingress.failsafe": { area: "ingress", action: "allow" },
  "network.ingress.allow": { area: "ingress", action: "allow" },
  "network.ingress.deny": { area: "ingress", action: "deny" },
  "exec.allow": { area: "exec", action: "allow" },
  // Served by the file area's hooks (BPF-LSM, or the open tracepoints' audit).
  "files.protect": { area: "file", action: "deny" },
  // Asked by those hooks when a protected (or, for a rename, allowed) inode is changed.
  "files.writers": { area: "file", action: "allow" },
};

export type CompileOptions = {
  /** Milliseconds since the epoch: rules whose time window is closed then are numbered but not enforced. */
  now?: number;
  /**
   * Where the egress CIDR rules go instead of `plan.egress`, one at a time, in plan order: a caller that only
   * encodes them for the kernel builds no object per rule (lib/kernel/entries.ts, compileEncoded). The rule
   * passed is reused for the next one: copy what is kept.
   */
  egressNet?: (rule: NetRuleView) => void;
};

/**
 * The plan of `policy`. With `now` (milliseconds since the epoch, what apply and the agent pass), a rule whose
 * time window is closed then is numbered but not enforced; without it, every rule is in force (lint, explain,
 * simulate and policy test see every rule).
 */
export function compilePolicy(policy: Policy, options: CompileOptions = {}): RuleSetPlan {
  const { spec } = policy;
  const plan = emptyPlan(spec.mode);
  const subjects = new Subjects();
  const egressSink = options.egressNet && netRuleSink(options.egressNet);
  forEachRule(spec, (list, rule, _index, id) => {
    const when = "when" in rule ? rule.when : undefined;
    const closed = when !== undefined && options.now !== undefined && !windowOpen(when, options.now);
    if (when !== undefined) {
      (plan.windows ??= []).push({ rule: id, area: AREA[list].area, when, open: !closed });
    }
    addRule(plan, { list, rule, id } as RuleRef, subjects, closed, egressSink);
  });
  if (subjects.list.length > 0) plan.subjects = subjects.list;
  // Carried to whoever applies the plan (the agent holds no parsed policy): its probes run after the flip.
  if (spec.checks) plan.checks = spec.checks;
  const floor = spec.network?.egress?.nameTtlFloor;
  if (floor !== undefined && plan.egressHosts) plan.nameTtlFloor = floor;
  if (spec.network?.egress?.default === "deny") {
    const info: RuleInfo = { id: "network.egress.default", area: "egress", action: "deny" };
    plan.egressDefaultDeny = { ruleId: plan.rules.push(info) - 1 };
  }
  if (spec.exec?.denyMemfd) {
    plan.denyMemfdExec = {
      ruleId: plan.rules.push({ id: "exec.denyMemfd", area: "exec", action: "deny" }) - 1,
    };
  }
  if (spec.exec?.default === "deny") {
    plan.execDefaultDeny = {
      ruleId: plan.rules.push({ id: "exec.default", area: "exec", action: "deny" }) - 1,
    };
  }
  if (spec.network?.egress?.denyPacketSockets) {
    const info: RuleInfo = { id: "network.egress.denyPacketSockets", area: "egress", action: "deny" };
    plan.denyPacketSockets = { ruleId: plan.rules.push(info) - 1 };
  }
  if (spec.network?.egress?.forwarded) {
    const info: RuleInfo = { id: "network.egress.forwarded", area: "egress", action: "deny" };
    plan.forwarded = { ruleId: plan.rules.push(info) - 1 };
  }
  const ingress = spec.network?.ingress;
  plan.ingress.interfaces = (ingress?.interfaces ?? []).map((name) => ({
    name,
    defaultDrop: ingress?.default === "drop",
    ruleId: 0,
  }));
  plan.scope = { include: [...spec.scope?.cgroups ?? []], exempt: [...spec.scope?.exempt ?? []] };
  if (plan.scope.include.length + plan.scope.exempt.length > 0) {
    plan.scopeGuard = { ruleId: plan.rules.push({ id: "scope.escape", area: "exec", action: "deny" }) - 1 };
    plan.ptraceGuard = { ruleId: plan.rules.push({ id: "scope.ptrace", area: "exec", action: "deny" }) - 1 };
  }
  const egress = spec.network?.egress;
  if (egress?.deny?.length || egress?.allow?.length || egress?.users?.length || plan.egressDefaultDeny) {
    // A route sends the packet to its first hop, not where the egress hooks judged: none while egress rules exist.
    const info: RuleInfo = { id: "network.egress.sourceRoutes", area: "egress", action: "deny" };
    plan.routeGuard = { ruleId: plan.rules.push(info) - 1 };
  }
  const nat64 = new Set(
    [WELL_KNOWN_NAT64, ...spec.network?.egress?.nat64Prefixes ?? []].map((text) =>
      parseCidr(text).addr.slice(0, 12).join(".")
    ),
  );
  plan.nat64Prefixes = [...nat64].map((bytes) => new Uint8Array(bytes.split(".").map(Number)));
  if (plan.subjects) {
    // Numbered last, so that a policy's other rule ids stay what they were before exe rules had a guard.
    // The area of the first rule naming a program: egress, bind, or file for a writer.
    const area = plan.rules[plan.subjects[0]!.ruleId]?.area ?? "egress";
    plan.identityGuard = { ruleId: plan.rules.push({ id: "exe.identity", area, action: "deny" }) - 1 };
  }
  return plan;
}

/**
 * The plan to apply now: rules outside their time window left out (what `policy apply`, rollback and the agent
 * put in the kernel). Checks that must see every rule (lint, the lock-out check) use `compilePolicy` alone.
 */
export function compileForNow(policy: Policy): RuleSetPlan {
  return compilePolicy(policy, { now: windowClock() });
}

/** Numbers the programs rules name: one per distinct (exe, children), 1 up in rule order. */
export class Subjects {
  readonly list: Subject[] = [];
  readonly #byKey = new Map<string, Subject>();

  /** The subject number of a rule's `exe` and `children`; undefined when it names no program. */
  of(rule: SubjectSpec, ruleId: number): number | undefined {
    if (rule.exe === undefined) return undefined;
    const children = rule.children === true;
    const key = `${children ? "tree" : "self"}:${rule.exe}`;
    let subject = this.#byKey.get(key);
    if (!subject) {
      subject = { subject: this.list.length + 1, exe: rule.exe, children, optional: false, ruleId };
      this.list.push(subject);
      this.#byKey.set(key, subject);
    }
    // An exe is optional only when every rule naming it says so: one that requires it wins.
    subject.optional = this.#optional(key, rule.optional === true);
    return subject.subject;
  }

  readonly #required = new Set<string>();
  #optional(key: string, optional: boolean): boolean {
    if (!optional) this.#required.add(key);
    return !this.#required.has(key);
  }
}

type SubjectSpec = {
  exe?: string | undefined;
  children?: boolean | undefined;
  optional?: boolean | undefined;
};

/** dpkg, which package upgrades run: the writer a policy needs to let them change protected files. */
export const DPKG_PATH = "/usr/bin/dpkg";

/**
 * The one place a trusted writer joins the plan: its program becomes a subject (one number per distinct
 * exe and children, shared with the network rules that name the same), and `plan.writers` lists it under
 * the rule that made it a writer. files.writers entries come here; so does any other source of writers
 * (e.g. a `trust: dpkg` entry making dpkg one) with its own rule id.
 */
export function addWriter(
  plan: RuleSetPlan,
  subjects: Subjects,
  writer: SubjectSpec,
  ruleId: number,
  allowedOnly = false,
): void {
  const subject = subjects.of(writer, ruleId)!;
  const entry: Writer = { ruleId, subject, exe: writer.exe!, children: writer.children === true };
  if (allowedOnly) entry.allowedOnly = true;
  (plan.writers ??= []).push(entry);
}

function addRule(
  plan: RuleSetPlan,
  entry: RuleRef,
  subjects: Subjects,
  closed = false,
  egressSink?: NetRuleSink,
): void {
  const { area, action } = AREA[entry.list];
  const info: RuleInfo = { id: entry.id, area, action };
  if (entry.rule.tags !== undefined && entry.rule.tags.length > 0) info.tags = [...entry.rule.tags];
  if (
    entry.list === "files.deny" || entry.list === "exec.deny" || entry.list === "exec.allow" ||
    entry.list === "files.protect"
  ) {
    if (entry.rule.path !== undefined) info.path = entry.rule.path;
  }
  if ("host" in entry.rule && entry.rule.host !== undefined) info.host = canonicalHost(entry.rule.host);
  const ruleId = plan.rules.push(info) - 1;
  if (closed) return; // outside its time window: numbered, nothing enforced
  if (entry.list === "files.writers") {
    info.exe = entry.rule.exe;
    addWriter(plan, subjects, entry.rule, ruleId);
    return;
  }
  const subject = "exe" in entry.rule ? subjects.of(entry.rule, ruleId) : undefined;
  if (subject !== undefined) info.exe = (entry.rule as SubjectSpec).exe!;
  switch (entry.list) {
    case "files.deny":
    case "exec.deny": {
      const { path, recursive, optional, maxFiles } = entry.rule;
      const target = {
        ruleId,
        path,
        ...recursive && { recursive },
        ...optional && { optional },
        ...maxFiles !== undefined && { maxFiles },
      };
      (entry.list === "files.deny" ? plan.files : plan.exec).push(target);
      return;
    }
    case "exec.allow": {
      const { path, recursive, optional, maxFiles, sha256, trust } = entry.rule;
      if (trust !== undefined || path === undefined) {
        // The schema lets an entry without a path through only with trust.
        (plan.execTrust ??= []).push({ ruleId, source: trust ?? "dpkg" });
        // dpkg (and what it runs) replaces the files it trusts by rename: their allowance passes to the new
        // inodes, so an upgrade keeps them runnable with no agent; it may not write protected files for it.
        addWriter(plan, subjects, { exe: DPKG_PATH, children: true, optional: true }, ruleId, true);
        return;
      }
      (plan.execAllow ??= []).push({
        ruleId,
        path,
        ...recursive && { recursive },
        ...optional && { optional },
        ...maxFiles !== undefined && { maxFiles },
        ...sha256 !== undefined && { sha256: sha256.toLowerCase() },
      });
      return;
    }
    case "files.protect": {
      const { path, recursive, optional } = entry.rule;
      (plan.protect ??= []).push({
        ruleId,
        path,
        ...recursive && { recursive },
        ...optional && { optional },
      });
      return;
    }
    case "network.egress.deny":
    case "network.egress.allow":
      if (info.host !== undefined) {
        hostRules(plan.egressHosts ??= [], entry.rule, { ruleId, action, host: info.host }, subject);
      } else if (egressSink) egressSink(entry.rule, ruleId, action, subject);
      else addNetRules(plan.egress, entry.rule, ruleId, action, subject);
      return;
    case "network.ingress.allow":
    case "network.ingress.deny":
      addNetRules(plan.ingress.rules, entry.rule, ruleId, action);
      return;
    case "network.egress.users":
      plan.egressUsers.push(userRule(entry.rule, ruleId, subject));
      return;
    case "network.bind.deny":
      plan.bind.push(...bindRules(entry.rule, ruleId, subject));
      return;
    case "network.ingress.failsafe":
      plan.ingress.failsafe.push(...portRules(entry.rule, ruleId));
  }
}

/**
 * Each network a rule stands for, with each port: both families for a rule without a cidr (`::ffff:` networks
 * as IPv4), one per port. `first`: the first port of its network (the address is the same object for all).
 */
function forEachNetRule(
  rule: NetRuleSpec,
  visit: (network: Cidr, port: number | undefined, first: boolean) => void,
): void {
  const ports = rule.ports ?? (rule.port === undefined ? NO_PORT : [rule.port]);
  for (const text of rule.cidr === undefined ? EVERYWHERE : [rule.cidr]) {
    const network = unmapIpv4(parseCidr(text));
    for (let i = 0; i < ports.length; i++) visit(network, ports[i], i === 0);
  }
}

/**
 * Adds one NetRule per family (for a rule without a cidr) and per port to `rules`. Builds nothing on the way:
 * a fleet policy's 100,000 rules each add one.
 */
function addNetRules(
  rules: NetRule[],
  rule: NetRuleSpec,
  ruleId: number,
  action: "deny" | "allow",
  subject?: number,
): void {
  forEachNetRule(rule, ({ family, addr, prefixLength }, port, first) => {
    // Each rule its own copy of the address: a plan is data its users may change.
    const net: NetRule = { ruleId, action, family, addr: first ? addr : new Uint8Array(addr), prefixLength };
    if (rule.protocol) net.protocol = rule.protocol;
    if (port !== undefined) net.port = port;
    if (subject !== undefined) net.subject = subject;
    rules.push(net);
  });
}

/** What addNetRules would add, for one rule of the policy: handed to a sink (netRuleSink) instead. */
type NetRuleSink = (rule: NetRuleSpec, ruleId: number, action: "deny" | "allow", subject?: number) => void;

/**
 * Hands `sink` what addNetRules would add, one at a time in the same order: the same object each time, filled
 * again for each (no object per rule; one per compile, so nothing of one compile reaches another).
 */
function netRuleSink(sink: (rule: NetRuleView) => void): NetRuleSink {
  const sunk: { -readonly [K in keyof NetRuleView]-?: NetRuleView[K] } = {
    ruleId: 0,
    action: "deny",
    family: 4,
    addr: new Uint8Array(4),
    prefixLength: 0,
    protocol: undefined,
    port: undefined,
    subject: undefined,
  };
  return (rule, ruleId, action, subject) => {
    forEachNetRule(rule, ({ family, addr, prefixLength }, port) => {
      sunk.ruleId = ruleId;
      sunk.action = action;
      sunk.family = family;
      sunk.addr = addr;
      sunk.prefixLength = prefixLength;
      sunk.protocol = rule.protocol;
      sunk.port = port;
      sunk.subject = subject;
      sink(sunk);
    });
  };
}

/** One HostRule per port (one without a port: every port) of an egress rule by host name. */
function hostRules(
  rules: HostRule[],
  rule: EgressRuleSpec,
  { ruleId, action, host }: Pick<HostRule, "ruleId" | "action" | "host">,
  subject?: number,
): void {
  const ports = rule.ports ?? (rule.port === undefined ? NO_PORT : [rule.port]);
  for (const port of ports) {
    rules.push({
      ruleId,
      action,
      host,
      ...rule.protocol && { protocol: rule.protocol },
      ...port !== undefined && { port },
      ...subject !== undefined && { subject },
    });
  }
}

function portRules(rule: PortRuleSpec, ruleId: number): PortRule[] {
  const ports = rule.ports ?? (rule.port === undefined ? [] : [rule.port]);
  const protocols = rule.protocol ? [rule.protocol] : PORT_PROTOCOLS;
  return ports.flatMap((port) => protocols.map((protocol) => ({ ruleId, port, protocol })));
}

/** One BindRule per port; without a protocol it stands for every protocol with ports (see BindRule). */
function bindRules(rule: PortRuleSpec, ruleId: number, subject?: number): BindRule[] {
  const ports = rule.ports ?? (rule.port === undefined ? [] : [rule.port]);
  return ports.map((port) => ({
    ruleId,
    port,
    ...rule.protocol && { protocol: rule.protocol },
    ...subject !== undefined && { subject },
  }));
}

function userRule(rule: UserRuleSpec, ruleId: number, subject?: number): RuleSetPlan["egressUsers"][number] {
  const ports = {
    ruleId,
    ports: [...rule.allowPorts ?? rule.denyPorts ?? []],
    ...subject !== undefined && { subject },
  };
  const portsAre = rule.allowPorts ? "allowed" as const : "denied" as const;
  return rule.uid !== undefined
    ? { ...ports, portsAre, uid: rule.uid }
    : { ...ports, portsAre, gid: rule.gid! };
}
