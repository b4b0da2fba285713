import {
  bootTimeNs,
  BREAK_GLASS,
  CFG,
  decodeU64,
  encodeU32,
  encodeU64,
  FdMap,
  SIGNAL,
  SysError,
  tryLockDirectory,
} from "../../ffi/mod.ts";
import { exists } from "./pin_dir.ts";

/** CLOCK_BOOTTIME now, in ns: the clock of the deadline words. */
export { bootTimeNs };

/**
 * The config words that change the mode, read and written through their pin alone: no object is loaded
 * and no program attached, so this works with no agent running, or a wedged one, and takes effect in
 * every hook at once.
 */

/** The break-glass word as the hooks read it. */
export type BreakGlassWord = { on: false } | { on: true; untilBootNs?: bigint };

export type ModeWords = {
  activeGen: number;
  forceAudit: boolean;
  breakGlass: BreakGlassWord;
  /** CLOCK_BOOTTIME ns after which hooks audit; undefined when there is no deadman. */
  deadmanDeadlineNs: bigint | undefined;
  /** CLOCK_BOOTTIME now, to compare the deadlines with. */
  nowBootNs: bigint;
};

/** The pinned config map under `bpffs`, or undefined when nothing of aegisbpf is pinned there. */
function openConfig(bpffs: string): FdMap | undefined {
  const path = `${bpffs}/aegisbpf/maps/aegis_cfg`;
  if (!exists(path)) return undefined;
  const map = FdMap.open(path);
  if (map.valueSize !== 8 || map.maxEntries <= CFG.BREAK_GLASS) {
    map.close();
    throw new Error(
      `${path} is not a config map of this aegisbpf (value ${map.valueSize} bytes, ${map.maxEntries} words)`,
    );
  }
  return map;
}

function word(map: FdMap, index: number): bigint {
  if (index >= map.maxEntries) return 0n;
  const value = map.lookup(encodeU32(index));
  return value ? decodeU64(value) : 0n;
}

/** Decodes the break-glass word: OFF, ON, or the boot-clock deadline it is on until. */
export function decodeBreakGlass(value: bigint, nowBootNs: bigint): BreakGlassWord {
  if (value === BigInt(BREAK_GLASS.ON)) return { on: true };
  if (value > BigInt(BREAK_GLASS.ON) && nowBootNs < value) return { on: true, untilBootNs: value };
  return { on: false };
}

/** The mode words of the pins under `bpffs`, or undefined when there are none. */
export function readModeWords(bpffs: string): ModeWords | undefined {
  using map = openConfig(bpffs);
  if (!map) return undefined;
  const nowBootNs = bootTimeNs();
  const deadman = word(map, CFG.DEADMAN);
  return {
    activeGen: Number(word(map, CFG.ACTIVE_GEN)),
    forceAudit: word(map, CFG.FORCE_AUDIT) !== 0n,
    breakGlass: decodeBreakGlass(word(map, CFG.BREAK_GLASS), nowBootNs),
    deadmanDeadlineNs: deadman === 0n ? undefined : deadman,
    nowBootNs,
  };
}

/**
 * Turns break-glass on (for `ttlMs`, or until turned off) or off in the kernel: one word, at once, for every
 * hook. Returns the word as written, or undefined when nothing of aegisbpf is pinned under `bpffs`.
 */
export function writeBreakGlass(
  bpffs: string,
  state: { on: false } | { on: true; ttlMs?: number },
): BreakGlassWord | undefined {
  using map = openConfig(bpffs);
  if (!map) return undefined;
  const now = bootTimeNs();
  let value = BigInt(BREAK_GLASS.OFF);
  if (state.on) {
    value = state.ttlMs === undefined ? BigInt(BREAK_GLASS.ON) : now + BigInt(Math.round(state.ttlMs * 1e6));
  }
  map.update(encodeU32(CFG.BREAK_GLASS), encodeU64(value));
  return decodeBreakGlass(value, now);
}

