/**
 * Lint: what a valid policy probably gets wrong. Pure: what it needs to know about the host comes in as
 * `LintFacts` (see `facts.ts`). Each finding names its rule and where the rule is written.
 */
import type { UntrustedFile } from "../dpkg/trust.ts";
import type { Position } from "../errors.ts";
import { type Cidr, networkOf } from "./cidr.ts";
import { compilePolicy, DPKG_PATH } from "./compile.ts";
import { decide, matchSubjects, toPacket } from "./decide.ts";
import { DOH_ADDRESSES, DOH_NAMES, DOT_PORT, hostCovers } from "./host_name.ts";
import type { InodeTarget, NetRule, RuleSetPlan } from "./plan.ts";
import { type Policy, type PolicyPath, type PolicyRule, policyRules } from "./schema.ts";

/** What a path names on the host: where it leads and the inode it is (`dev:ino`). */
export type PathFact = { realPath: string; identity: string };

/** The survival set's entry for the binary that runs aegisbpf (the Deno runtime, or the compiled binary). */
export const AEGISBPF_BINARY = "the aegisbpf binary";

export type LintFacts = {
  /** Nameserver addresses from /etc/resolv.conf. */
  resolvers: readonly string[];
  /** The ports sshd listens on. */
  sshPorts: readonly number[];
  /**
   * The operator's own SSH connection, when lint runs inside one: the client address and the server port
   * (and the client's port, the destination of the server's side of the session).
   */
  sshClient?: { addr: string; port: number; clientPort?: number };
  /** What must keep working: PID 1's executable, the aegisbpf binary, shells, sshd, and (as a tree) state. */
  survival: readonly (PathFact & { why: string; tree?: boolean })[];
  /**
   * aegisbpf's own directories (state, configuration with its keys and break-glass marker): what it writes
   * to apply, roll back and break glass, so files.protect may not cover them while no writer is trusted.
   */
  ownDirectories?: readonly (PathFact & { why: string })[];
  /** Parts of the survival set this process could not read (PID 1's executable), the errno, what to do. */
  unchecked?: readonly { path: string; why: string; error?: string; remedy?: string }[];
  /** The deny paths of the policy that exist, by path as written. */
  paths: ReadonlyMap<string, PathFact>;
  /** kernel.yama.ptrace_scope (0-3), or undefined when Yama is not built in. */
  ptraceScope?: number;
  now: Date;
  /**
   * The dpkg package owning each files.protect path (as written) that one owns, or a file below a recursive
   * one: read only while no files.writers entry runs dpkg (DPKG_PATH). Absent: not known.
   */
  dpkgOwners?: ReadonlyMap<string, string>;
  /** Whether this host forwards packets (net.ipv4.ip_forward, net.ipv6.conf.all.forwarding); unknown: absent. */
  forwarding?: { ipv4: boolean; ipv6: boolean };
  /**
   * With a `trust: dpkg` entry: the real paths it trusts here, the files it leaves untrusted, or why dpkg's
   * database could not be read.
   */
  trust?: { trusted: ReadonlySet<string>; untrusted: readonly UntrustedFile[]; error?: string };
};

export type LintCode =
  | "duplicate"
  | "shadowed"
  | "no-effect"
  | "ssh-lockout"
  | "survival-set"
  | "survival-unchecked"
  | "trust-unreadable"
  | "trust-untrusted"
  | "protects-own-state"
  | "protects-dpkg-files"
  | "resolver-denied"
  | "missing-path"
  | "packet-sockets-unexempt"
  | "exempt-delegated"
  | "scope-unguarded"
  | "ptrace-yama"
  | "forwarded-unjudged"
  | "egress-default-lockout"
  | "dns-unallowed"
  | "doh-allowed"
  | "allow-upgrades"
  | "expired";

export type Warning = {
  code: LintCode;
  severity: "error" | "warning";
  ruleId?: string;
  position: Position;
  /** `FILE:LINE:COL: what`, ready to print. */
  message: string;
};

type Locate = (path: PolicyPath) => Position;

/** Every finding for `policy`, in file order. */
export function lintPolicy(policy: Policy, locate: Locate, facts: LintFacts): Warning[] {
  const plan = compilePolicy(policy);
  const report = new Report(locate, policyRules(policy));
  // Rules of one program, and those naming none, apart: a rule only shadows or repeats one of its own kind.
  for (const rules of Map.groupBy(plan.egress, (rule) => rule.subject ?? 0).values()) {
    lintNetRules(rules, report, plan.egressDefaultDeny !== undefined);
  }
  lintNetRules(plan.ingress.rules, report, plan.ingress.interfaces.some((iface) => iface.defaultDrop));
  lintResolvers(plan, report, facts);
  lintMissingPaths(plan, report, facts);
  lintSpec(policy, report, facts);
  lintDpkgProtected(plan, report, facts);
  lintLockout(plan, report, facts);
  lintEgressScope(plan, report, facts);
  lintNames(plan, report, facts);
  // Not a lock-out risk: the apply lists these files too, and fails on an unreadable database itself.
  lintTrust(plan, report, facts);
  return report.sorted();
}

