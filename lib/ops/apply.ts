/**
 * The one path by which a checked policy reaches the kernel, shared by `policy apply` and `policy rollback`
 * (and later the agent's reload and the API): history first, then the flip, then the records that say it
 * happened. The order, and how the next command settles a kill -9 at any point, is in
 * `lib/state/apply_state.ts`. Callers hold the state lock.
 */

import { canonical } from "../policy/apply_diff.ts";
import { type ConnectionSweep, kernelCanCloseSockets, sweepConnections } from "../kernel/connections.ts";
import { DataPlane } from "../kernel/dataplane.ts";
import { FILE_FALLBACK_COVERAGE } from "../kernel/load.ts";
import { AppliedWithCleanupError, type NetRulesAhead } from "../kernel/generations.ts";
import { ResolveError, resolvePlan } from "../kernel/resolve.ts";
import { InputError, RefusedError } from "../errors.ts";
import type { PolicyInput } from "./apply_source.ts";
import { withYaml, yaml, YamlNotLoaded } from "../policy/yaml.ts";
import {
  appliedPolicy,
  type AppliedRecord,
  clearApplyIntent,
  readApplied,
  readApplyIntent,
  type Settlement,
  settlePending,
  writeApplied,
  writeApplyIntent,
} from "../state/apply_state.ts";
import { readModeWords } from "../kernel/mode_words.ts";
import { describeAgent, liveAgent } from "../state/agent_lock.ts";
import {
  appendHistory,
  currentEntry,
  type HistoryEntry,
  listHistory,
  raiseVersionCounter,
  setOutcome,
} from "../state/history.ts";
import type { Area, InodeTarget, RuleSetPlan } from "../policy/plan.ts";
import type { Policy } from "../policy/schema.ts";
import { encodeInodes, encodeInodesWithGenerations } from "../state/inode_set.ts";
import type { AllowedInode, ResolvedInode, ResolvedRuleSet, TrustReport } from "../kernel/entries.ts";
import { describeHolder } from "../state/lock_holder.ts";
import { acquireStateLock, type StateLock } from "../state/files.ts";
import { phase, phaseAsync } from "../phases.ts";
import type { NameServer } from "../names/resolve.ts";
import { resolvePlanNames } from "./learn_names.ts";

export type PlaneLocation = { bpffs: string; stateDir: string };

/**
 * Takes the state lock, saying so through `onWait` when another command holds it, and giving up after
 * `timeoutMs` (DEFAULT_LOCK_TIMEOUT_MS when absent) or when `signal` aborts.
 */
export function lockState(
  stateDir: string,
  command: string,
  options: { wait: boolean; onWait: (message: string) => void; timeoutMs?: number; signal?: AbortSignal },
): Promise<StateLock> {
  const { onWait, ...rest } = options;
  return phaseAsync("lock", () =>
    acquireStateLock(stateDir, {
      ...rest,
      command,
      onWait: (holder) => onWait(`waiting for the state lock held by ${describeHolder(holder)}`),
    }));
}

/**
 * Settles `pending` entries an interrupted apply left (see apply_state.ts). Opens the data plane, without
 * attaching anything, only when there is one to settle. Returns what was settled.
 */
export function settleInterruptedApply(where: PlaneLocation): Settlement[] {
  return phase("settle", () => settle(where));
}

function settle(where: PlaneLocation): Settlement[] {
  const entries = listHistory(where.stateDir);
  const intent = readApplyIntent(where.stateDir);
  if (!entries.some((entry) => entry.outcome === "pending")) {
    if (intent) clearApplyIntent(where.stateDir);
    return [];
  }
  let activeGeneration: number;
  {
    using plane = DataPlane.open({ bpffs: where.bpffs, areas: [] });
    activeGeneration = plane.config().activeGen;
  }
  const settled = settlePending(entries, intent, readApplied(where.stateDir), activeGeneration);
  for (const { seq, outcome, raiseCounterTo } of settled) {
    setOutcome(where.stateDir, seq, outcome);
    if (raiseCounterTo !== undefined) raiseVersionCounter(where.stateDir, raiseCounterTo);
  }
  clearApplyIntent(where.stateDir);
  return settled;
}

