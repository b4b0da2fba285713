/**
 * Stale rules: file and exec rules deny inodes, and `passwd`, `dpkg` or an editor replace a file by
 * renaming a new one over it, so a rule silently stops covering its path. Without an agent watching the
 * paths, `health` and `status` compare each inode the applied set denies with what its path holds now, and
 * walk each recursive rule's directory again (the same bounded walk as the apply, see kernel/tree.ts) for
 * files it does not cover.
 */

import { currentIdentity, describeUnreadable, ResolveError, walkRuleTree } from "../kernel/resolve.ts";
import type { AppliedRecord } from "../state/apply_state.ts";
import { InodeSet } from "../state/inode_set.ts";
import { printable } from "../text/printable.ts";
import { SysError } from "../../ffi/mod.ts";

export type StaleRule = {
  rule: string;
  area: "file" | "exec";
  path: string;
  /** missing: the path is gone; replaced: it holds another inode; new: a file under a recursive rule's
   * directory that the applied set does not hold. */
  problem: "missing" | "replaced" | "new";
  /** The recursive rule's directory, for a denied file under it no longer found there (`path` is it too). */
  under?: string;
  /** The inode denied (absent for `new`). */
  denied?: { dev: number; ino: string };
  /** The inode the path holds now (absent for `missing`). */
  now?: { dev: number; ino: string };
};

/**
 * `known` is false when the applied record predates inode recording (re-apply to record them). `omitted`
 * counts stale files left out of `stale` (at most LISTED_PER_RULE a recursive rule); `errors` are walks that
 * could not finish (a tree past its cap), `warnings` entries that could not be read.
 */
export type StaleCheck = {
  known: boolean;
  checked: number;
  stale: StaleRule[];
  omitted: number;
  errors: string[];
  warnings: string[];
};

/** The most stale files listed for one recursive rule: a directory anyone may write to can hold millions. */
export const LISTED_PER_RULE = 100;

const ENOENT = 2;
const ENOTDIR = 20;

/** With `trees: false` recursive rules' directories are not walked (only the inodes listed one by one). */
export function findStaleRules(
  record: AppliedRecord | undefined,
  options: { trees?: boolean } = {},
): StaleCheck {
  const check: StaleCheck = { known: true, checked: 0, stale: [], omitted: 0, errors: [], warnings: [] };
  if (record === undefined) return check;
  if (record.inodes === undefined) return { ...check, known: false };
  let read: string | undefined;
  const mountinfo = () => read ??= Deno.readTextFileSync("/proc/self/mountinfo");
  const shown = (ino: bigint | string, dev: number) => ({ dev, ino: ino.toString() });
  for (const { rule, area, path, dev, ino } of record.inodes) {
    const denied = { dev, ino };
    const now = currentIdentity(path, mountinfo());
    if (now === undefined) check.stale.push({ rule, area, path, problem: "missing", denied });
    else if (now.dev !== dev || now.ino.toString() !== ino) {
      check.stale.push({ rule, area, path, problem: "replaced", denied, now: shown(now.ino, now.dev) });
    }
  }
  check.checked = record.inodes.length;
  if (options.trees === false) return check;
  for (const { rule, area, path: dir, maxFiles, denied } of record.recursive ?? []) {
    const set = new InodeSet(denied ?? []);
    check.checked += set.size;
    // Records written before the compact form listed each file in `inodes` (checked above by path).
    const listed = new Set(record.inodes.filter((inode) => inode.rule === rule).map((inode) => inode.path));
    let listedHere = 0;
    const add = (stale: StaleRule) => {
      if (listedHere++ < LISTED_PER_RULE) check.stale.push(stale);
      else check.omitted++;
    };
    try {
      const target = { ruleId: 0, path: dir, recursive: true, ...maxFiles !== undefined && { maxFiles } };
      const report = walkRuleTree(target, rule, mountinfo(), (identities, path) => {
        // Every identity is marked (no short cut): each overlay layer's copy counts as seen.
        const covered = identities.map(({ dev, ino }) => set.see(dev, ino)).includes(true);
        if (covered || listed.has(path)) return;
        add({ rule, area, path, problem: "new", now: shown(identities[0]!.ino, identities[0]!.dev) });
      });
      if (report.unreadable.count > 0) check.warnings.push(describeUnreadable(rule, dir, report.unreadable));
    } catch (error) {
      if (error instanceof ResolveError) {
        check.errors.push(error.message.replace("nothing was applied", "the next apply will fail"));
        continue;
      }
      // The directory is gone: each file it held shows as missing.
      if (!(error instanceof SysError && (error.errno === ENOENT || error.errno === ENOTDIR))) throw error;
    }
    for (const { dev, ino } of set.unseen()) {
      add({ rule, area, path: dir, under: dir, problem: "missing", denied: shown(ino, dev) });
    }
  }
  return check;
}

/** One line for a person: `rule shadow: /etc/shadow was replaced (inode 12 -> 34)`. */
export function describeStale(rule: StaleRule): string {
  if (rule.under !== undefined) {
    return `${rule.area} rule ${rule.rule}: a file denied under ${printable(rule.under)} (inode ` +
      `${rule.denied?.ino}) is no longer there`;
  }
  const what = rule.problem === "missing"
    ? "no longer exists"
    : rule.problem === "replaced"
    ? `now holds another file (inode ${rule.denied?.ino} denied, ${rule.now?.ino} there now)`
    : "was created after the apply and is not covered";
  return `${rule.area} rule ${rule.rule}: ${printable(rule.path)} ${what}`;
}
