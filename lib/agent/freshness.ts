/**
 * Rule freshness: file and exec rules deny inodes, and `passwd`, `dpkg` and editors replace a file by
 * renaming a new one over it, so a rule resolved at apply time silently stops covering the path. This
 * watches (inotify, through Deno.watchFs) the parent directory of every file and exec rule path, and every
 * `recursive` directory and each directory below it (found by the same bounded walk as the apply, see
 * kernel/tree.ts: directories only, never files), and calls `onChange` once (debounced) after anything
 * happens to a rule path: replaced, created (an optional path that did not exist at apply), removed, or a
 * file created under a recursive directory. The agent then re-resolves the plan and flips a generation only
 * if an inode changed. A directory that is not watched (more than WATCH_DEPTH levels below its rule's
 * directory, past half of fs.inotify.max_user_watches, unreadable, or in a tree past its rule's cap) is
 * reported once: files created there are covered only by the next apply or refresh. The depth bound is for
 * cost: a watch is placed by path, and placing one costs time growing with the square of its depth
 * (measured: 11 ms at 100 levels, 0.5 s at 2,000), so a deep chain made by anyone could stall the agent.
 */

import { dirname, resolve } from "node:path";
import type { InodeTarget } from "../policy/plan.ts";
import { DEFAULT_MAX_ENTRIES, walkTree } from "../kernel/tree.ts";
import { printable } from "../text/printable.ts";

const DEBOUNCE_MS = 20;

/** The nearest directory of `path` that exists, to see the path appear. */
function existingAncestor(path: string): string {
  let dir = dirname(path);
  for (;;) {
    try {
      if (Deno.statSync(dir).isDirectory) return dir;
    } catch {
      // Not there (yet): go up.
    }
    const parent = dirname(dir);
    if (parent === dir) return dir;
    dir = parent;
  }
}

