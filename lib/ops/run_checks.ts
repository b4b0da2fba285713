/**
 * What `run` checks before it changes anything, and the plan it applies: the run flags over the policy,
 * the areas this kernel cannot enforce (refused unless --allow-partial), names that do not resolve, state
 * and config directories other users may change; and which rules a new resolution changed. (A second
 * agent is refused by the agent lock: agent_lock.ts.)
 */

import { InputError, RefusedError } from "../errors.ts";
import type { DataPlane } from "../kernel/dataplane.ts";
import type { ResolvedRuleSet } from "../kernel/entries.ts";
import { probeLsmAt } from "../kernel/load.ts";
import { refuseUnsafeAccess } from "../state/access.ts";
import { compileForNow } from "../policy/compile.ts";
import { keysDir } from "../state/key_store.ts";
import type { Area, RuleSetPlan } from "../policy/plan.ts";
import { planAreas, unenforceableAreas } from "./apply.ts";
import type { SourcedPolicy } from "./policy_source.ts";

/** An area `--allow-partial` runs audit-only, and why. */
export type PartialArea = { area: Area; reason: string };

/**
 * The policy's plan with the run flags applied: `--enforce` and the extra ingress interfaces. `--audit` does
 * not change the plan: it is a floor the agent holds in the kernel's forced-audit word while it runs, so
 * the policy keeps its own mode in history and a policy applied by anyone meanwhile stays audited too.
 */
export function planFor(
  sourced: SourcedPolicy,
  options: { requestedMode?: "audit" | "enforce"; configDir: string; ingress: readonly string[] },
): RuleSetPlan {
  if (options.requestedMode === "enforce" && sourced.origin === "default") {
    throw new InputError(
      "--enforce needs a policy: the embedded default only audits; pass --policy FILE or write " +
        `${options.configDir}/policy.yaml`,
    );
  }
  const plan = compileForNow(sourced.input.parsed.policy);
  if (options.requestedMode === "enforce") plan.mode = "enforce";
  const named = new Set(plan.ingress.interfaces.map((iface) => iface.name));
  for (const name of options.ingress) {
    if (named.has(name)) continue;
    named.add(name);
    plan.ingress.interfaces.push({ name, defaultDrop: false, ruleId: 0 });
  }
  return plan;
}

/**
 * Areas the plan enforces that this kernel can only audit: refused (exit 3) unless `allowPartial`, then
 * returned to run audit-only.
 */
export function partialAreas(plane: DataPlane, plan: RuleSetPlan, allowPartial: boolean): PartialArea[] {
  const partial = unenforceableAreas(plane, plan).map(({ area, mode, reason }) => ({
    area,
    reason: reason ?? mode,
  }));
  if (partial.length > 0 && !allowPartial) {
    const what = partial.map(({ area, reason }) => `${area} (${reason})`).join("; ");
    throw new RefusedError(
      `Refused enforce mode: this kernel cannot enforce ${what}; pass --allow-partial to run those areas ` +
        "audit-only, or run --audit",
    );
  }
  return partial;
}

/**
 * The refusal of `partialAreas` before anything is loaded or attached, for the areas that need BPF-LSM: a
 * probe load of the LSM programs alone says whether this kernel takes them.
 */
export function refuseWithoutLsm(plan: RuleSetPlan, allowPartial: boolean, bpffs?: string): void {
  const lsmAreas = planAreas(plan).filter((area) => area === "file" || area === "exec");
  if (plan.mode !== "enforce" || allowPartial || lsmAreas.length === 0) return;
  const probe = probeLsmAt(bpffs === undefined ? undefined : `${bpffs}/aegisbpf`);
  if (probe.ok) return;
  throw new RefusedError(
    `Refused enforce mode: this kernel cannot enforce ${lsmAreas.join(" and ")} rules (${probe.reason}); ` +
      "pass --allow-partial to run those areas audit-only, or run --audit",
  );
}

/**
 * The state, config and keys directories (where they exist) must be aegisbpf's alone: one another user
 * owns or may write is refused (exit 3) with the fix; one others may read or enter is a warning.
 */
export function refuseUnsafeDirectories(
  dirs: { stateDir: string; configDir: string },
  warn: (message: string) => void,
): void {
  const named = [
    [dirs.stateDir, "the state directory"],
    [dirs.configDir, "the config directory"],
    [keysDir(dirs.configDir), "the trusted keys directory"],
  ] as const;
  const warnings = named.flatMap(([path, what]) => refuseUnsafeAccess(path, `to run with ${what}`) ?? []);
  for (const { detail, remediation } of warnings) warn(`${detail}; fix it with: ${remediation}`);
}

/** Ids of file, exec, protect and exec.allow rules whose resolved inodes differ between two resolutions. */
export function changedRules(before: ResolvedRuleSet, after: ResolvedRuleSet): string[] {
  const key = (entry: { dev: number; ino: bigint; ruleId: number }) =>
    `${entry.ruleId}:${entry.dev}:${entry.ino}`;
  const ids = new Set<number>();
  for (const area of ["files", "exec", "protect", "execAllow"] as const) {
    const was = new Set((before[area] ?? []).map(key));
    const now = new Set((after[area] ?? []).map(key));
    for (const entry of before[area] ?? []) if (!now.has(key(entry))) ids.add(entry.ruleId);
    for (const entry of after[area] ?? []) if (!was.has(key(entry))) ids.add(entry.ruleId);
  }
  // A program a rule names resolved to another inode (a package upgrade renamed a new binary over it).
  const program = (entry: { subject: number; children: boolean; dev: number; ino: bigint }) =>
    `${entry.subject}:${entry.children}:${entry.dev}:${entry.ino}`;
  const programsBefore = new Set((before.subjects ?? []).map(program));
  const programsAfter = new Set((after.subjects ?? []).map(program));
  const subjectRule = (subject: number) => after.plan.subjects?.[subject - 1]?.ruleId;
  for (const entry of [...before.subjects ?? [], ...after.subjects ?? []]) {
    if (programsBefore.has(program(entry)) !== programsAfter.has(program(entry))) {
      const ruleId = subjectRule(entry.subject);
      if (ruleId !== undefined) ids.add(ruleId);
    }
  }
  if (after.plan.forwarded && forwardChanged(before.forward, after.forward)) {
    ids.add(after.plan.forwarded.ruleId);
  }
  return [...ids].map((id) => after.plan.rules[id]?.id ?? `#${id}`);
}

/** Whether the interfaces forwarded packets are judged on differ: one added, removed, or made anew. */
export function forwardChanged(
  before: ResolvedRuleSet["forward"],
  after: ResolvedRuleSet["forward"],
): boolean {
  const key = (list: ResolvedRuleSet["forward"]) =>
    (list ?? []).map((iface) => `${iface.name}:${iface.ifindex}`).sort().join(",");
  return key(before) !== key(after);
}
