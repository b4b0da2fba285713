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

export class FreshnessWatcher {
  readonly #watchers: Deno.FsWatcher[] = [];
  readonly #targets: readonly InodeTarget[];
  readonly #onChange: () => void;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  constructor(targets: readonly InodeTarget[], onChange: () => void) {
    // Each path a rule resolves through stands for the rule.
    this.#targets = targets.flatMap((target) =>
      symlinkChain(target.path).map((path) => ({ ...target, path }))
    );
    this.#onChange = onChange;
    const flat = new Set<string>();
    const deep = new Set<string>();
    for (const target of this.#targets) {
      flat.add(existingAncestor(target.path));
      if (target.recursive && isDirectory(target.path)) deep.add(target.path);
    }
    if (flat.size > 0) this.#watch([...flat], false);
    if (deep.size > 0) this.#watch([...deep], true);
  }

  /** The directories watched, for logs and tests. */
  get watching(): number {
    return this.#watchers.length;
  }

  #watch(paths: string[], recursive: boolean): void {
    const watcher = Deno.watchFs(paths, { recursive });
    this.#watchers.push(watcher);
    (async () => {
      try {
        for await (const event of watcher) {
          if (event.paths.some((path) => this.#targets.some((target) => concerns(target, path)))) {
            this.#schedule();
          }
        }
      } catch (error) {
        if (!this.#closed) throw error;
      }
    })();
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
    for (const watcher of this.#watchers) {
      try {
        watcher.close();
      } catch {
        // Already closed.
      }
    }
  }
}