/**
 * What `policy apply` refuses without --force: a lock-out of the operator's SSH or a denial of what the
 * host and aegisbpf need to run. Also part of `lintPolicy`; cheap enough for every apply.
 */
export function lockoutRisks(policy: Policy, locate: Locate, facts: LintFacts): Warning[] {
  return lockoutCheck(policy, locate, facts).risks;
}

/**
 * `lockoutRisks`, and apart from them what this process could not check (`survival-unchecked`): not a risk
 * of the policy, so never refused on, but said.
 */
export function lockoutCheck(
  policy: Policy,
  locate: Locate,
  facts: LintFacts,
  plan: RuleSetPlan = compilePolicy(policy),
): { risks: Warning[]; unchecked: Warning[] } {
  // The rule entries (an id and a path each) are built only when there is a finding to place.
  const report = new Report(locate, () => policyRules(policy));
  lintLockout(plan, report, facts);
  const found = report.sorted();
  const unchecked = (warning: Warning) => warning.code === "survival-unchecked";
  return { risks: found.filter((warning) => !unchecked(warning)), unchecked: found.filter(unchecked) };
}

function lintLockout(plan: RuleSetPlan, report: Report, facts: LintFacts): void {
  lintSsh(plan, report, facts);
  lintSurvival(plan, report, facts);
  lintEgressDefault(plan, report, facts);
  lintAllowSurvival(plan, report, facts);
  lintProtectedOwnState(plan, report, facts);
}

/** The egress default's warnings that are no lock-out (a scope that reaches no resolver). */
function lintEgressScope(plan: RuleSetPlan, report: Report, facts: LintFacts): void {
  if (plan.scope.include.length > 0) lintEgressDefault(plan, report, facts, false);
}

/**
 * network.egress.default: deny. Host-wide (no scope.cgroups), what the host needs must stay reachable, or
 * apply refuses: the operator's SSH session (its peer: the sweep closes connections to what the default
 * denies), and DNS (every resolver of /etc/resolv.conf, port 53, UDP and TCP). aegisbpf itself needs only
 * loopback, which the default never denies. With a scope, a scope that cannot reach any resolver is
 * warned about: its programs cannot resolve names.
 */
const DEFAULT_PATH: PolicyPath = ["spec", "network", "egress", "default"];

function lintEgressDefault(plan: RuleSetPlan, report: Report, facts: LintFacts, lockoutOnly = true): void {
  const deny = plan.egressDefaultDeny;
  if (!deny) return;
  const hostWide = plan.scope.include.length === 0;
  const at = (code: LintCode, what: string, severity: Warning["severity"] = "warning") =>
    report.at(DEFAULT_PATH, code, `network.egress.default: ${what}`, severity, "network.egress.default");
  const denied = (addr: string, port: number, protocol: "tcp" | "udp") =>
    decide(plan, { area: "egress", addr, port, protocol, ...!hostWide && { cgroup: plan.scope.include[0]! } })
      .ruleId !== undefined;
  if (hostWide && facts.sshClient && denied(facts.sshClient.addr, facts.sshClient.clientPort ?? 0, "tcp")) {
    at(
      "egress-default-lockout",
      `denies your SSH session's peer ${facts.sshClient.addr}: the sweep would close the session; allow it ` +
        `(e.g. allow: [{ cidr: ${facts.sshClient.addr}/${
          facts.sshClient.addr.includes(":") ? 128 : 32
        } }]) ` +
        "or scope the policy with scope.cgroups",
      "error",
    );
  }
  const resolvers = facts.resolvers.filter((resolver) =>
    denied(resolver, 53, "udp") || denied(resolver, 53, "tcp")
  );
  if (resolvers.length === 0) return;
  if (hostWide) {
    at(
      "egress-default-lockout",
      `denies DNS to ${resolvers.join(", ")} (resolvers in /etc/resolv.conf): allow them on port 53 ` +
        "(udp and tcp) or scope the policy with scope.cgroups",
      "error",
    );
  } else if (!lockoutOnly && resolvers.length === facts.resolvers.length) {
    at(
      "dns-unallowed",
      `the scope reaches no resolver of /etc/resolv.conf (${resolvers.join(", ")}) on port 53: its ` +
        "programs cannot resolve names; allow them if they need to",
    );
  }
}

const EXEC_DEFAULT: PolicyPath = ["spec", "exec", "default"];

/**
 * exec.default: deny refuses every executable and library outside exec.allow: the survival set (PID 1,
 * the loader and libc, the shells, sshd, aegisbpf's runtime and what it maps) must all be allowed, or the
 * host cannot start a shell, log in, or run aegisbpf to undo it. Matched by inode and by directory.
 */
