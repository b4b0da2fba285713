/**
 * The break-glass marker `<config-dir>/break_glass`: what makes break-glass survive a restart. It can be
 * made or removed by hand from a rescue shell (an empty file made with `touch` counts).
 */

import { z } from "zod";

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

export { CMDLINE_ENV, CMDLINE_FLAG, cmdlineBreakGlass } from "./break_glass_cmdline.ts";

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
