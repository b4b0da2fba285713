/**
 * Rule freshness: file and exec rules deny inodes, and `passwd`, `dpkg` and editors replace a file by
 * renaming a new one over it, and deployments swap a symlinked ancestor (`current -> releases/N`), so a
 * rule resolved at apply time silently stops covering the path. This watches (inotify, for changes only:
 * lib/agent/dir_watch.ts) the directory holding every component of every file and exec rule path, following
 * symlinks as the kernel does (the link and every component of its target), every `recursive` directory
 * and each directory below it (found by the same bounded walk as the apply, see kernel/tree.ts:
 * directories only, never files), and calls `onChange` once (debounced) after anything happens to a path
 * a rule's lookup goes through: replaced, created (an optional path that did not exist at apply),
 * removed, a link repointed, a directory on the way renamed, or a file created under a recursive
 * directory. The agent then re-resolves the plan and flips a generation only
 * if an inode changed. A directory that is not watched (more than WATCH_DEPTH levels below its rule's
 * directory, past half of fs.inotify.max_user_watches, unreadable, or in a tree past its rule's cap) is
 * reported once: files created there are covered only by the next apply or refresh. The depth bound is for
 * cost: a watch is placed by path, and placing one costs time growing with the square of its depth
 * (measured: 11 ms at 100 levels, 0.5 s at 2,000), so a deep chain made by anyone could stall the agent.
 */

import { dirname, join, resolve } from "node:path";
import type { InodeTarget } from "../policy/plan.ts";
import { DEFAULT_MAX_ENTRIES, walkTree } from "../kernel/tree.ts";
import { printable } from "../text/printable.ts";
import { type DirWatcher, watchDirs } from "./dir_watch.ts";

const DEBOUNCE_MS = 20;

function isDirectory(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

/** Most symlinks followed in one lookup, as the kernel's MAXSYMLINKS. */
const MAX_SYMLINKS = 40;

/**
 * Every path the kernel looks up to reach `path`, as the real paths of the directories that hold them:
 * each component, each symlink met on the way (a Capistrano `current` link, `/usr/bin/nc` ->
 * `/etc/alternatives/nc`) and each component of its target, and the real path reached (`final`). A change
 * to any of them (a link swapped, a directory renamed, the file replaced) can change what the path
 * resolves to, and is an event in one of the directories holding them (`directories`). A missing
 * component ends the lookup: its creation is seen in the last directory found, and `final` is the rest of
 * the path below it.
 */
export function lookupPath(path: string): { looked: string[]; final: string; directories: string[] } {
  const looked = new Set<string>();
  const directories = new Set<string>();
  const found = (final: string) => ({ looked: [...looked], final, directories: [...directories] });
  const pending = components(resolve(path)).reverse();
  let dir = "/";
  let links = 0;
  while (pending.length > 0) {
    const name = pending.pop()!;
    if (name === "..") {
      dir = dirname(dir);
      continue;
    }
    const here = join(dir, name);
    looked.add(here);
    directories.add(dir);
    let info: Deno.FileInfo;
    try {
      info = Deno.lstatSync(here);
    } catch {
      return found(join(here, ...pending.reverse()));
    }
    if (info.isSymlink && links++ < MAX_SYMLINKS) {
      let target: string;
      try {
        target = Deno.readLinkSync(here);
      } catch {
        return found(join(here, ...pending.reverse()));
      }
      pending.push(...components(target).reverse());
      if (target.startsWith("/")) dir = "/";
      continue;
    }
    dir = here;
  }
  return found(dir);
}

function components(path: string): string[] {
  return path.split("/").filter((part) => part !== "" && part !== ".");
}

/** Whether an event on `changed` concerns `target`. */
export function concerns(target: InodeTarget, changed: string): boolean {
  if (changed === target.path) return true;
  if (target.recursive && changed.startsWith(`${target.path}/`)) return true;
  // A directory on the way to a rule path that did not exist was made or replaced.
  return target.path.startsWith(`${changed}/`);
}

/** A directory as watched: its path and inode (a directory replaced at the same path needs a new watch). */
function watchKey(path: string): string {
  try {
    const { dev, ino } = Deno.statSync(path);
    return `${path}\0${dev}:${ino}`;
  } catch {
    return `${path}\0gone`;
  }
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
  #watchers: Watching[] = [];
  readonly #retired = new WeakSet<DirWatcher>();
  /** Settles once every retired watcher's loop has ended (its paths are then unwatched). */
  #retiring: Promise<unknown> = Promise.resolve();
  /** Retired watchers whose loop has not ended yet. */
  #retiringCount = 0;
  /** Counts set changes: a new watcher waiting for old ones to go is dropped if another change came. */
  #changes = 0;
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
   * Watches for these rules from now on: the directories holding every path their lookups go through
   * (see lookupPath) and, for recursive rules, the directories below. When the directories to watch
   * change (or one of them was replaced by another at the same path), the old watcher stops, the new one
   * starts once the old one is gone, and one check follows: a replace made while the set changed, or
   * since the rules were resolved, is found by resolving again.
   */
  update(targets: readonly InodeTarget[]): void {
    // Each path a rule's lookup goes through stands for the rule; only the path reached is a directory
    // whose files a recursive rule covers.
    const paths = new Set<string>();
    const finals: InodeTarget[] = [];
    this.#targets = targets.flatMap((target) => {
      const { looked, final, directories } = lookupPath(target.path);
      for (const directory of directories) paths.add(directory);
      finals.push({ ...target, path: final });
      return [
        ...looked.filter((path) => path !== final).map((path) => ({ ...target, path, recursive: false })),
        { ...target, path: final },
      ];
    });
    const { directories, warnings } = treeDirectories(finals, watchBudget());
    for (const directory of directories) paths.add(directory);
    for (const warning of warnings) {
      if (this.#warned.has(warning)) continue;
      this.#warned.add(warning);
      this.#onWarning(warning);
    }
    const set = [...paths].sort();
    const keys = set.map(watchKey);
    if (keys.join("\0") === this.#set.join("\0")) return;
    const hadWatchers = this.#set.length > 0;
    const change = ++this.#changes;
    const open = () => {
      if (this.#closed || change !== this.#changes) return;
      if (set.length > 0) this.#watchers = [this.#watch(set)];
      if (hadWatchers) this.#schedule();
    };
    const old = this.#watchers;
    this.#watchers = [];
    this.#set = keys;
    // The first watch (nothing to wait for) is placed at once: the caller says it watches right after.
    if (old.length === 0 && this.#retiringCount === 0) return open();
    for (const { watcher, ended } of old) {
      this.#retire(watcher);
      this.#retiringCount++;
      this.#retiring = Promise.all([this.#retiring, ended.finally(() => this.#retiringCount--)]);
    }
    // A watch that cannot be placed then is reported as one placed now would be thrown.
    this.#retiring.then(open).catch((error) => this.#onError(error));
  }

  #watch(paths: string[]): Watching {
    let watcher: DirWatcher;
    try {
      watcher = watchDirs(paths);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
      // A directory removed since the walk: its removal was an event of its parent, which a check follows.
      watcher = watchDirs(paths.filter(isDirectory));
      this.#schedule();
    }
    const ended = (async () => {
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
    return { watcher, ended };
  }

  #retire(watcher: DirWatcher): void {
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
    for (const { watcher } of this.#watchers) this.#retire(watcher);
    this.#watchers = [];
  }
}

/** A watcher and its loop, which ends once it is closed. */
type Watching = { watcher: DirWatcher; ended: Promise<void> };