function lintAllowSurvival(plan: RuleSetPlan, report: Report, facts: LintFacts): void {
  if (!plan.execDefaultDeny) return;
  for (const { path, why, error, remedy } of facts.unchecked ?? []) {
    report.at(
      EXEC_DEFAULT,
      "survival-unchecked",
      `cannot read ${path} (${why}) here${error ? `: ${error}` : ""}, so the allowlist is not checked ` +
        `against it${remedy ? `; ${remedy}` : ""}`,
    );
  }
  const allowed = (plan.execAllow ?? []).flatMap(({ path, recursive }) => {
    const fact = facts.paths.get(path);
    return fact ? [{ ...fact, recursive }] : [];
  });
  const missing = facts.survival.filter((needed) =>
    !needed.tree && !facts.trust?.trusted.has(needed.realPath) &&
    !allowed.some((fact) =>
      fact.identity === needed.identity || (fact.recursive && isUnder(needed.realPath, fact.realPath))
    )
  );
  const seen = new Set<string>();
  for (const needed of missing) {
    if (seen.has(needed.realPath)) continue;
    seen.add(needed.realPath);
    report.at(
      EXEC_DEFAULT,
      "survival-set",
      `exec.default: deny refuses ${needed.realPath} (${needed.why}): no exec.allow entry names it; add it`,
      "error",
    );
  }
}

/**
 * files.protect entries that cover aegisbpf's own state or configuration: it could no longer record an
 * apply, roll back, or take a break-glass marker, and with no trusted writers (files.writers) nothing lets
 * it. An entry inside such a directory, the directory itself, or a recursive entry above it.
 */
function lintProtectedOwnState(plan: RuleSetPlan, report: Report, facts: LintFacts): void {
  // The agent as a writer (files.writers naming the aegisbpf binary: the runtime that runs it) may change
  // what it protects, its own state among it.
  const binary = facts.survival.find((entry) => entry.why === AEGISBPF_BINARY);
  const agentWrites = binary !== undefined &&
    (plan.writers ?? []).some((writer) =>
      !writer.allowedOnly && facts.paths.get(writer.exe)?.identity === binary.identity
    );
  if (agentWrites) return;
  for (const { ruleId, path, recursive } of plan.protect ?? []) {
    const fact = facts.paths.get(path);
    if (!fact) continue;
    for (const own of facts.ownDirectories ?? []) {
      const hit = own.identity === fact.identity || isUnder(fact.realPath, own.realPath) ||
        (recursive && isUnder(own.realPath, fact.realPath));
      if (hit) {
        report.rule(
          ruleId,
          "protects-own-state",
          `protects ${own.realPath}, ${own.why}: aegisbpf could no longer apply, roll back or break glass; ` +
            "protect narrower paths, or make the aegisbpf binary a writer (files.writers)",
          "error",
        );
      }
    }
  }
}

export { DPKG_PATH };

/**
 * Whether a files.writers entry of the plan runs dpkg (by the path it names, /usr/bin/dpkg or /bin/dpkg): the
 * writer trust: dpkg implies passes allowances only, and does not count here.
 */
export function dpkgIsWriter(plan: RuleSetPlan): boolean {
  return (plan.writers ?? []).some((writer) =>
    !writer.allowedOnly && (writer.exe === DPKG_PATH || writer.exe === "/bin/dpkg")
  );
}

/**
 * files.protect entries over files a dpkg package owns while dpkg is no writer: the package's next upgrade
 * cannot replace them (dpkg fails, half-configured). A warning: the operator may mean it.
 */
function lintDpkgProtected(plan: RuleSetPlan, report: Report, facts: LintFacts): void {
  if (!facts.dpkgOwners || dpkgIsWriter(plan)) return;
  for (const { ruleId, path, recursive } of plan.protect ?? []) {
    const owner = facts.dpkgOwners.get(path);
    if (owner === undefined) continue;
    const what = recursive ? `files below ${path} belong` : `${path} belongs`;
    report.rule(
      ruleId,
      "protects-dpkg-files",
      `${what} to the dpkg package ${owner}, and no files.writers entry runs ${DPKG_PATH}: its next upgrade ` +
        `will fail; add { exe: ${DPKG_PATH}, children: true } to files.writers`,
    );
  }
}

class Report {
  readonly warnings: Warning[] = [];
  #rules: readonly PolicyRule[] | (() => readonly PolicyRule[]);
  constructor(readonly locate: Locate, rules: readonly PolicyRule[] | (() => readonly PolicyRule[])) {
    this.#rules = rules;
  }

