/**
 * The canary of `policy apply --canary DUR --max-deny-rate N`: after the new policy is in force, watch its
 * deny count for DUR; the moment the deny rate over the last window exceeds N per second, the verdict is to
 * roll back. The watch itself touches nothing: it samples a counter the caller gives it, so the rule is
 * tested without a kernel.
 *
 * What counts (`canaryCounts`): denies made by the new policy's own rules (the kernel's per-rule counters
 * of the generation it was written into), so never a deny of the policy before it, and only for tasks in
 * its scope (`spec.scope.cgroups`, never `spec.scope.exempt`: the hooks count nothing outside). Ingress
 * drops never count: XDP sees packets, not tasks, and any sender on the network could make them to force
 * a rollback.
 */

import { InputError } from "../errors.ts";
import type { RuleInfo } from "../policy/plan.ts";

/** The span the rate is measured over (or the time since the start, while shorter). */
export const CANARY_WINDOW_MS = 10_000;
/** How often the counters are sampled. */
export const CANARY_INTERVAL_MS = 1_000;

export type CanaryVerdict =
  | { verdict: "kept"; denies: bigint; elapsedMs: number }
  | { verdict: "exceeded"; rate: number; windowMs: number; denies: bigint; elapsedMs: number }
  | { verdict: "aborted"; reason: string; denies: bigint; elapsedMs: number };

export type CanaryWatch = {
  durationMs: number;
  /** Denies per second that end the canary when exceeded; 0 rolls back on the first deny. */
  maxDenyRate: number;
  /** Total denies so far (any monotonic counter), or undefined when it can no longer be read. */
  readDenies: () => bigint | undefined;
  /**
   * The counter read just before the policy went into force (with `now()` then): denies made between the
   * flip and the first sample count too. Without it, the first sample is the baseline.
   */
  baseline?: { denies: bigint; at: number };
  /** Aborting (SIGINT, SIGTERM) ends the watch with verdict `aborted`. */
  signal?: AbortSignal;
  /** Called after every sample with the rate over the window, for progress output. */
  onSample?: (sample: { elapsedMs: number; rate: number; denies: bigint }) => void;
  windowMs?: number;
  intervalMs?: number;
  now?: () => number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
};

/** Watches the deny counter for `durationMs` and returns the verdict. */
export async function watchCanary(watch: CanaryWatch): Promise<CanaryVerdict> {
  const now = watch.now ?? (() => performance.now());
  const sleep = watch.sleep ?? abortableSleep;
  const windowMs = watch.windowMs ?? CANARY_WINDOW_MS;
  const intervalMs = watch.intervalMs ?? CANARY_INTERVAL_MS;
  const start = watch.baseline?.at ?? now();
  const first = watch.baseline?.denies ?? watch.readDenies();
  if (first === undefined) {
    return { verdict: "aborted", reason: "the counters are not pinned", denies: 0n, elapsedMs: 0 };
  }
  const samples = [{ t: start, denies: first }];
  for (;;) {
    const elapsed = now() - start;
    const aborted = (reason: string, denies: bigint): CanaryVerdict => ({
      verdict: "aborted",
      reason,
      denies: denies - first,
      elapsedMs: now() - start,
    });
    if (watch.signal?.aborted) return aborted("interrupted", samples.at(-1)!.denies);
    if (elapsed >= watch.durationMs) {
      return { verdict: "kept", denies: samples.at(-1)!.denies - first, elapsedMs: elapsed };
    }
    await sleep(Math.min(intervalMs, watch.durationMs - elapsed), watch.signal);
    if (watch.signal?.aborted) return aborted("interrupted", samples.at(-1)!.denies);
    const denies = watch.readDenies();
    if (denies === undefined) {
      return aborted("the counters vanished (detached?)", samples.at(-1)!.denies);
    }
    const t = now();
    samples.push({ t, denies });
    while (samples.length > 1 && samples[0]!.t < t - windowMs) samples.shift();
    const oldest = samples[0]!;
    const spanMs = t - oldest.t;
    const rate = spanMs > 0 ? Number(denies - oldest.denies) / (spanMs / 1000) : 0;
    watch.onSample?.({ elapsedMs: t - start, rate, denies: denies - first });
    if (rate > watch.maxDenyRate) {
      return { verdict: "exceeded", rate, windowMs: spanMs, denies: denies - first, elapsedMs: t - start };
    }
  }
}

/** Which rule ids of a plan (`rules` indexed by rule id) count toward its canary: every rule but ingress. */
export function canaryCounts(rules: readonly (RuleInfo | undefined)[]): (ruleId: number) => boolean {
  return (ruleId) => {
    const rule = rules[ruleId];
    return rule !== undefined && rule.area !== "ingress";
  };
}

/**
 * A deny rate: `N` or `N/s` per second, `N/min` per minute, `N/h` per hour; N a non-negative number.
 * Returns denies per second.
 */
export function parseDenyRate(text: string, flag = "--max-deny-rate"): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(?:\/\s*(s|sec|min|m|h))?\s*$/.exec(text);
  if (!match) {
    throw new InputError(
      `${flag}: ${JSON.stringify(text)} is not a rate; give N denies per second, or N/min`,
    );
  }
  const value = Number(match[1]);
  const per = { s: 1, sec: 1, m: 60, min: 60, h: 3600 }[match[2] ?? "s"]!;
  return value / per;
}

function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** How often `policy apply --canary` says how the canary is going. */
export const CANARY_PROGRESS_MS = 10_000;

/**
 * An `onSample` that writes one progress line per `everyMs` of the watch (the first sample past each
 * boundary): `canary: 20s of 10m: 3 denies, 0.15/s over the last 10s (rolls back above 5/s)`.
 */
export function canaryProgress(
  options: { durationText: string; limitText: string; write: (line: string) => void; everyMs?: number },
): NonNullable<CanaryWatch["onSample"]> {
  const everyMs = options.everyMs ?? CANARY_PROGRESS_MS;
  let next = everyMs;
  return ({ elapsedMs, rate, denies }) => {
    if (elapsedMs < next) return;
    next = (Math.floor(elapsedMs / everyMs) + 1) * everyMs;
    const window = Math.round(Math.min(elapsedMs, CANARY_WINDOW_MS) / 1000);
    options.write(
      `canary: ${Math.floor(elapsedMs / 1000)}s of ${options.durationText}: ${denies} ` +
        `${denies === 1n ? "deny" : "denies"}, ${rate.toFixed(2)}/s over the last ${window}s ` +
        `(rolls back above ${options.limitText})`,
    );
  };
}