/**
 * The history entry in force when it is this very policy (same sha256, same mode), the kernel's live
 * generation is the one applied.json names, and the policy's file and exec rules resolve to the inodes that
 * generation denies (and exec.allow to those it allows): applying it again changes nothing (`unchanged`). A rule path replaced since, or a file
 * new under a recursive rule, makes it a real apply; a name that no longer resolves (a path gone, a tree
 * past its maxFiles) is bad input, as it would be for the apply. Read under the state lock, after settling.
 */
export function alreadyInForce(
  where: PlaneLocation,
  plan: RuleSetPlan,
  sha256: string,
): HistoryEntry | undefined {
  return phase("in force check", () => inForce(where, plan, sha256));
}

function inForce(where: PlaneLocation, plan: RuleSetPlan, sha256: string): HistoryEntry | undefined {
  // Time windows: what the policy puts in the kernel depends on when it is applied; always a real apply.
  if (plan.windows) return undefined;
  const applied = readApplied(where.stateDir);
  const entry = currentEntry(listHistory(where.stateDir));
  if (!applied || !entry || entry.seq !== applied.seq || applied.sha256 !== sha256) return undefined;
  if ((applied.mode ?? plan.mode) !== plan.mode) return undefined;
  if (readModeWords(where.bpffs)?.activeGen !== applied.generation) return undefined;
  const now = appliedShape(resolveNames(plan, () => {}, where.stateDir));
  // Key order aside: applied.json comes back through its schema.
  const same = (a: unknown, b: unknown) => canonical(a ?? []) === canonical(b ?? []);
  // The allowlist too: after a package upgrade, applying the same policy again trusts the new inodes.
  const sameAllowed = same(now.allowed, applied.allowed);
  return same(now.inodes, applied.inodes) && same(now.recursive, applied.recursive) && sameAllowed
    ? entry
    : undefined;
}

/** The areas whose programs a plan needs attached. */
export function planAreas(plan: RuleSetPlan): Area[] {
  const areas: Area[] = [];
  if (plan.files.length > 0 || (plan.protect?.length ?? 0) > 0) areas.push("file");
  if (plan.exec.length > 0 || plan.denyMemfdExec || plan.execDefaultDeny) areas.push("exec");
  const egressRules = plan.egress.length + (plan.encodedNet?.egressRules ?? 0);
  if (egressRules > 0 || plan.egressUsers.length > 0 || plan.denyPacketSockets || plan.egressDefaultDeny) {
    areas.push("egress");
  }
  if (plan.bind.length > 0) areas.push("bind");
  if (plan.ingress.interfaces.length > 0) areas.push("ingress");
  // A rule outside its time window attaches its area all the same: opening it is then one flip.
  for (const { area } of plan.windows ?? []) {
    if (area !== "ingress" && !areas.includes(area)) areas.push(area);
  }
  return areas;
}

/**
 * Rules per area, as the summary prints them: the rules the policy wrote. Rule 0 (the ingress default) and
 * the guards a policy brings without naming them (against escaping or tracing out of a scope, against
 * source routes) have rule ids for their events but are not rules of the policy.
 */
export function ruleCounts(plan: RuleSetPlan): Record<Area, number> {
  const counts: Record<Area, number> = { file: 0, exec: 0, egress: 0, bind: 0, ingress: 0 };
  const implied = new Set(
    [plan.scopeGuard, plan.ptraceGuard, plan.routeGuard, plan.identityGuard].map((guard) => guard?.ruleId),
  );
  plan.rules.forEach((rule, ruleId) => {
    if (ruleId > 0 && !implied.has(ruleId)) counts[rule.area]++;
  });
  return counts;
}

/** What history records of the policy an apply writes: where it came from, its text and its identity. */
export type ApplyInput = Pick<PolicyInput, "source" | "kind" | "content" | "sha256" | "keyid"> & {
  /** The SHA-256 of `content` when already known (a plain policy's is its `sha256`): history hashes once. */
  contentSha256?: string;
  name: string;
  version: number;
  /** The policy itself, validated: the sweep compares its egress rules with those in force. */
  policy?: Policy;
  /** Its text, where the sweep's comparison finds an added deny without parsing the policy in force. */
  policyText?: string;
};