function isDirectory(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

/**
 * The path and every path it leads to through symlinks (`/usr/bin/nc` -> `/etc/alternatives/nc` ->
 * `/bin/nc.openbsd`, and the real path past symlinked directories), so that replacing a link or its
 * final file is seen: the rule resolved through all of them.
 */
export function symlinkChain(path: string): string[] {
  const chain = [path];
  let current = path;
  for (let hops = 0; hops < 40; hops++) {
    let target: string;
    try {
      if (!Deno.lstatSync(current).isSymlink) break;
      target = Deno.readLinkSync(current);
    } catch {
      break;
    }
    current = resolve(dirname(current), target);
    chain.push(current);
  }
  try {
    chain.push(Deno.realPathSync(path));
  } catch {
    // Not there (yet).
  }
  return [...new Set(chain)];
}

/** Whether an event on `changed` concerns `target`. */
export function concerns(target: InodeTarget, changed: string): boolean {
  if (changed === target.path) return true;
  if (target.recursive && changed.startsWith(`${target.path}/`)) return true;
  // A directory on the way to a rule path that did not exist was made or replaced.
  return target.path.startsWith(`${changed}/`);
}

/** How many levels below a recursive rule's directory are watched. */
export const WATCH_DEPTH = 32;

/** The share of fs.inotify.max_user_watches (per user, shared with every other process) the agent takes. */
export function watchBudget(): number {
  try {
    const limit = Number(Deno.readTextFileSync("/proc/sys/fs/inotify/max_user_watches").trim());
    if (Number.isInteger(limit) && limit > 0) return Math.floor(limit / 2);
  } catch {
    // No procfs: the kernel's smallest default.
  }
  return 4096;
}

/**
 * The directories to watch for recursive rules, at most `budget` in all, and one warning for each rule
 * whose directories could not all be watched.
 */
export function treeDirectories(
  targets: readonly InodeTarget[],
  budget: number,
): { directories: string[]; warnings: string[] } {
  const directories: string[] = [];
  const warnings: string[] = [];
  for (const target of targets) {
    if (!target.recursive || !isDirectory(target.path)) continue;
    let overBudget = 0;
    const add = (path: string) => {
      if (directories.length < budget) directories.push(path);
      else overBudget++;
    };
    add(target.path);
    const reasons: string[] = [];
    try {
      const maxEntries = target.maxFiles ?? DEFAULT_MAX_ENTRIES;
      const { tooDeep, unreadable } = walkTree(target.path, { directory: add }, {
        maxEntries,
        maxDepth: WATCH_DEPTH,
      });
      if (tooDeep > 0) reasons.push(`${tooDeep} more than ${WATCH_DEPTH} levels deep, with all below them`);
      if (unreadable.count > 0) reasons.push(`${unreadable.count} unreadable`);
    } catch (error) {
      reasons.push(`the walk stopped: ${(error as Error).message}`);
    }
    if (overBudget > 0) reasons.push(`${overBudget} past the inotify watch budget of ${budget}`);
    if (reasons.length > 0) {
      warnings.push(
        `Not every directory under ${printable(target.path)} is watched (${reasons.join("; ")}): files ` +
          `created there are covered only at the next apply or rule refresh`,
      );
    }
  }
  return { directories, warnings };
}

/**
 * One inotify watcher (no recursive watch: the directories below recursive rules are listed one by one,
 * within a budget), whatever the number of rules: an instance per directory would soon pass the kernel's
 * per-user limit (fs.inotify.max_user_instances, 128 by default).
 */
export class FreshnessWatcher {
  readonly #onChange: () => void;
  readonly #onError: (error: unknown) => void;
  readonly #onWarning: (message: string) => void;
  readonly #warned = new Set<string>();
  #targets: InodeTarget[] = [];
  #set: string[] = [];
  #watchers: Deno.FsWatcher[] = [];
  readonly #retired = new WeakSet<Deno.FsWatcher>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  constructor(
    onChange: () => void,
    onError: (error: unknown) => void,
    onWarning: (message: string) => void = () => {},
  ) {
    this.#onChange = onChange;
    this.#onError = onError;
    this.#onWarning = onWarning;
  }

  /**
   * Watches for these rules from now on. When the directories to watch change, the new watchers start
   * before the old ones stop, so no replace falls into a gap, and one check follows (a replace made while
   * the set changed, or since the rules were resolved, is found by resolving again).
   */
  update(targets: readonly InodeTarget[]): void {
    // Each path a rule resolves through stands for the rule.
    this.#targets = targets.flatMap((target) =>
      symlinkChain(target.path).map((path) => ({ ...target, path }))
    );
    const paths = new Set<string>();
    for (const target of this.#targets) paths.add(existingAncestor(target.path));
    const { directories, warnings } = treeDirectories(this.#targets, watchBudget());
    for (const directory of directories) paths.add(directory);
    for (const warning of warnings) {
      if (this.#warned.has(warning)) continue;
      this.#warned.add(warning);
      this.#onWarning(warning);
    }
    const set = [...paths].sort();
    if (set.join("\0") === this.#set.join("\0")) return;
    const hadWatchers = this.#watchers.length > 0;
    const old = this.#watchers;
    this.#watchers = set.length > 0 ? [this.#watch(set)] : [];
    this.#set = set;
    for (const watcher of old) this.#retire(watcher);
    if (hadWatchers) this.#schedule();
  }

  #watch(paths: string[]): Deno.FsWatcher {
    let watcher: Deno.FsWatcher;
    try {
      watcher = Deno.watchFs(paths, { recursive: false });
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
      // A directory removed since the walk: its removal was an event of its parent, which a check follows.
      watcher = Deno.watchFs(paths.filter(isDirectory), { recursive: false });
      this.#schedule();
    }
    (async () => {
      try {
        for await (const event of watcher) {
          if (event.paths.some((path) => this.#targets.some((target) => concerns(target, path)))) {
            this.#schedule();
          }
        }
      } catch (error) {
        if (!this.#closed && !this.#retired.has(watcher)) this.#onError(error);
      }
    })();
    return watcher;
  }

  #retire(watcher: Deno.FsWatcher): void {
    this.#retired.add(watcher);
    try {
      watcher.close();
    } catch {
      // Already closed.
    }
  }

  #schedule(): void {
    if (this.#closed || this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (!this.#closed) this.#onChange();
    }, DEBOUNCE_MS);
  }

  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    for (const watcher of this.#watchers) this.#retire(watcher);
    this.#watchers = [];
  }
}
