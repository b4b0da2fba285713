/**
 * What a rule refresh resolves: the policy in force resolved again, applying what it can. A file or exec
 * rule whose path no longer resolves (deleted and not replaced, a directory now, past its maxFiles) keeps
 * the inodes the kernel denies for it now, as applied.json records them, and is reported; every other rule
 * is resolved afresh. Keeping the last inodes rather than dropping them: a path deleted by `mv` or kept
 * open still reaches the same content, which stays denied; the rule is resolved again as soon as its path
 * is back (the watcher sees it appear). The exec allowlist is kept as applied (`keptAllowed`), never resolved
 * again: a refresh does not trust a file the apply did not.
 */

import type { AllowedInode, ResolvedInode, ResolvedRuleSet } from "../kernel/entries.ts";
import { resolvePlan } from "../kernel/resolve.ts";
import type { RuleSetPlan } from "../policy/plan.ts";
import type { AppliedRecord } from "../state/apply_state.ts";
import { decodeInodes, InodeSet } from "../state/inode_set.ts";
import { InputError } from "../errors.ts";
import { ResolveError } from "../kernel/resolve.ts";

/** A rule the refresh could not resolve, and what its last inodes are. */
export type UnresolvedRule = {
  rule: string;
  area: "file" | "exec";
  path: string;
  error: string;
  /** How many inodes it keeps denying (its last resolution, as applied.json records it). */
  kept: number;
};

export type Refresh = { resolved: ResolvedRuleSet; unresolved: UnresolvedRule[] };

/**
 * Resolves `plan` again; a file or exec rule that fails keeps what `applied` (the record of the live
 * generation, of this same policy) says the kernel denies for it. Anything else that fails to resolve (a
 * scope cgroup, an interface) fails the whole refresh, as an apply would.
 */
export function resolveForRefresh(plan: RuleSetPlan, applied: AppliedRecord | undefined): Refresh {
  const unresolved: UnresolvedRule[] = [];
  const ruleName = (ruleId: number) => plan.rules[ruleId]?.id ?? `#${ruleId}`;
  const allowed = keptAllowed(plan, applied);
  try {
    const resolved = resolvePlan(plan, {
      ...allowed && { allowed },
      keep: (target, area, error) => {
        const rule = ruleName(target.ruleId);
        const kept = keptInodes(applied, rule, area, target.ruleId);
        unresolved.push({ rule, area, path: target.path, error: error.message, kept: kept.length });
        return kept;
      },
    });
    return { resolved, unresolved };
  } catch (error) {
    if (error instanceof ResolveError) throw new InputError(error.message, { cause: error });
    throw error;
  }
}

/**
 * exec.allow's inodes as the apply resolved them, from applied.json: a refresh keeps the allowed set as
 * applied, so that a file replaced or added since (a new inode) stays untrusted until the policy is applied
 * again. Undefined without an allowlist, or for a record that predates the `allowed` field (then resolved).
 */
export function keptAllowed(
  plan: RuleSetPlan,
  applied: AppliedRecord | undefined,
): AllowedInode[] | undefined {
  if (!plan.execDefaultDeny || !applied?.allowed) return undefined;
  const ids = new Map(plan.rules.map((rule, ruleId) => [rule.id, ruleId]));
  return applied.allowed.flatMap(({ rule, ctimeNs, inodes }) => {
    const ruleId = ids.get(rule);
    if (ruleId === undefined) return [];
    const stamp = ctimeNs === undefined ? {} : { ctimeNs: BigInt(ctimeNs) };
    return decodeInodes(inodes).map((inode) => ({ ...inode, ruleId, ...stamp }));
  });
}

/** The inodes applied.json records for `rule` of `area`: listed by path, or a recursive rule's set. */
export function keptInodes(
  applied: AppliedRecord | undefined,
  rule: string,
  area: "file" | "exec",
  ruleId: number,
): ResolvedInode[] {
  if (!applied) return [];
  const listed = (applied.inodes ?? []).filter((inode) => inode.rule === rule && inode.area === area)
    .map(({ dev, ino, path }) => ({ dev, ino: BigInt(ino), ruleId, path }));
  const tree = (applied.recursive ?? []).find((entry) => entry.rule === rule && entry.area === area);
  const under = tree?.denied ? [...new InodeSet(tree.denied).unseen()].map((i) => ({ ...i, ruleId })) : [];
  return [...listed, ...under];
}