export function applyInputOf(input: PolicyInput): ApplyInput {
  const { source, kind, content, sha256, keyid } = input;
  const { policy } = input.parsed;
  const { name, version } = policy.metadata;
  // A plain policy is stored as its own text, whose SHA-256 `sha256` already is.
  const known = kind === "policy" && content === input.policyText && { contentSha256: sha256 };
  return {
    source,
    kind,
    content,
    sha256,
    ...known,
    name,
    version,
    policy,
    policyText: input.policyText,
    ...keyid !== undefined && { keyid },
  };
}

export type ApplyRequest = PlaneLocation & {
  input: ApplyInput;
  plan: RuleSetPlan;
  outcome: "applied" | "rolled-back" | "canary";
  /** For a rollback: the entry re-applied. */
  restoredSeq?: number;
  /** Apply an enforce policy even where this kernel can only audit some of its areas (SPEC section 5). */
  allowPartial: boolean;
  warn: (message: string) => void;
  /** The plan's CIDR rules, written into a map of their own while the checks ran (NetRulesAhead). */
  ahead?: NetRulesAhead;
  /** The resolvers the names of rules by name are resolved with; those of /etc/resolv.conf by default. */
  nameServers?: readonly NameServer[];
};

/**
 * `connections`: for a policy with egress rules, the TCP and connected UDP sockets made before the apply
 * whose destination it denies: closed where the kernel can (enforce, 6.5+), else still open.
 */
export type ApplyResult = {
  entry: HistoryEntry;
  generation: number;
  connections?: ConnectionSweep;
  /** A `trust: dpkg` entry's answer: how many files it trusts, which it left untrusted. */
  trust?: TrustReport;
};

/**
 * Resolves the plan's names and opens the data plane first: a name that does not resolve (exit 2) or an
 * area this kernel cannot enforce (exit 3) stops the apply before anything is recorded or written. Then
 * records the attempt, flips, and records the result. A failed kernel write leaves the kernel as it was
 * (the data plane's guarantee) and the entry `failed`; the error is rethrown.
 */
export async function applyPolicy(request: ApplyRequest): Promise<ApplyResult> {
  const { stateDir, input, plan } = request;
  const { name, version } = input;
  const resolved = phase("resolve", () => resolveNames(plan, request.warn, stateDir));
  // Read before the plane is opened: a plane this command has to load holds no policy yet.
  // A policy in force written in YAML loads the YAML parser here, and only then.
  const sweep = await phaseAsync("sweep check", () => withYaml(() => sweepWanted(request)));
  const answers = await phaseAsync(
    "names",
    () =>
      resolvePlanNames(plan, {
        warn: request.warn,
        ...request.nameServers && { servers: request.nameServers },
      }),
  );
  using plane = phase("open", () => DataPlane.open({ bpffs: request.bpffs, areas: planAreas(plan) }));
  checkEnforceable(plane, plan, request);
  warnProtectFallback(plane, plan, request);
  // Before the flip: the generation that names them finds its names' addresses learned already.
  if (answers.length > 0) plane.learn(plan.egressHosts ?? [], answers, plan.nameTtlFloor);
  const pending = phase("history", () =>
    appendHistory(stateDir, {
      uid: Deno.uid() ?? 0,
      source: input.source,
      kind: input.kind,
      name,
      version,
      sha256: input.sha256,
      ...(input.keyid === undefined ? {} : { keyid: input.keyid }),
      outcome: "pending",
      ...(request.restoredSeq === undefined ? {} : { restoredSeq: request.restoredSeq }),
      content: input.content,
      ...(input.contentSha256 === undefined ? {} : { contentSha256: input.contentSha256 }),
    }));
  const raiseCounterTo = input.kind === "bundle" && request.outcome !== "rolled-back" ? version : undefined;
  let generation: number;
  try {
    phase("intent", () =>
      writeApplyIntent(stateDir, {
        seq: pending.seq,
        fromGeneration: plane.config().activeGen,
        outcome: request.outcome,
        ...(raiseCounterTo === undefined ? {} : { raiseCounterTo }),
        time: new Date().toISOString(),
      }));
    generation = await flipGeneration(plane, resolved, request.warn, request.ahead);
  } catch (error) {
    setOutcome(stateDir, pending.seq, "failed");
    clearApplyIntent(stateDir);
    throw error;
  }
  const entry = phase("record", () => {
    writeApplied(stateDir, {
      seq: pending.seq,
      name,
      version,
      sha256: input.sha256,
      contentSha256: pending.contentSha256,
      generation,
      time: new Date().toISOString(),
      ...appliedShape(resolved),
    });
    const entry = setOutcome(stateDir, pending.seq, request.outcome);
    if (raiseCounterTo !== undefined) raiseVersionCounter(stateDir, raiseCounterTo);
    clearApplyIntent(stateDir);
    return entry;
  });
  const connections = sweep ? phase("sweep", () => sweepAfterApply(plane, request.warn)) : undefined;
  if (plan.mode === "enforce" && plane.config().forceAudit) request.warn(forcedAuditWarning(stateDir));
  // Released here rather than when the function returns, so that its time is a phase of its own.
  phase("close", () => plane.close());
  return {
    entry,
    generation,
    ...connections && { connections },
    ...resolved.trust && { trust: resolved.trust },
  };
}