/** Converts a boot-clock instant to wall-clock milliseconds since the epoch (for printing deadlines). */
export function bootNsToEpochMs(bootNs: bigint): number {
  const offsetMs = Date.now() - Number(bootTimeNs() / 1_000_000n);
  return offsetMs + Number(bootNs / 1_000_000n);
}

/** What kill on deny sends to a task whose action was denied (`run --enforce-signal`). */
export type EnforceSignal = "none" | "term" | "kill";
export const ENFORCE_SIGNALS: readonly EnforceSignal[] = ["none", "term", "kill"];
const SIGNAL_WORD: Readonly<Record<EnforceSignal, number>> = {
  none: SIGNAL.NONE,
  term: SIGNAL.TERM,
  kill: SIGNAL.KILL,
};

/**
 * Sets the kill-on-deny word the BPF-LSM hooks read: from then on each sends `signal` to a task it denies
 * (never PID 1 or a kernel thread). Returns false when nothing of aegisbpf is pinned under `bpffs`; throws
 * when the pins are of a release without the word.
 */
export function writeEnforceSignal(bpffs: string, signal: EnforceSignal): boolean {
  using map = openConfig(bpffs);
  if (!map) return false;
  if (map.maxEntries <= CFG.ENFORCE_SIGNAL) {
    throw new Error(
      `${bpffs}/aegisbpf/maps/aegis_cfg has ${map.maxEntries} words, none for the enforce signal: ` +
        "the pins are an older release's (the next load hands them over)",
    );
  }
  map.update(encodeU32(CFG.ENFORCE_SIGNAL), encodeU64(BigInt(SIGNAL_WORD[signal])));
  return true;
}

/** The kill-on-deny word's value for `signal`. */
export function enforceSignalWord(signal: EnforceSignal): bigint {
  return BigInt(SIGNAL_WORD[signal]);
}

/** The kill-on-deny word of the pins under `bpffs`; undefined when nothing is pinned. */
export function readEnforceSignal(bpffs: string): EnforceSignal | undefined {
  using map = openConfig(bpffs);
  if (!map) return undefined;
  const value = Number(word(map, CFG.ENFORCE_SIGNAL));
  return ENFORCE_SIGNALS.find((name) => SIGNAL_WORD[name] === value) ?? "none";
}

/** The config words a running agent keeps as it set them (lib/agent/tamper_guard.ts), by name. */
export const GUARDED_WORDS = {
  forceAudit: CFG.FORCE_AUDIT,
  breakGlass: CFG.BREAK_GLASS,
  deadman: CFG.DEADMAN,
  enforceSignal: CFG.ENFORCE_SIGNAL,
} as const;
export type GuardedWord = keyof typeof GUARDED_WORDS;

/** The pinned config words, read and written one at a time. */
export type ConfigWords = {
  read(name: GuardedWord): bigint;
  write(name: GuardedWord, value: bigint): void;
};

/**
 * Runs `fn` on the pinned config words while no other aegisbpf process works on the pins: undefined, and
 * `fn` not run, while one holds the pin directory's lock (an apply, a hand-over, a detach forcing audit
 * before it unpins) or when nothing is pinned (after a detach).
 */
export function whilePinsQuiet<T>(bpffs: string, fn: (words: ConfigWords) => T): T | undefined {
  const pinDir = `${bpffs}/aegisbpf`;
  if (!exists(`${pinDir}/maps/aegis_cfg`)) return undefined;
  let lock: ReturnType<typeof tryLockDirectory>;
  try {
    lock = tryLockDirectory(pinDir);
  } catch (error) {
    // Removed between the check and the lock: a detach.
    if (error instanceof SysError && error.errnoName === "ENOENT") return undefined;
    throw error;
  }
  if (!lock) return undefined;
  using _lock = lock;
  using map = openConfig(bpffs);
  if (!map) return undefined;
  return fn({
    read: (name) => word(map, GUARDED_WORDS[name]),
    write: (name, value) => {
      if (GUARDED_WORDS[name] < map.maxEntries) map.update(encodeU32(GUARDED_WORDS[name]), encodeU64(value));
    },
  });
}
