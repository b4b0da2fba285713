import { z } from "zod";
import { InputError } from "../errors.ts";
import {
  bootNsToEpochMs,
  type BreakGlassWord,
  readModeWords,
  writeBreakGlass,
} from "../kernel/mode_words.ts";
import { writeFileAtomic } from "../state/files.ts";
import { makePrivateDir, PRIVATE_FILE_MODE } from "../state/access.ts";

/**
 * Break-glass: audit everywhere, now. The kernel word makes it take effect in every hook at once, with or
 * without an agent; the marker `<config-dir>/break_glass` makes it survive a restart, and can be made or
 * removed by hand from a rescue shell (an empty file made with `touch` counts).
 */

/** What the marker says. `untilMs` (epoch ms) ends it by itself; a marker written by hand has no fields. */
export type BreakGlassMarker = {
  reason?: string;
  since?: string;
  until?: string;
  untilMs?: number;
  uid?: number;
  /**
   * What was wrong with the marker file, when something was: it still means break-glass on (the operator
   * asked for it), and the fields that were wrong are left out (a wrong `untilMs`: no TTL).
   */
  problem?: string;
};

/** The fields `break-glass on` writes; each is checked on its own, so one bad field loses only itself. */
const MARKER_FIELDS: Record<keyof Omit<BreakGlassMarker, "problem">, [z.ZodType, string]> = {
  reason: [z.string(), "a string"],
  since: [z.string(), "a string"],
  until: [z.string(), "a string"],
  untilMs: [
    z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
    "a time in epoch milliseconds (so no TTL)",
  ],
  uid: [z.number().int().min(-1), "a user id"],
};

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

export function markerPath(configDir: string): string {
  return `${configDir}/break_glass`;
}

/**
 * The marker, or undefined when there is none. An empty file (a `touch`) is a bare marker; a file that
 * cannot be read or is not the JSON object `break-glass on` writes is a marker too, with its `problem`.
 */
export function readMarker(configDir: string): BreakGlassMarker | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(markerPath(configDir));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    return { problem: `cannot be read: ${error instanceof Error ? error.message : String(error)}` };
  }
  if (text.trim() === "") return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { problem: "not JSON (a marker made by hand may be empty)" };
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    return { problem: "not a JSON object" };
  }
  return markerOf(parsed as Record<string, unknown>);
}

/** The valid fields of a marker object, and the problem with the others. */
function markerOf(fields: Record<string, unknown>): BreakGlassMarker {
  const marker: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const [name, [schema, what]] of Object.entries(MARKER_FIELDS)) {
    if (!(name in fields)) continue;
    const result = schema.safeParse(fields[name]);
    if (result.success) marker[name] = result.data;
    else problems.push(`${name} ${JSON.stringify(fields[name])} is not ${what}`);
  }
  // `until` only shows `untilMs`: without a valid TTL it would claim an end that never comes.
  if (marker.untilMs === undefined) delete marker.until;
  if (problems.length > 0) marker.problem = problems.join("; ");
  return marker as BreakGlassMarker;
}

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
