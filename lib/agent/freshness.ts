/**
 * Rule freshness: file and exec rules deny inodes, and `passwd`, `dpkg` and editors replace a file by
 * renaming a new one over it, so a rule resolved at apply time silently stops covering the path. This
 * watches (inotify, through Deno.watchFs) the parent directory of every file and exec rule path, and every
 * `recursive` directory with all below it, and calls `onChange` once (debounced) after anything happens to
 * a rule path: replaced, created (an optional path that did not exist at apply), removed, or a file created
 * under a recursive directory. The agent then re-resolves the plan and flips a generation only if an inode
 * changed.
 */

import { dirname } from "node:path";
import type { InodeTarget } from "../policy/plan.ts";

const DEBOUNCE_MS = 50;

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
    this.#targets = targets;
    this.#onChange = onChange;
    const flat = new Set<string>();
    const deep = new Set<string>();
    for (const target of targets) {
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
