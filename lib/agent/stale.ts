/**
 * Stale rules: file and exec rules deny inodes, and `passwd`, `dpkg` or an editor replace a file by
 * renaming a new one over it, so a rule silently stops covering its path. Without an agent watching the
 * paths, `health` and `status` compare each inode the applied set denies with what its path holds now.
 */

import { currentIdentity, walkFiles } from "../kernel/resolve.ts";
import type { AppliedRecord } from "../policy/apply_state.ts";
import { printable } from "../cli/printable.ts";

export type StaleRule = {
  rule: string;
  area: "file" | "exec";
  path: string;
  /** missing: the path is gone; replaced: it holds another inode; new: a file under a recursive rule's
   * directory that the applied set does not hold. */
  problem: "missing" | "replaced" | "new";
  /** The inode denied (absent for `new`). */
  denied?: { dev: number; ino: string };
  /** The inode the path holds now (absent for `missing`). */
  now?: { dev: number; ino: string };
};

/** `known` is false when the applied record predates inode recording (re-apply to record them). */
export type StaleCheck = { known: boolean; checked: number; stale: StaleRule[] };

export function findStaleRules(record: AppliedRecord | undefined): StaleCheck {
  if (record === undefined) return { known: true, checked: 0, stale: [] };
  if (record.inodes === undefined) return { known: false, checked: 0, stale: [] };
  const mountinfo = Deno.readTextFileSync("/proc/self/mountinfo");
  const identity = (path: string) => {
    const found = currentIdentity(path, mountinfo);
    return found && { dev: found.dev, ino: found.ino.toString() };
  };
  const stale: StaleRule[] = [];
  for (const { rule, area, path, dev, ino } of record.inodes) {
    const denied = { dev, ino };
    const now = identity(path);
    if (now === undefined) stale.push({ rule, area, path, problem: "missing", denied });
    else if (now.dev !== dev || now.ino !== ino) {
      stale.push({ rule, area, path, problem: "replaced", denied, now });
    }
  }
  for (const { rule, area, path: dir } of record.recursive ?? []) {
    const known = new Set(record.inodes.filter((inode) => inode.rule === rule).map((inode) => inode.path));
    let files: string[];
    try {
      files = walkFiles(dir);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) continue; // its files show as missing
      throw error;
    }
    for (const path of files) {
      if (known.has(path)) continue;
      const now = identity(path);
      if (now !== undefined) stale.push({ rule, area, path, problem: "new", now });
    }
  }
  return { known: true, checked: record.inodes.length, stale };
}

/** One line for a person: `rule shadow: /etc/shadow was replaced (inode 12 -> 34)`. */
export function describeStale(rule: StaleRule): string {
  const what = rule.problem === "missing"
    ? "no longer exists"
    : rule.problem === "replaced"
    ? `now holds another file (inode ${rule.denied?.ino} denied, ${rule.now?.ino} there now)`
    : "was created after the apply and is not covered";
  return `${rule.area} rule ${rule.rule}: ${printable(rule.path)} ${what}`;
}
