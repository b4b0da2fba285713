/**
 * Directories watched with inotify for changes only (ffi/inotify.ts: never for opens and reads, which
 * Deno.watchFs also reports, waking the agent at every exec on the host). `watchDirs` is the watcher the
 * agent's watches share; `DirWatch` runs a callback when entries of one directory change.
 */

import { basename, join } from "node:path";
import { IN, Inotify } from "../../ffi/inotify.ts";

/** Every change to a directory's entries or to the directory itself; not opens, reads or closes. */
export const CHANGES = IN.MODIFY | IN.ATTRIB | IN.CLOSE_WRITE | IN.MOVED_FROM | IN.MOVED_TO | IN.CREATE |
  IN.DELETE | IN.DELETE_SELF | IN.MOVE_SELF;
/**
 * Entries written, renamed in or out, or removed. Not IN_CREATE: a file is created empty and written after,
 * and one read at its creation (a marker made with `echo text > marker`) would be read before its content;
 * its close after writing (IN_CLOSE_WRITE) is the moment to read it. A state file renamed into place is
 * IN_MOVED_TO.
 */
export const ENTRIES = IN.CLOSE_WRITE | IN.MOVED_FROM | IN.MOVED_TO | IN.DELETE;

/** A watch of directories, iterated as Deno.FsWatcher is: each change with the paths it concerns. */
export type DirWatcher = AsyncIterable<{ paths: string[] }> & { close(): void };

/**
 * Watches `dirs` (not recursively) for `mask` with an inotify instance of its own. A missing directory
 * throws Deno.errors.NotFound. The iteration ends once `close()` is called.
 */
export function watchDirs(dirs: readonly string[], mask = CHANGES): DirWatcher {
  const inotify = new Inotify();
  const byWd = new Map<number, string>();
  try {
    for (const dir of dirs) byWd.set(inotify.watch(dir, mask), dir);
  } catch (error) {
    inotify.close();
    throw error;
  }
  return {
    async *[Symbol.asyncIterator]() {
      for (;;) {
        const events = await inotify.next();
        if (events === undefined) return;
        const paths = new Set<string>();
        for (const { wd, name, mask } of events) {
          if (mask & IN.IGNORED) continue;
          const dir = byWd.get(wd);
          // A queue overflow loses events: say every directory may have changed.
          if (mask & IN.Q_OVERFLOW) { for (const each of dirs) paths.add(each); }
          else if (dir !== undefined) paths.add(name === "" ? dir : join(dir, name));
        }
        if (paths.size > 0) yield { paths: [...paths] };
      }
    },
    close: () => inotify.close(),
  };
}

/**
 * Runs `onChange` when an entry of `dir` whose name `wanted` accepts is written, replaced or removed (see
 * ENTRIES), once per batch of events. A directory that cannot be watched (missing, or a file system without inotify) is
 * reported once through `onError`; the agent's periodic tick still covers it, only later.
 */
export class DirWatch {
  readonly #watcher: DirWatcher | undefined;
  #closed = false;

  constructor(
    dir: string,
    wanted: (name: string) => boolean,
    onChange: () => void,
    onError: (error: unknown) => void,
  ) {
    try {
      this.#watcher = watchDirs([dir], ENTRIES);
    } catch (error) {
      onError(error);
      return;
    }
    const watcher = this.#watcher;
    void (async () => {
      try {
        for await (const { paths } of watcher) {
          if (this.#closed) return;
          if (paths.some((path) => path !== dir && wanted(basename(path)))) onChange();
        }
      } catch (error) {
        if (!this.#closed) onError(error);
      }
    })();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#watcher?.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
