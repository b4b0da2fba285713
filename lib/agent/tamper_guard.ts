/**
 * Tamper evidence, the running agent's half: the mode words it owns are put back when something else wrote
 * them (root with `bpftool map update` needs no aegisbpf command), and each change is reported. Who may write
 * which word (README, One writer):
 * - forced audit: this agent only (its `--audit` floor, or off); `detach` forces it while it holds the pin
 *   directory's lock and then unpins the map, so a busy or missing pin directory is never judged;
 * - break-glass: on only while `break-glass on` (its marker) or the kernel command line asks for it; off is
 *   never put back on here (the marker watch does that);
 * - deadman: the deadline this agent last wrote (0 without `--deadman`);
 * - kill on deny: what this agent set at its start (`--enforce-signal`).
 * `findWordTampering` is the pure decision; `TamperGuard` reads and writes the pinned words.
 */

import { BREAK_GLASS } from "../../ffi/mod.ts";
import { bootTimeNs, decodeBreakGlass, type GuardedWord, whilePinsQuiet } from "../kernel/mode_words.ts";
import type { TamperFinding, TamperKind } from "../state/tamper_record.ts";

/** What the words should hold, as this agent set them. */
export type WordExpectations = {
  /** 1 under the `--audit` floor, else 0. */
  forceAudit: bigint;
  /** Whether break-glass is asked for now (a marker in force, the kernel command line). */
  breakGlassAsked: () => boolean;
  /** The deadline this agent last wrote; 0 without `--deadman`. */
  deadman: bigint;
  /** The kill-on-deny word this agent set. */
  enforceSignal: bigint;
};

/** A word found changed: the finding to report, and what to write back. */
export type WordTampering = TamperFinding & { word: GuardedWord; value: bigint };

const KIND: Readonly<Record<GuardedWord, TamperKind>> = {
  forceAudit: "force_audit",
  breakGlass: "break_glass",
  deadman: "deadman",
  enforceSignal: "enforce_signal",
};

/** A word as an event field: a number where it fits one exactly, else its decimal string. */
export function shownWord(value: bigint): number | string {
  return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value.toString();
}

/** The words that differ from what this agent set, each with the value to put back; pure. */
export function findWordTampering(
  read: (word: GuardedWord) => bigint,
  expected: WordExpectations,
  nowBootNs: bigint,
): WordTampering[] {
  const found: WordTampering[] = [];
  const restore = (word: GuardedWord, value: bigint) => {
    found.push({ what: KIND[word], word, found: shownWord(read(word)), restored: shownWord(value), value });
  };
  if ((read("forceAudit") !== 0n) !== (expected.forceAudit !== 0n)) {
    restore("forceAudit", expected.forceAudit);
  }
  if (decodeBreakGlass(read("breakGlass"), nowBootNs).on && !expected.breakGlassAsked()) {
    restore("breakGlass", BigInt(BREAK_GLASS.OFF));
  }
  if (read("deadman") !== expected.deadman) restore("deadman", expected.deadman);
  if (read("enforceSignal") !== expected.enforceSignal) restore("enforceSignal", expected.enforceSignal);
  return found;
}

/** How long a break-glass word with no marker must stay so before it is put back. */
const GLASS_SETTLE_MS = 100;

export class TamperGuard {
  readonly #bpffs: string;
  readonly #expected: () => WordExpectations;
  /**
   * When a break-glass word with no marker was first seen: it is put back only once it has stayed so for
   * GLASS_SETTLE_MS, so that `break-glass off` (marker removed, then the word cleared, a moment apart) is never
   * taken for it.
   */
  #glassSince: number | undefined;

  constructor(bpffs: string, expected: () => WordExpectations) {
    this.#bpffs = bpffs;
    this.#expected = expected;
  }

  /** A break-glass word with no marker seen and not yet put back (see #glassSince). */
  get breakGlassPending(): boolean {
    return this.#glassSince !== undefined;
  }

  /**
   * Puts back every owned word found changed, and returns what it found; nothing while another aegisbpf
   * process works on the pins (an apply, a hand-over, a detach) or once they are gone.
   */
  checkWords(): TamperFinding[] {
    const found = whilePinsQuiet(this.#bpffs, (words) => {
      let changed = findWordTampering(words.read, this.#expected(), bootTimeNs());
      const now = performance.now();
      if (!changed.some(({ word }) => word === "breakGlass")) this.#glassSince = undefined;
      else if (this.#glassSince === undefined || now - this.#glassSince < GLASS_SETTLE_MS) {
        this.#glassSince ??= now;
        changed = changed.filter(({ word }) => word !== "breakGlass");
      } else this.#glassSince = undefined;
      for (const { word, value } of changed) words.write(word, value);
      return changed;
    });
    return (found ?? []).map(({ what, found, restored }) => ({ what, found, restored }));
  }
}