/** An enforce policy applied while the forced-audit word is on: it is recorded, and audits until lifted. */
function forcedAuditWarning(stateDir: string): string {
  const agent = liveAgent(stateDir);
  const who = agent
    ? `the running agent's --audit floor (${describeAgent(agent)})`
    : "left by a stopped run --audit agent or a detach that did not finish";
  return `the kernel forces audit (${who}): the policy is in force in enforce mode but audits until ` +
    "aegisbpf run starts without --audit";
}

/**
 * An enforce policy using an area this kernel can only audit (or not serve at all) is refused, naming the
 * area and why, unless the operator allows running those areas audit-only.
 */
export function checkEnforceable(
  plane: Pick<DataPlane, "status">,
  plan: RuleSetPlan,
  request: Pick<ApplyRequest, "allowPartial" | "warn">,
): void {
  const partial = unenforceableAreas(plane, plan).map(({ area, mode, reason }) =>
    `${area} is ${mode}${reason === undefined ? "" : ` (${reason})`}`
  );
  if (partial.length === 0) return;
  const what = `this kernel cannot enforce every area the policy uses: ${partial.join("; ")}`;
  if (!request.allowPartial) {
    throw new RefusedError(
      `Refused: the policy's mode is enforce, but ${what}; pass --allow-partial to ` +
        `run those areas audit-only`,
    );
  }
  request.warn(`${what}; those areas run audit-only (--allow-partial)`);
}

/**
 * files.protect where the file area runs on the open tracepoints (in audit mode too, where nothing is
 * refused anyway): most writes go unreported there, which the operator must hear at every apply.
 */
export function warnProtectFallback(
  plane: Pick<DataPlane, "status">,
  plan: RuleSetPlan,
  request: Pick<ApplyRequest, "warn">,
): void {
  if ((plan.protect?.length ?? 0) === 0 || plane.status.file.mode === "enforce") return;
  request.warn(
    `files.protect is audit-only on this kernel (no BPF-LSM): ${FILE_FALLBACK_COVERAGE}`,
  );
}

/** The areas an enforce plan uses that this kernel cannot enforce, with the mode it can give and why; none for an audit plan. */
export function unenforceableAreas(
  plane: Pick<DataPlane, "status">,
  plan: RuleSetPlan,
): { area: Area; mode: string; reason?: string }[] {
  if (plan.mode !== "enforce") return [];
  return planAreas(plan).flatMap((area) => {
    const { mode, reason } = plane.status[area];
    return mode === "enforce" ? [] : [{ area, mode, ...reason !== undefined && { reason } }];
  });
}

/**
 * What the kernel set holds beside the rules' ids: the mode, the areas attached, the ingress interfaces,
 * and every inode the file and exec rules deny with the path it was found at, so that `health` can tell a
 * rule whose path now holds another file (replaced by rename, deleted) from one still in force.
 */
export function appliedShape(resolved: ResolvedRuleSet): Pick<
  AppliedRecord,
  "mode" | "areas" | "interfaces" | "inodes" | "recursive" | "forward" | "allowed"
