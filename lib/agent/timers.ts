/** The agent's periodic work: intervals that report a throw instead of ending the process, cleared together. */

export class Timers {
  readonly #onError: (error: unknown) => void;
  readonly #timers: ReturnType<typeof setInterval>[] = [];

  constructor(onError: (error: unknown) => void) {
    this.#onError = onError;
  }

  /** Runs `fn` every `ms` milliseconds until `clear()`; what it throws goes to `onError`. */
  every(ms: number, fn: () => void): void {
    this.#timers.push(setInterval(() => {
      try {
        fn();
      } catch (error) {
        this.#onError(error);
      }
    }, ms));
  }

  clear(): void {
    for (const timer of this.#timers) clearInterval(timer);
    this.#timers.length = 0;
  }
}
