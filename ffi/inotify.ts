/**
 * inotify with the events asked for and no others. Deno.watchFs also reports IN_OPEN and IN_ACCESS, so a
 * watch on /etc or /usr/bin woke its process at every exec on the host (the dynamic loader opens
 * /etc/ld.so.cache); here a watch wakes its reader only for the changes it names. Reading waits with
 * FdWaiter, off the JavaScript thread.
 */
import { FdWaiter } from "./fd_waiter.ts";
import { sysFailure } from "./error.ts";
import { cString, lastErrno, libc } from "./libbpf.ts";

/** Event bits of <sys/inotify.h>. */
export const IN = {
  MODIFY: 0x2,
  ATTRIB: 0x4,
  CLOSE_WRITE: 0x8,
  MOVED_FROM: 0x40,
  MOVED_TO: 0x80,
  CREATE: 0x100,
  DELETE: 0x200,
  DELETE_SELF: 0x400,
  MOVE_SELF: 0x800,
  Q_OVERFLOW: 0x4000,
  IGNORED: 0x8000,
} as const;

const IN_NONBLOCK = 0o4000;
const IN_CLOEXEC = 0o2000000;
const ENOENT = 2;
const ENOTDIR = 20;
const EAGAIN = 11;
/** struct inotify_event: wd, mask, cookie, len, then `len` bytes of NUL-padded name. */
const EVENT_HEADER_BYTES = 16;
const READ_BYTES = 64 * 1024;

/** One event: the watch it came from, its bits, and the entry's name in the watched directory ("" for itself). */
export type InotifyEvent = { wd: number; mask: number; name: string };

export class Inotify {
  #fd: number;
  readonly #waiter: FdWaiter;
  readonly #buffer = new Uint8Array(READ_BYTES);
  readonly #decoder = new TextDecoder();

  constructor() {
    this.#fd = libc().inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (this.#fd < 0) throw sysFailure("inotify_init1");
    try {
      this.#waiter = new FdWaiter(this.#fd, "inotify");
    } catch (error) {
      libc().close(this.#fd);
      throw error;
    }
  }

  /** Watches `path` for `mask`; its watch descriptor. A missing path throws Deno.errors.NotFound. */
  watch(path: string, mask: number): number {
    const wd = libc().inotify_add_watch(this.#fd, cString(path), mask);
    if (wd < 0) {
      const errno = lastErrno();
      if (errno === ENOENT || errno === ENOTDIR) throw new Deno.errors.NotFound(`inotify_add_watch: ${path}`);
      throw sysFailure("inotify_add_watch", path);
    }
    return wd;
  }

  /** The next events, once some came; undefined once closed. */
  async next(): Promise<InotifyEvent[] | undefined> {
    for (;;) {
      if (!(await this.#waiter.wait())) return undefined;
      const events = this.#read();
      if (events.length > 0) return events;
    }
  }

  close(): void {
    if (this.#fd < 0) return;
    this.#waiter.close();
    libc().close(this.#fd);
    this.#fd = -1;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #read(): InotifyEvent[] {
    const events: InotifyEvent[] = [];
    for (;;) {
      const read = Number(libc().read(this.#fd, this.#buffer, BigInt(READ_BYTES)));
      if (read < 0) {
        if (lastErrno() === EAGAIN) return events;
        throw sysFailure("read", "inotify");
      }
      const view = new DataView(this.#buffer.buffer, 0, read);
      for (let at = 0; at + EVENT_HEADER_BYTES <= read;) {
        const length = view.getUint32(at + 12, true);
        const bytes = this.#buffer.subarray(at + EVENT_HEADER_BYTES, at + EVENT_HEADER_BYTES + length);
        const end = bytes.indexOf(0);
        events.push({
          wd: view.getInt32(at, true),
          mask: view.getUint32(at + 4, true),
          name: this.#decoder.decode(end < 0 ? bytes : bytes.subarray(0, end)),
        });
        at += EVENT_HEADER_BYTES + length;
      }
    }
  }
}