  get rules(): readonly PolicyRule[] {
    if (typeof this.#rules === "function") this.#rules = this.#rules();
    return this.#rules;
  }

  /** A finding about the rule numbered `ruleId` in the plan (rule 0 is the ingress default). */
  rule(ruleId: number, code: LintCode, what: string, severity: Warning["severity"] = "warning"): void {
    const entry = this.rules[ruleId - 1];
    if (!entry) {
      this.at(["spec", "network", "ingress", "default"], code, what, severity);
      return;
    }
    this.at(entry.path, code, `rule ${entry.id}: ${what}`, severity, entry.id);
  }

  at(
    path: PolicyPath,
    code: LintCode,
    what: string,
    severity: Warning["severity"] = "warning",
    ruleId?: string,
  ) {
    const position = this.locate(path);
    const where = [position.file, position.line, position.column].filter((part) => part !== undefined).join(
      ":",
    );
    const warning: Warning = { code, severity, position, message: `${where}: ${what}` };
    this.warnings.push(ruleId === undefined ? warning : { ...warning, ruleId });
  }

  sorted(): Warning[] {
    return this.warnings.toSorted((a, b) =>
      (a.position.line ?? 0) - (b.position.line ?? 0) || (a.position.column ?? 0) - (b.position.column ?? 0)
    );
  }

  name(ruleId: number): string {
    return this.rules[ruleId - 1]?.id ?? "default";
  }
}

/** One kernel key of a network rule: a port rule without a protocol has one per port protocol. */
type Key = { rule: NetRule; text: string };

const PORT_PROTOCOLS = ["tcp", "udp", "udplite"];

function keysOf(rule: NetRule): Key[] {
  const net = `${rule.family}/${rule.prefixLength}/${rule.addr.join(".")}/${rule.port ?? "-"}`;
  const protocols = rule.protocol ? [rule.protocol] : rule.port === undefined ? ["any"] : PORT_PROTOCOLS;
  return protocols.map((protocol) => ({ rule, text: `${net}/${protocol}` }));
}

/** Duplicates and exact ties, rules that more specific ones always override, and allows that carve nothing. */
function lintNetRules(rules: readonly NetRule[], report: Report, defaultDrop: boolean): void {
  const flagged = lintTies(rules, report);
  const index = new NetIndex(rules);
  for (const [ruleId, parts] of Map.groupBy(rules, (rule) => rule.ruleId)) {
    if (flagged.has(ruleId)) continue;
    const over = parts.map((part) => index.covering(part));
    if (over.every((cover) => cover !== undefined)) {
      const names = [...new Set(over.flat().map((rule) => report.name(rule!.ruleId)))].join(", ");
      report.rule(
        ruleId,
        "shadowed",
        `never decides: more specific rules (${names}) cover everything it matches`,
      );
    } else if (
      parts[0]?.action === "allow" && !defaultDrop && !parts.some((part) => index.carvesFromDeny(part))
    ) {
      report.rule(
        ruleId,
        "no-effect",
        "has no effect: an allow only makes an exception to a less specific deny",
      );
    }
  }
}

/** Rules all of whose keys another rule wins: repeats (same action) and allows that lose a tie to a deny. */
function lintTies(rules: readonly NetRule[], report: Report): Set<number> {
  const winners = new Map<string, NetRule>();
  const keys = rules.flatMap(keysOf);
  for (const { rule, text } of keys) {
    const winner = winners.get(text);
    if (!winner || (winner.action === "allow" && rule.action === "deny")) winners.set(text, rule);
  }
  const flagged = new Set<number>();
  for (const [ruleId, own] of Map.groupBy(keys, (key) => key.rule.ruleId)) {
    const beaten = own.map((key) => winners.get(key.text)!);
    if (beaten.some((winner) => winner.ruleId === ruleId)) continue;
    flagged.add(ruleId);
    const others = [...new Set(beaten.map((winner) => report.name(winner.ruleId)))].join(", ");
    const action = own[0]!.rule.action;
    if (beaten.every((winner) => winner.action === action)) {
      report.rule(ruleId, "duplicate", `repeats ${others}: same network, ports and protocol`);
    } else {
      report.rule(
        ruleId,
        "shadowed",
        `never applies: ${others} has the same network, ports and protocol, and deny wins a tie`,
      );
    }
  }
  return flagged;
}

/** Network rules by address range (to find those inside a network) and by network (to find those around one). */
class NetIndex {
  readonly #sorted: { rule: NetRule; start: bigint; end: bigint }[];
  readonly #byNetwork: Map<string, NetRule[]>;

  constructor(rules: readonly NetRule[]) {
    this.#sorted = rules.map((rule) => ({ rule, ...range(cidrOf(rule)) }))
      .sort((a, b) => a.rule.family - b.rule.family || compare(a.start, b.start));
    this.#byNetwork = Map.groupBy(rules, (rule) => networkKey(cidrOf(rule)));
  }

