/**
 * The deadman word: with `--deadman`, the agent keeps pushing a deadline into the kernel, which falls back
 * to audit when the deadline passes (the agent stopped, or its loop is blocked).
 */

import type { DataPlane } from "../kernel/dataplane.ts";
import { bootTimeNs } from "../kernel/mode_words.ts";

export class Deadman {
  readonly #plane: Pick<DataPlane, "setConfig">;
  readonly #ttlMs: number | undefined;
  readonly #expired: (fields: Record<string, unknown>) => void;
  readonly #bootTimeNs: () => bigint;
  #seenNs = 0n;

  /**
   * `expired` reports a deadline that passed (the `deadman.expired` event's fields). `bootTime`: the
   * kernel's CLOCK_BOOTTIME, which the deadline counts in.
   */
  constructor(
    plane: Pick<DataPlane, "setConfig">,
    ttlMs: number | undefined,
    expired: (fields: Record<string, unknown>) => void,
    bootTime: () => bigint = bootTimeNs,
  ) {
    this.#plane = plane;
    this.#ttlMs = ttlMs;
    this.#expired = expired;
    this.#bootTimeNs = bootTime;
  }

  /** At start: reports the deadline `deadlineNs` the previous agent let pass, if it did, and clears it. */
  takeOver(deadlineNs: bigint): void {
    if (deadlineNs !== 0n && this.#bootTimeNs() >= deadlineNs) {
      this.#expired({ source: "previous agent", ...this.#expiredFacts(deadlineNs) });
    }
    this.#plane.setConfig({ deadmanDeadlineNs: 0n });
  }

  /** The deadline this agent last wrote into the word; 0 (no deadline) without `--deadman`. */
  get deadlineNs(): bigint {
    return this.#seenNs;
  }

  /** Pushes the deadline `ttlMs` ahead; nothing without `--deadman`. */
  refresh(): void {
    if (this.#ttlMs === undefined) return;
    const now = this.#bootTimeNs();
    // This process was late (stopped, or its loop blocked): the kernel fell back to audit meanwhile.
    if (this.#seenNs !== 0n && now >= this.#seenNs) {
      this.#expired({ source: "this agent, late", ...this.#expiredFacts(this.#seenNs) });
    }
    this.#seenNs = now + BigInt(Math.round(this.#ttlMs * 1e6));
    this.#plane.setConfig({ deadmanDeadlineNs: this.#seenNs });
  }

  /**
   * Arms a deadline `ms` ahead while a self-check of a new policy runs (lib/ops/self_check.ts), when
   * `--deadman` does not keep one armed already: an agent killed or stuck before the probes pass leaves the
   * kernel to fall back to audit. `release()` disarms it once they passed or the old policy is back.
   */
  hold(ms: number): void {
    if (this.#ttlMs !== undefined) return;
    this.#seenNs = this.#bootTimeNs() + BigInt(Math.round(ms * 1e6));
    this.#plane.setConfig({ deadmanDeadlineNs: this.#seenNs });
  }

  /** Disarms what `hold` armed; nothing with `--deadman`, whose refresh keeps its own deadline. */
  release(): void {
    if (this.#ttlMs !== undefined || this.#seenNs === 0n) return;
    this.#seenNs = 0n;
    this.#plane.setConfig({ deadmanDeadlineNs: 0n });
  }

  #expiredFacts(deadlineNs: bigint): Record<string, unknown> {
    const lateMs = Number((this.#bootTimeNs() - deadlineNs) / 1_000_000n);
    return { expiredAt: new Date(Date.now() - lateMs).toISOString() };
  }
}
