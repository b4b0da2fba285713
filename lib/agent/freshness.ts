/**
 * Rule freshness: file and exec rules deny inodes, and `passwd`, `dpkg` and editors replace a file by
 * renaming a new one over it, so a rule resolved at apply time silently stops covering the path. This
 * watches (inotify, through Deno.watchFs) the parent directory of every file and exec rule path, and every
 * `recursive` directory with all below it, and calls `onChange` once (debounced) after anything happens to
 * a rule path: replaced, created (an optional path that did not exist at apply), removed, or a file created
 * under a recursive directory. The agent then re-resolves the plan and flips a generation only if an inode
 * changed.
 */

import { dirname, resolve } from "node:path";
import type { InodeTarget } from "../policy/plan.ts";

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

type WatchSet = { flat: string[]; deep: string[] };

function sameSet(a: WatchSet, b: WatchSet): boolean {
  return a.flat.join("\0") === b.flat.join("\0") && a.deep.join("\0") === b.deep.join("\0");
}

/**
 * Two inotify watchers at most (one flat, one recursive), whatever the number of rules: an instance per
 * directory would soon pass the kernel's per-user limit (fs.inotify.max_user_instances, 128 by default).
 */
export class FreshnessWatcher {
  readonly #onChange: () => void;
  readonly #onError: (error: unknown) => void;
  #targets: InodeTarget[] = [];
  #set: WatchSet = { flat: [], deep: [] };
  #watchers: Deno.FsWatcher[] = [];
  readonly #retired = new WeakSet<Deno.FsWatcher>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  constructor(onChange: () => void, onError: (error: unknown) => void) {
    this.#onChange = onChange;
    this.#onError = onError;
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
    const flat = new Set<string>();
    const deep = new Set<string>();
    for (const target of this.#targets) {
      flat.add(existingAncestor(target.path));
      if (target.recursive && isDirectory(target.path)) deep.add(target.path);
    }
    const set = { flat: [...flat].sort(), deep: [...deep].sort() };
    if (sameSet(set, this.#set)) return;
    const hadWatchers = this.#watchers.length > 0;
    const old = this.#watchers;
    this.#watchers = [
      ...(set.flat.length > 0 ? [this.#watch(set.flat, false)] : []),
      ...(set.deep.length > 0 ? [this.#watch(set.deep, true)] : []),
    ];
    this.#set = set;
    for (const watcher of old) this.#retire(watcher);
    if (hadWatchers) this.#schedule();
  }

  #watch(paths: string[], recursive: boolean): Deno.FsWatcher {
    const watcher = Deno.watchFs(paths, { recursive });
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
