import { sysFailure } from "./error.ts";
import { libc } from "./libbpf.ts";

const EPOLL_CLOEXEC = 0o2000000;
const EFD_CLOEXEC = 0o2000000;
const EFD_NONBLOCK = 0o4000;
const EPOLL_CTL_ADD = 1;
const EPOLLIN = 1;
/** struct epoll_event on x86-64: packed, u32 events then u64 data. */
const EPOLL_EVENT_BYTES = 12;

/**
 * Sleeps until a file descriptor is readable, without holding the JavaScript thread: `epoll_wait` on it runs
 * on a worker thread as a nonblocking FFI call. An eventfd in the same set lets `close()` wake a pending
 * wait. The descriptor stays the caller's.
 */
export class FdWaiter {
  #epoll: number;
  readonly #wake: number;
  readonly #events = new Uint8Array(EPOLL_EVENT_BYTES * 2);
  #waiting: Promise<unknown> | undefined;
  #closed = false;

  /** `subject` names the descriptor in errors. */
  constructor(target: number, subject: string) {
    this.#epoll = libc().epoll_create1(EPOLL_CLOEXEC);
    if (this.#epoll < 0) throw sysFailure("epoll_create1", subject);
    this.#wake = libc().eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    try {
      if (this.#wake < 0) throw sysFailure("eventfd", subject);
      for (const fd of [target, this.#wake]) {
        const event = new Uint8Array(EPOLL_EVENT_BYTES);
        const view = new DataView(event.buffer);
        view.setUint32(0, EPOLLIN, true);
        view.setUint32(4, fd, true);
        if (libc().epoll_ctl(this.#epoll, EPOLL_CTL_ADD, fd, event) < 0) {
          throw sysFailure("epoll_ctl", subject);
        }
      }
    } catch (error) {
      libc().close(this.#epoll);
      if (this.#wake >= 0) libc().close(this.#wake);
      throw error;
    }
  }

  /** Resolves true when the descriptor is readable (or may be: a spurious wake-up), false once closed. */
  async wait(): Promise<boolean> {
    while (!this.#closed) {
      const waiting = libc().epoll_wait_nb(this.#epoll, this.#events, 2, -1);
      this.#waiting = waiting;
      const ready = await waiting;
      this.#waiting = undefined;
      if (this.#closed) {
        this.#release();
        return false;
      }
      if (ready > 0) return true;
      // Interrupted by a signal (errno is the worker thread's, not readable here): wait again, after a
      // pause so that a wait that keeps failing cannot spin.
      if (ready < 0) await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return false;
  }

  /** Ends a pending wait (it resolves false) and closes the descriptors once it has. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#waiting) libc().eventfd_write(this.#wake, 1n);
    else this.#release();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #release(): void {
    if (this.#epoll < 0) return;
    libc().close(this.#epoll);
    libc().close(this.#wake);
    this.#epoll = -1;
  }
}
