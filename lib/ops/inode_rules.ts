/**
 * What `policy simulate` needs to replay a file or exec event that has no path (an exec the allowlist
 * refused names only the file's name and inode): the candidate's file and exec targets resolved on this
 * host, by inode. Only for events of this host: another host's inode numbers mean nothing here.
 */
import type { ResolvedInode } from "../kernel/entries.ts";
import { resolvePlan } from "../kernel/resolve.ts";
import type { InodeRules } from "../policy/apply_explain.ts";
import { emptyPlan, type RuleSetPlan } from "../policy/plan.ts";

export function localInodeRules(
  plan: RuleSetPlan,
  warn: (message: string) => void,
  stateDir?: string,
): InodeRules | undefined {
  const inodeRules = plan.files.length + plan.exec.length + (plan.execAllow?.length ?? 0) +
    (plan.execTrust?.length ?? 0);
  if (inodeRules === 0) return undefined;
  // Only the inode rules: a scope cgroup or an interface this host lacks does not matter here.
  const inodePart: RuleSetPlan = {
    ...emptyPlan(plan.mode),
    rules: plan.rules,
    files: plan.files,
    exec: plan.exec,
    ...plan.execDefaultDeny && { execDefaultDeny: plan.execDefaultDeny },
    ...plan.execAllow && { execAllow: plan.execAllow },
    ...plan.execTrust && { execTrust: plan.execTrust },
  };
  // The state directory's cache of checked package files (trust: dpkg), when there is one.
  const resolved = resolvePlan(inodePart, {
    warn,
    ...stateDir !== undefined && { stateDir },
    keep: (_target, _area, error) => {
      warn(`${error.message}: events of its files are replayed as if it named none`);
      return [];
    },
  });
  const byInode = new Map<string, number[]>();
  const add = (inode: ResolvedInode) => {
    const key = `${inode.dev}:${inode.ino}`;
    const ids = byInode.get(key);
    if (ids === undefined) byInode.set(key, [inode.ruleId]);
    else if (!ids.includes(inode.ruleId)) ids.push(inode.ruleId);
  };
  for (const inode of resolved.files) add(inode);
  for (const inode of resolved.exec) add(inode);
  for (const inode of resolved.execAllow ?? []) add(inode);
  const host = Deno.hostname();
  return (dev, ino, eventHost) => eventHost === host ? byInode.get(`${dev}:${ino}`) ?? [] : undefined;
}
