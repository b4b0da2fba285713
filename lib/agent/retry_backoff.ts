/**
 * Retries of a step that keeps failing (the agent's pick-up of another command's apply, whose helper
 * process may fail the same way every time): after a failure the next try waits, 1 s doubling up to 60 s;
 * a failure is reported only when it differs from the last one reported, and a success or a new situation
 * (another `key`, e.g. applied.json written again) starts over.
 */

export const RETRY_FIRST_MS = 1000;
export const RETRY_MAX_MS = 60_000;

export class RetryBackoff {
  readonly #report: (message: string, retryInMs: number) => void;
  readonly #now: () => number;
  #key: string | undefined;
  #delayMs = 0;
  #nextAt = 0;
  #reported: string | undefined;

  constructor(report: (message: string, retryInMs: number) => void, now = () => performance.now()) {
    this.#report = report;
    this.#now = now;
  }

  /** Whether a try for `key` is due: always for a new key, else once the wait after a failure is over. */
  due(key: string): boolean {
    return key !== this.#key || this.#now() >= this.#nextAt;
  }

  /** Whether the last try failed and another is to come. */
  get pending(): boolean {
    return this.#delayMs > 0;
  }

  /** Runs `step` for `key`; a failure is caught, reported if new, and delays the next try. */
  async run(key: string, step: () => Promise<void>): Promise<void> {
    if (key !== this.#key) {
      this.#key = key;
      this.#delayMs = 0;
    }
    try {
      await step();
    } catch (error) {
      this.#delayMs = Math.min(RETRY_MAX_MS, this.#delayMs === 0 ? RETRY_FIRST_MS : this.#delayMs * 2);
      this.#nextAt = this.#now() + this.#delayMs;
      const message = error instanceof Error ? error.message : String(error);
      if (message !== this.#reported) this.#report(message, this.#delayMs);
      this.#reported = message;
      return;
    }
    this.#delayMs = 0;
    this.#nextAt = 0;
    this.#reported = undefined;
  }
}
