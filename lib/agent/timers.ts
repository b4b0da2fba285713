/**
 * The agent's timed work: intervals and one-shot timers that report a throw instead of ending the process,
 * cleared together.
 */

export class Timers {
  readonly #onError: (error: unknown) => void;
  readonly #intervals = new Set<ReturnType<typeof setInterval>>();
  readonly #timeouts = new Set<ReturnType<typeof setTimeout>>();

  constructor(onError: (error: unknown) => void) {
    this.#onError = onError;
  }

  /** Runs `fn` every `ms` milliseconds until `clear()`; what it throws goes to `onError`. */
  every(ms: number, fn: () => void): void {
    this.#intervals.add(setInterval(() => this.#run(fn), ms));
  }

  /** Runs `fn` once in `ms` milliseconds, unless `clear()` comes first; what it throws goes to `onError`. */
  once(ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      this.#timeouts.delete(timer);
      this.#run(fn);
    }, ms);
    this.#timeouts.add(timer);
  }

  clear(): void {
    for (const timer of this.#intervals) clearInterval(timer);
    for (const timer of this.#timeouts) clearTimeout(timer);
    this.#intervals.clear();
    this.#timeouts.clear();
  }

  #run(fn: () => void): void {
    try {
      fn();
    } catch (error) {
      this.#onError(error);
    }
  }
}