  /**
   * The strictly more specific rules that together match every address `rule` matches, for all of its
   * ports and protocols; undefined when they leave a gap.
   */
  covering(rule: NetRule): NetRule[] | undefined {
    const own = range(cidrOf(rule));
    const covers: NetRule[] = [];
    let next = own.start;
    for (let i = this.#first(rule.family, own.start); i < this.#sorted.length; i++) {
      const other = this.#sorted[i]!;
      if (other.rule.family !== rule.family || other.start > own.end) break;
      if (other.rule.prefixLength <= rule.prefixLength || !widerMatch(other.rule, rule)) continue;
      if (other.start > next) return undefined;
      covers.push(other.rule);
      if (other.end >= next) next = other.end + 1n;
    }
    return next > own.end ? covers : undefined;
  }

  /** Whether a less specific deny that `allow` outranks matches some of what `allow` matches. */
  carvesFromDeny(allow: NetRule): boolean {
    const own = cidrOf(allow);
    for (let length = 0; length <= allow.prefixLength; length++) {
      const around = this.#byNetwork.get(networkKey(networkOf({ ...own, prefixLength: length }))) ?? [];
      if (around.some((deny) => deny.action === "deny" && outranks(allow, deny) && overlaps(allow, deny))) {
        return true;
      }
    }
    return false;
  }

  /** The index of the first rule of `family` starting at or after `start`. */
  #first(family: number, start: bigint): number {
    let low = 0;
    let high = this.#sorted.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      const entry = this.#sorted[middle]!;
      if (entry.rule.family < family || (entry.rule.family === family && entry.start < start)) {
        low = middle + 1;
      } else high = middle;
    }
    return low;
  }
}