> {
  const { plan } = resolved;
  const ruleName = (ruleId: number) => plan.rules[ruleId]?.id ?? `#${ruleId}`;
  // Files found under a recursive rule's directory carry no path: they are kept per rule, compactly.
  const inodes = (area: "file" | "exec", found: readonly ResolvedInode[]) =>
    found.flatMap(({ dev, ino, ruleId, path }) =>
      path === undefined ? [] : [{ rule: ruleName(ruleId), area, path, dev, ino: ino.toString() }]
    );
  const recursive = (
    area: "file" | "exec",
    targets: readonly InodeTarget[],
    found: readonly ResolvedInode[],
  ) =>
    targets.filter((target) => target.recursive).map((target) => {
      const under = found.filter((entry) => entry.ruleId === target.ruleId && entry.path === undefined);
      return {
        rule: ruleName(target.ruleId),
        area,
        path: target.path,
        ...target.maxFiles !== undefined && { maxFiles: target.maxFiles },
        denied: encodeInodes(under),
      };
    });
  return {
    mode: plan.mode,
    areas: planAreas(plan),
    interfaces: plan.ingress.interfaces.map((iface) => iface.name),
    ...resolved.forward && { forward: resolved.forward.map((iface) => iface.name) },
    inodes: [...inodes("file", resolved.files), ...inodes("exec", resolved.exec)],
    recursive: [
      ...recursive("file", plan.files, resolved.files),
      ...recursive("exec", plan.exec, resolved.exec),
    ],
    ...resolved.execAllow && { allowed: allowedShape(resolved.execAllow, ruleName) },
  };
}

/** exec.allow's inodes by rule (and stamp), compactly, as applied.json keeps them for the rule refresh. */
function allowedShape(
  allowed: readonly AllowedInode[],
  ruleName: (ruleId: number) => string,
): NonNullable<AppliedRecord["allowed"]> {
  // Inodes with an i_generation apart, so that a refresh keeps each one's (inode_set.ts).
  const groups = Map.groupBy(
    allowed,
    (inode) => `${inode.ruleId}/${inode.ctimeNs ?? ""}/${inode.generation !== undefined}`,
  );
  return [...groups.values()].map((group) => {
    const { ruleId, ctimeNs, generation } = group[0]!;
    return {
      rule: ruleName(ruleId),
      ...ctimeNs !== undefined && { ctimeNs: ctimeNs.toString() },
      inodes: generation === undefined
        ? encodeInodes(group)
        : encodeInodesWithGenerations(group as (AllowedInode & { generation: number })[]),
    };
  });
}

/**
 * Whether this apply walks the connections made before it (loading the sweep's iterator programs): only
 * when it may deny a connection the policy in force allowed (see `egressWidened`), and only where the walk
 * can do something: close them (enforce, on a kernel with bpf_sock_destroy) or list them (audit). On an
 * older kernel an enforce apply says so instead, and `health` lists what is still open.
 */
function sweepWanted(request: ApplyRequest): boolean {
  const { plan } = request;
  if (!planAreas(plan).includes("egress")) return false;
  const before = request.input.policy && egressInForce(request, request.input);
  if (before && !egressWidened(before, request.input.policy!)) return false;
  if (plan.mode === "audit" || kernelCanCloseSockets()) return true;
  request.warn(
    "connections made before the apply to destinations it denies stay open: this kernel cannot close " +
      "them (bpf_sock_destroy needs Linux 6.5 or later); aegisbpf health lists them",
  );
  return false;
}

/**
 * The policy in force, as far as the sweep needs it: the one applied.json names, when the kernel's live
 * generation is the one it records (not after a detach). Read without validating it again (it was when it
 * was applied); undefined when it cannot be read, and then the apply sweeps.
 */
function egressInForce(where: PlaneLocation, input: ApplyInput): unknown {
  const applied = readApplied(where.stateDir);
  if (!applied || readModeWords(where.bpffs)?.activeGen !== applied.generation) return undefined;
  try {
    const stored = appliedPolicy(where.stateDir);
    if (stored?.entry.seq !== applied.seq) return undefined;
    // A deny added (a one-rule change's usual case) is found in the text alone: no need to parse the policy
    // in force.
    if (input.policyText !== undefined && deniesNewCidr(stored.policyText, input.policyText, input.policy!)) {
      return WIDENED;
    }
    const text = stored.policyText.trimStart();
    return text.startsWith("{") ? JSON.parse(text) : yaml().parse(text);
  } catch (error) {
    if (error instanceof YamlNotLoaded) throw error;
    return undefined;
  }
}

