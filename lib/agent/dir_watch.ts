/**
 * A directory watched with inotify (Deno.watchFs, not recursive): `onChange` runs when an entry whose name
 * `wanted` accepts is made, changed, renamed or removed there, at most once per turn of the event loop
 * however many events came together. The agent waits on these instead of polling files on a timer. A
 * directory that cannot be watched (missing, or a file system without inotify) is reported once through
 * `onError`; the agent's periodic check still covers it, only later.
 */

import { basename } from "node:path";

export class DirWatch {
  readonly #watcher: Deno.FsWatcher | undefined;
  #queued = false;
  #closed = false;

  constructor(
    dir: string,
    wanted: (name: string) => boolean,
    onChange: () => void,
    onError: (error: unknown) => void,
  ) {
    try {
      this.#watcher = Deno.watchFs(dir, { recursive: false });
    } catch (error) {
      onError(error);
      return;
    }
    const watcher = this.#watcher;
    void (async () => {
      try {
        for await (const event of watcher) {
          if (this.#closed) return;
          if (this.#queued || !event.paths.some((path) => wanted(basename(path)))) continue;
          this.#queued = true;
          queueMicrotask(() => {
            this.#queued = false;
            if (!this.#closed) onChange();
          });
        }
      } catch (error) {
        if (!this.#closed) onError(error);
      }
    })();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#watcher?.close();
    } catch {
      // Already closed (its directory went away).
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