function compare(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function networkKey(cidr: Cidr): string {
  return `${cidr.family}/${cidr.prefixLength}/${cidr.addr.join(".")}`;
}

/** Whether `a` beats `b` where both match: a longer prefix, or at equal length a port or protocol. */
function outranks(a: NetRule, b: NetRule): boolean {
  return a.prefixLength > b.prefixLength || (a.prefixLength === b.prefixLength && level(a) > level(b));
}

/** Whether some port and protocol is matched by both rules (their networks already nest). */
function overlaps(a: NetRule, b: NetRule): boolean {
  return (a.port === undefined || b.port === undefined || a.port === b.port) &&
    (a.protocol === undefined || b.protocol === undefined || a.protocol === b.protocol);
}

/** Whether `other` matches every port and protocol that `rule` matches. */
function widerMatch(other: NetRule, rule: NetRule): boolean {
  const protocols = (r: NetRule) =>
    r.protocol ? [r.protocol] : r.port === undefined ? ["any"] : PORT_PROTOCOLS;
  const protocolsCovered = protocols(other).includes("any") ||
    protocols(rule).every((protocol) => protocols(other).includes(protocol));
  if (other.port === undefined) return protocolsCovered;
  return other.port === rule.port && protocolsCovered;
}

function level(rule: NetRule): number {
  return rule.port !== undefined ? 2 : rule.protocol !== undefined ? 1 : 0;
}

function cidrOf(rule: NetRule): Cidr {
  return networkOf({ family: rule.family, addr: new Uint8Array(rule.addr), prefixLength: rule.prefixLength });
}

/** The first and last address of a network, as integers. */
function range(cidr: Cidr): { start: bigint; end: bigint } {
  const start = cidr.addr.reduce((value, byte) => (value << 8n) | BigInt(byte), 0n);
  const hostBits = BigInt(cidr.addr.length * 8 - cidr.prefixLength);
  return { start, end: start + (1n << hostBits) - 1n };
}

/** Ingress that would drop the operator's SSH connection, or SSH from everywhere. */
function lintSsh(plan: RuleSetPlan, report: Report, facts: LintFacts): void {
  const { sshClient } = facts;
  for (const iface of plan.ingress.interfaces) {
    if (sshClient) {
      const event = { area: "ingress", interface: iface.name, ...sshClient, protocol: "tcp" } as const;
      const result = decide(plan, event);
      if (result.ruleId === undefined) continue;
      const what =
        `drops your SSH connection from ${sshClient.addr} to port ${sshClient.port} on ${iface.name}`;
      report.rule(result.ruleId, "ssh-lockout", `${what}; add a failsafe or an allow for it`, "error");
      continue;
    }
    for (const port of facts.sshPorts) lintSshPort(plan, report, iface.name, port);
  }
}

function lintSshPort(plan: RuleSetPlan, report: Report, iface: string, port: number): void {
  if (plan.ingress.failsafe.some((rule) => rule.port === port && rule.protocol === "tcp")) return;
  const reaches = (rule: NetRule) =>
    (rule.port === undefined || rule.port === port) &&
    (rule.protocol === undefined || rule.protocol === "tcp");
  const everywhere = plan.ingress.rules.find((rule) =>
    rule.action === "deny" && rule.prefixLength === 0 && reaches(rule)
  );
  const fix = `add failsafe: { ports: [${port}], protocol: tcp }`;
  if (everywhere) {
    report.rule(
      everywhere.ruleId,
      "ssh-lockout",
      `drops SSH (port ${port}) from everywhere on ${iface}; ${fix}`,
      "error",
    );
  } else if (plan.ingress.interfaces.find((i) => i.name === iface)?.defaultDrop) {
    if (plan.ingress.rules.some((rule) => rule.action === "allow" && reaches(rule))) return;
    report.rule(
      0,
      "ssh-lockout",
      `default: drop on ${iface} with no failsafe or allow for SSH (port ${port}); ${fix}`,
      "error",
    );
  }
}

/** Egress denies (of programs no exe rule names) that cover a resolver of /etc/resolv.conf: name resolution would fail. */
function lintResolvers(plan: RuleSetPlan, report: Report, facts: LintFacts): void {
  for (const resolver of facts.resolvers) {
    const denied = new Set(
      (["udp", "tcp"] as const).map((protocol) =>
        matchSubjects(plan.egress, toPacket(resolver, 53, protocol), [])
      )
        .filter((rule) => rule?.action === "deny").map((rule) => rule!.ruleId),
    );
    for (const ruleId of denied) {
      report.rule(ruleId, "resolver-denied", `denies DNS to ${resolver}, a resolver in /etc/resolv.conf`);
    }
  }
}

/**
 * Rules by name, and what an allowlist lets around them: names are learned from the DNS answers the scope
 * receives on port 53, so a scope that reaches no resolver learns none (`dns-unallowed`), and a program that
 * resolves through DNS over HTTPS (a known endpoint, by name or address) or over TLS (port 853) learns
 * names no hook sees (`doh-allowed`).
 */
function lintNames(plan: RuleSetPlan, report: Report, facts: LintFacts): void {
  const hosts = plan.egressHosts ?? [];
  const cgroup = plan.scope.include[0];
  const allows = new Set<number>();
  const warnOnce = (ruleId: number, what: string) => {
    if (allows.has(ruleId)) return;
    allows.add(ruleId);
    report.rule(ruleId, "doh-allowed", what);
  };
  for (const rule of hosts) {
    if (rule.action !== "allow") continue;
    const endpoint = DOH_NAMES.find((name) => hostCovers(rule.host, name));
    if (endpoint && (rule.port === undefined || rule.port === 443)) {
      warnOnce(
        rule.ruleId,
        `allows ${endpoint}, a DNS-over-HTTPS endpoint: names resolved through it are learned by no hook`,
      );
    }
  }
  for (const rule of [...plan.egress, ...hosts]) {
    if (rule.action === "allow" && rule.port === DOT_PORT) {
      warnOnce(
        rule.ruleId,
        `allows port ${DOT_PORT}, DNS over TLS: names resolved through it are learned by no hook`,
      );
    }
  }
  if (plan.egressDefaultDeny) {
    for (const addr of DOH_ADDRESSES) {
      const packet = toPacket(addr, 443, "tcp");
      const rule = matchSubjects(plan.egress, packet, []);
      if (rule?.action !== "allow") continue;
      warnOnce(
        rule.ruleId,
        `allows ${addr} on port 443, a DNS-over-HTTPS endpoint: names resolved through it are learned by no hook`,
      );
    }
  }
  const first = hosts[0];
  const said = report.warnings.some((w) => w.code === "dns-unallowed" || w.code === "egress-default-lockout");
  if (!first || said || facts.resolvers.length === 0) return;
  const reached = facts.resolvers.some((resolver) =>
    decide(plan, { area: "egress", addr: resolver, port: 53, protocol: "udp", ...cgroup && { cgroup } })
      .ruleId === undefined
  );
  if (!reached) {
    report.rule(
      first.ruleId,
      "dns-unallowed",
      `names are learned from the DNS answers the scope receives, and it reaches no resolver of ` +
        `/etc/resolv.conf (${facts.resolvers.join(", ")}) on port 53: allow them (udp and tcp)`,
    );
  }
}

/** File and exec deny rules with their rule numbers, in rule order. */
function inodeRules(plan: RuleSetPlan): InodeTarget[] {
  return [...plan.files, ...plan.exec].sort((a, b) => a.ruleId - b.ruleId);
}

/** Deny, allow and protect paths, and programs (exe), that do not exist: an error, unless the rule says optional. */
function lintMissingPaths(plan: RuleSetPlan, report: Report, facts: LintFacts): void {
  const programs = (plan.subjects ?? []).map(({ ruleId, exe, optional }) => ({
    ruleId,
    path: exe,
    optional,
  }));
  const rules = [...inodeRules(plan), ...plan.execAllow ?? [], ...programs, ...plan.protect ?? []]
    .sort((a, b) => a.ruleId - b.ruleId);
  for (const { ruleId, path, optional } of rules) {
    if (facts.paths.has(path)) continue;
    const what = optional
      ? "does not exist (optional: skipped)"
      : "does not exist; fix it or mark it optional: true";
    report.rule(ruleId, "missing-path", `${path} ${what}`, optional ? "warning" : "error");
  }
}

/** Denials of what the host or aegisbpf needs to keep running, matched by inode and by directory. */
function lintSurvival(plan: RuleSetPlan, report: Report, facts: LintFacts): void {
  const rules = inodeRules(plan);
  const first = rules[0];
  for (const { path, why, error, remedy } of first ? facts.unchecked ?? [] : []) {
    report.rule(
      first!.ruleId,
      "survival-unchecked",
      `cannot read ${path} (${why}) here${error ? `: ${error}` : ""}, so file and exec rules are not ` +
        `checked against it${remedy ? `; ${remedy}` : ""}`,
    );
  }
  for (const { ruleId, path, recursive } of rules) {
    const fact = facts.paths.get(path);
    if (!fact) continue;
    for (const needed of facts.survival) {
      const hit = needed.identity === fact.identity ||
        (recursive && isUnder(needed.realPath, fact.realPath)) ||
        (needed.tree && isUnder(fact.realPath, needed.realPath));
      if (hit) report.rule(ruleId, "survival-set", `denies ${needed.realPath}, ${needed.why}`, "error");
    }
  }
}

/** The delegated subtree a cgroup path lies in (systemd's per-user manager, user@UID.service), if any. */
function delegatedSubtree(path: string): string | undefined {
  const segments = path.split("/");
  const at = segments.findIndex((segment) => /^user@\d+\.service$/.test(segment));
  return at < 0 ? undefined : segments.slice(0, at + 1).join("/");
}

function isUnder(path: string, directory: string): boolean {
  return path === directory || path.startsWith(directory === "/" ? "/" : `${directory}/`);
}

/**
 * What kernel.yama.ptrace_scope already does about a task in scope tracing one outside it (the ptrace
 * guard's job); undefined at 0 (any process of the same uid) or without Yama, where it does nothing.
 */
export function yamaCoverage(ptraceScope: number | undefined): string | undefined {
  const setting = `kernel.yama.ptrace_scope=${ptraceScope}`;
  switch (ptraceScope) {
    case 1:
      return `${setting} covers only non-descendants: a task in scope can still trace its own children ` +
        "outside the scope, and any process that allowed it (PR_SET_PTRACER); the ptrace guard (BPF-LSM) " +
        "covers those";
    case 2:
      return `${setting} already covers the ptrace guard for tasks without CAP_SYS_PTRACE: only those ` +
        "may attach; the guard (BPF-LSM) also stops them in scope";
    case 3:
      return `${setting} already covers the ptrace guard: no task may attach to another (until reboot)`;
    default:
      return undefined;
  }
}

/**
 * A host that forwards packets carries traffic no socket hook sees (a tun device of an unprivileged user,
 * a tunnel): egress CIDR rules that leave `forwarded` off do not judge it.
 */
function lintForwarding(policy: Policy, report: Report, facts: LintFacts): void {
  const egress = policy.spec.network?.egress;
  if (egress?.forwarded && !(egress.deny?.length || egress.allow?.length)) {
    report.at(
      ["spec", "network", "egress", "forwarded"],
      "no-effect",
      "forwarded: true judges forwarded packets by the egress deny and allow rules, and there are none",
    );
  }
  if (!facts.forwarding || egress?.forwarded || !(egress?.deny?.length || egress?.allow?.length)) return;
  const on = [
    ...facts.forwarding.ipv4 ? ["net.ipv4.ip_forward"] : [],
    ...facts.forwarding.ipv6 ? ["net.ipv6.conf.all.forwarding"] : [],
  ];
  if (on.length === 0) return;
  report.at(
    ["spec", "network", "egress"],
    "forwarded-unjudged",
    `this host forwards packets (${on.join(", ")} = 1) and the egress rules do not judge forwarded ` +
      "traffic: a tun device or a tunnel carries it to denied destinations; set forwarded: true",
  );
}

/**
 * `trust: dpkg` on this host: a database that cannot be read (the apply would fail), the files it leaves
 * untrusted (they would be refused in enforce).
 */
function lintTrust(plan: RuleSetPlan, report: Report, facts: LintFacts): void {
  const target = plan.execTrust?.[0];
  if (!target || !facts.trust) return;
  if (facts.trust.error !== undefined) {
    report.rule(target.ruleId, "trust-unreadable", facts.trust.error, "error");
    return;
  }
  const { untrusted } = facts.trust;
  if (untrusted.length === 0) return;
  const shown = untrusted.slice(0, 5).map((file) => `${file.path} (${file.package}: ${file.reason})`);
  report.rule(
    target.ruleId,
    "trust-untrusted",
    `${untrusted.length} files dpkg lists could run but stay untrusted (refused in enforce): ${
      shown.join(", ")
    }` +
      (untrusted.length > shown.length ? `, and ${untrusted.length - shown.length} more` : "") +
      "; reinstall the package (apt install --reinstall) or allow the file by path",
  );
}

/** What an exec allowlist does not do yet: follow package upgrades; and entries that decide nothing. */
function lintAllowlist(policy: Policy, report: Report): void {
  const exec = policy.spec.exec;
  const dpkgWriter = (policy.spec.files?.writers ?? []).some((writer) =>
    writer.exe === DPKG_PATH || writer.exe === "/bin/dpkg"
  );
  if (exec?.default === "deny" && exec.allow?.some((rule) => rule.trust !== undefined)) {
    report.at(
      EXEC_DEFAULT,
      "allow-upgrades",
      "trust: dpkg makes dpkg (and what it runs) the writer of the files it trusts: a file an upgrade " +
        "replaces stays trusted; a file a package adds is trusted when the dpkg run ends (the package's dpkg " +
        "hook asks the agent to resolve again; without a running agent, apply again): until then a " +
        "maintainer script that runs a file the run just added is refused in enforce",
    );
  } else if (exec?.default === "deny") {
    report.at(
      EXEC_DEFAULT,
      "allow-upgrades",
      dpkgWriter
        ? "dpkg is a writer: an upgrade's replaced files stay allowed, but files a package adds are new " +
          "inodes, untrusted (refused in enforce) until the policy is applied again: re-apply after upgrades"
        : "a package upgrade replaces allowed files with new inodes, which stay untrusted (refused in enforce) " +
          `until the policy is applied again: re-apply after every upgrade, or make ${DPKG_PATH} a writer ` +
          "(files.writers) so that replaced files stay allowed",
    );
  } else if (exec?.allow?.length) {
    report.at(
      ["spec", "exec", "allow"],
      "no-effect",
      "exec.allow decides nothing without exec.default: deny (every executable not denied may run)",
    );
  }
}

/** Cgroups (systemd units) of the usual DHCP clients, which open AF_PACKET sockets. */
const DHCP_CLIENT_UNIT = /dhc|networkd|NetworkManager|connman|ifup|wicked|udhcp|dhcpcd/i;

function lintSpec(policy: Policy, report: Report, facts: LintFacts): void {
  const { spec, metadata } = policy;
  const exempt = spec.scope?.exempt ?? [];
  if (spec.network?.egress?.denyPacketSockets && !exempt.some((path) => DHCP_CLIENT_UNIT.test(path))) {
    report.at(
      ["spec", "network", "egress", "denyPacketSockets"],
      "packet-sockets-unexempt",
      "denyPacketSockets refuses packet sockets, which DHCP clients need, and no exempt cgroup names one; " +
        "exempt their cgroup in scope.exempt, e.g. /system.slice/systemd-networkd.service",
    );
  }
  const scoped = (spec.scope?.cgroups?.length ?? 0) + (spec.scope?.exempt?.length ?? 0) > 0;
  // The guard is loaded with the BPF-LSM programs, which the file, exec and egress areas load.
  const egress = spec.network?.egress;
  const lsmAreas = spec.files?.deny?.length || spec.files?.protect?.length || spec.exec?.deny?.length ||
    spec.exec?.denyMemfd || spec.exec?.default === "deny" ||
    egress?.deny?.length || egress?.allow?.length || egress?.users?.length || egress?.denyPacketSockets;
  if (scoped && !lsmAreas) {
    report.at(
      ["spec", "scope"],
      "scope-unguarded",
      "the guard that keeps tasks from moving out of the scope is a BPF-LSM program, attached with file, " +
        "exec or egress rules: with bind and ingress rules alone, a task in scope can move itself out of it" +
        " (and trace a task outside it: the ptrace guard comes with them)",
    );
  }
  const yama = scoped ? yamaCoverage(facts.ptraceScope) : undefined;
  if (yama) report.at(["spec", "scope"], "ptrace-yama", yama);
  for (const [index, path] of (spec.scope?.exempt ?? []).entries()) {
    const delegated = delegatedSubtree(path);
    if (delegated) {
      report.at(
        ["spec", "scope", "exempt", index],
        "exempt-delegated",
        `${path} lies inside ${delegated}, a subtree systemd delegates to its user: that user can move any ` +
          "of their processes into it, out of every rule (the scope guard stops only tasks in scope)",
      );
    }
  }
  lintForwarding(policy, report, facts);
  lintAllowlist(policy, report);
  if (metadata.notAfter && Date.parse(metadata.notAfter) <= facts.now.getTime()) {
    report.at(["metadata", "notAfter"], "expired", `the policy expired at ${metadata.notAfter}`);
  }
}