/**
 * Whether `after` may deny a connection `before` allowed: a CIDR deny or users entry it adds (ids aside),
 * an allow exception it drops, or any change of mode, scope or the other egress settings. Pure; anything
 * it cannot read counts as widened.
 */
export function egressWidened(before: unknown, after: Policy): boolean {
  if (before === WIDENED) return true;
  const old = egressOf(before);
  const now = egressOf(after);
  if (!old || !now) return true;
  if (old.mode !== now.mode || old.scope !== now.scope || old.settings !== now.settings) return true;
  return !containsAll(old.deny, now.deny) || !containsAll(old.users, now.users) ||
    !containsAll(now.allow, old.allow);
}

/**
 * Whether every key of `inner` is in `outer`. A one-rule change leaves the other rules where they were, so
 * keys at the same place are compared first, and only the few that differ are looked for in `outer`: each
 * by the array's native search while they are few (a rule added), else all at once through a set.
 */
function containsAll(outer: readonly string[], inner: readonly string[]): boolean {
  const missing = new Set<string>();
  for (let i = 0; i < inner.length; i++) if (inner[i] !== outer[i]) missing.add(inner[i]!);
  if (missing.size <= FEW_MISSING) return [...missing].every((key) => outer.includes(key));
  for (let i = 0; i < outer.length && missing.size > 0; i++) missing.delete(outer[i]!);
  return missing.size === 0;
}

/** What `egressInForce` returns when it found the policy in force denies less: no policy, only the answer. */
const WIDENED = Symbol("widened");

/**
 * Whether `after` has an egress deny rule whose CIDR `beforeText` (the policy in force) does not hold
 * anywhere: then no rule in force has it, and `egressWidened` is true. Only where the texts differ is
 * looked at: each CIDR-like word there that `beforeText` lacks is looked for among the deny rules. A
 * one-rule change on 100,000 rules costs a few milliseconds instead of parsing the policy in force. False
 * when it cannot tell: a text in force with escapes (a CIDR could be written escaped), or texts that differ
 * widely; the caller then compares the parsed policies.
 */
export function deniesNewCidr(beforeText: string, afterText: string, after: Policy): boolean {
  const deny = after.spec.network?.egress?.deny;
  if (!deny?.length || beforeText.includes("\\")) return false;
  const start = commonPrefix(beforeText, afterText);
  const end = afterText.length - commonSuffix(beforeText, afterText, start);
  if (end - start > WITNESS_SPAN) return false;
  // The changed span, widened to hold whole any CIDR that overlaps it.
  const changed = afterText.slice(Math.max(0, start - MAX_CIDR_TEXT), end + MAX_CIDR_TEXT);
  for (const [word] of changed.matchAll(CIDR_LIKE)) {
    if (!beforeText.includes(word) && hasCidr(deny, word)) return true;
  }
  return false;
}

/** Whether a rule of `rules` has `cidr`; from the end, where a rule is most often added. */
function hasCidr(rules: readonly { cidr?: string | undefined }[], cidr: string): boolean {
  for (let i = rules.length - 1; i >= 0; i--) if (rules[i]!.cidr === cidr) return true;
  return false;
}

/** Words made of what addresses and prefixes are written with. */
const CIDR_LIKE = /[0-9A-Fa-f.:/]+/g;
/** The longest CIDR text ("ffff:...:ffff/128"), and the widest change the witness looks into. */
const MAX_CIDR_TEXT = 64;
const WITNESS_SPAN = 64 * 1024;
/** The texts are compared in slices of this many characters (each one native comparison), then by character. */
const SLICE = 4096;

function commonPrefix(a: string, b: string): number {
  const limit = Math.min(a.length, b.length);
  let at = 0;
  while (at + SLICE <= limit && a.slice(at, at + SLICE) === b.slice(at, at + SLICE)) at += SLICE;
  while (at < limit && a.charCodeAt(at) === b.charCodeAt(at)) at++;
  return at;
}

