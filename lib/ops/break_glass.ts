import { InputError } from "../errors.ts";
import {
  bootNsToEpochMs,
  type BreakGlassWord,
  readModeWords,
  writeBreakGlass,
} from "../kernel/mode_words.ts";
import { writeFileAtomic } from "../state/files.ts";
import { makePrivateDir, PRIVATE_FILE_MODE } from "../state/access.ts";
import { type BreakGlassMarker, markerPath, readMarker } from "../state/break_glass_marker.ts";

/**
 * Break-glass: audit everywhere, now. The kernel word makes it take effect in every hook at once, with or
 * without an agent; the marker `<config-dir>/break_glass` makes it survive a restart, and can be made or
 * removed by hand from a rescue shell (an empty file made with `touch` counts).
 */

export type BreakGlassStatus = {
  /** Whether the kernel audits everywhere now: undefined when nothing of aegisbpf is pinned. */
  kernel: BreakGlassWord | undefined;
  /** The marker, when one exists and has not passed its `until`. */
  marker: BreakGlassMarker | undefined;
  /** A marker whose `until` has passed. */
  expiredMarker: BreakGlassMarker | undefined;
  /** Where the kernel's deadline falls, in epoch ms. */
  kernelUntilMs: number | undefined;
};

/**
 * Turns break-glass on: the marker first (a restarted agent honours it), then the kernel word. Returns the
 * kernel word as written, or undefined when nothing is pinned under `bpffs` (the marker is still written).
 */
export function breakGlassOn(
  paths: { configDir: string; bpffs: string },
  request: { reason: string; ttlMs?: number },
): { marker: BreakGlassMarker; kernel: BreakGlassWord | undefined } {
  const reason = request.reason.trim();
  if (reason === "") throw new InputError("--reason must say why break-glass is needed, for the record");
  const now = Date.now();
  const marker: BreakGlassMarker = { reason, since: new Date(now).toISOString(), uid: Deno.uid() ?? -1 };
  if (request.ttlMs !== undefined) {
    marker.untilMs = now + request.ttlMs;
    marker.until = new Date(marker.untilMs).toISOString();
  }
  makePrivateDir(paths.configDir);
  writeFileAtomic(markerPath(paths.configDir), `${JSON.stringify(marker)}\n`, PRIVATE_FILE_MODE);
  const kernel = writeBreakGlass(
    paths.bpffs,
    request.ttlMs === undefined ? { on: true } : { on: true, ttlMs: request.ttlMs },
  );
  return { marker, kernel };
}

/**
 * Turns break-glass off: the marker first (so that a restart cannot turn it on again), then the kernel word.
 * Returns whether a marker was removed and the kernel word as written.
 */
export function breakGlassOff(
  paths: { configDir: string; bpffs: string },
): { removedMarker: boolean; kernel: BreakGlassWord | undefined } {
  let removedMarker = true;
  try {
    Deno.removeSync(markerPath(paths.configDir));
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    removedMarker = false;
  }
  return { removedMarker, kernel: writeBreakGlass(paths.bpffs, { on: false }) };
}

export function breakGlassStatus(paths: { configDir: string; bpffs: string }): BreakGlassStatus {
  const words = readModeWords(paths.bpffs);
  const found = readMarker(paths.configDir);
  const expired = found?.untilMs !== undefined && found.untilMs <= Date.now();
  const kernel = words?.breakGlass;
  return {
    kernel,
    marker: expired ? undefined : found,
    expiredMarker: expired ? found : undefined,
    kernelUntilMs: kernel?.on && kernel.untilBootNs !== undefined
      ? bootNsToEpochMs(kernel.untilBootNs)
      : undefined,
  };
}