/** The length of the common end of `a` and `b`, not reaching back before `prefix`. */
function commonSuffix(a: string, b: string, prefix: number): number {
  const limit = Math.min(a.length, b.length) - prefix;
  let length = 0;
  const same = (n: number) =>
    a.slice(a.length - n, a.length - length) === b.slice(b.length - n, b.length - length);
  while (length + SLICE <= limit && same(length + SLICE)) length += SLICE;
  while (length < limit && a.charCodeAt(a.length - 1 - length) === b.charCodeAt(b.length - 1 - length)) {
    length++;
  }
  return length;
}

/** Keys looked for one by one (each a native scan of `outer`) rather than through one pass over it. */
const FEW_MISSING = 16;

type EgressOf = {
  mode: string;
  scope: string;
  settings: string;
  deny: string[];
  allow: string[];
  users: string[];
};

function egressOf(policy: unknown): EgressOf | undefined {
  const spec = (policy as { spec?: Record<string, unknown> } | undefined)?.spec;
  if (typeof spec !== "object" || spec === null) return undefined;
  const { deny = [], allow = [], users = [], ...settings } =
    ((spec.network as Record<string, unknown> | undefined)?.egress ?? {}) as Record<string, unknown>;
  if (![deny, allow, users].every(Array.isArray)) return undefined;
  // A bare CIDR (a fleet policy's 100,000 rules) is its own key: no string is built for it.
  // The program a rule names is part of what it says: a deny that drops its exe denies more.
  const program = (rule: Record<string, unknown>) =>
    rule.exe === undefined ? "" : `|${rule.exe}|${rule.children === true}`;
  // A rule by name is keyed by its host: two of them name no cidr.
  const netKey = (rule: Record<string, unknown>) =>
    rule.port === undefined && rule.ports === undefined && rule.protocol === undefined &&
      rule.exe === undefined && rule.host === undefined
      ? String(rule.cidr)
      : `${
        rule.host === undefined ? rule.cidr : `host:${rule.host}`
      }|${rule.port}|${rule.ports}|${rule.protocol}${program(rule)}`;
  const userKey = (rule: Record<string, unknown>) =>
    `${rule.uid}|${rule.gid}|${rule.allowPorts}|${rule.denyPorts}${program(rule)}`;
  return {
    mode: String(spec.mode ?? "audit"),
    scope: canonical(spec.scope ?? {}),
    settings: canonical(settings),
    deny: (deny as Record<string, unknown>[]).map(netKey),
    allow: (allow as Record<string, unknown>[]).map(netKey),
    users: (users as Record<string, unknown>[]).map(userKey),
  };
}

/**
 * Connections made before the apply to what it now denies: the sweep runs once the new rules are live.
 * The policy is applied whatever happens here, so a failed sweep is a warning, not a failed apply.
 */
function sweepAfterApply(plane: DataPlane, warn: (message: string) => void): ConnectionSweep | undefined {
  try {
    return sweepConnections(plane.pinDir);
  } catch (error) {
    warn(`the policy is applied, but connections made before it could not be checked: ${error}`);
    return undefined;
  }
}

/** The plan's names resolved on this host; a deny path or cgroup missing here is bad input, named by its rule. */
export function resolveNames(
  plan: RuleSetPlan,
  warn: (message: string) => void,
  stateDir?: string,
): ResolvedRuleSet {
  try {
    return resolvePlan(plan, { warn, ...stateDir !== undefined && { stateDir } });
  } catch (error) {
    if (error instanceof ResolveError) throw new InputError(error.message, { cause: error });
    throw error;
  }
}

/**
 * Writes the resolved rules into the inactive generation and flips to it, returning the generation now
 * active. A failure after the flip (dropping the old generation) leaves the new one live: a warning.
 */
export async function flipGeneration(
  plane: DataPlane,
  resolved: ResolvedRuleSet,
  warn: (message: string) => void,
  ahead?: NetRulesAhead,
): Promise<number> {
  try {
    return await phaseAsync("kernel", async () => {
      // Waited for here, not in apply(): the links apply() attaches are attached in its caller's turn.
      if (ahead) await phaseAsync("wait net_rules", () => ahead.written());
      return await plane.apply(resolved, ahead);
    });
  } catch (error) {
    if (!(error instanceof AppliedWithCleanupError)) throw error;
    warn(error.message);
    return error.generation;
  }
}
