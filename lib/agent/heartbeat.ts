/**
 * `<state-dir>/heartbeat`: the time the running agent last got round its timer loop, written every
 * HEARTBEAT_MS. A pid that exists says the agent lives; only a fresh heartbeat says it still works (not
 * stopped by SIGSTOP, not wedged in a call that never returns). `health` reads it.
 */

import { join } from "node:path";
import { writeFileAtomic } from "../policy/state.ts";

export const HEARTBEAT_MS = 2000;
/** Five missed beats: long enough for a loaded host, short enough for a readiness probe to notice. */
export const HEARTBEAT_STALE_MS = 5 * HEARTBEAT_MS;

export function heartbeatFile(stateDir: string): string {
  return join(stateDir, "heartbeat");
}

export function writeHeartbeat(stateDir: string, now = new Date()): void {
  writeFileAtomic(heartbeatFile(stateDir), `${now.toISOString()}\n`, 0o644);
}

/** The last beat, or undefined when there is none (or it cannot be read as a time). */
export function readHeartbeat(stateDir: string): Date | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(heartbeatFile(stateDir));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  const at = new Date(text.trim());
  return Number.isNaN(at.getTime()) ? undefined : at;
}

/**
 * How long the agent that started at `startedAt` has gone without a beat: from its last beat, or from its
 * start when it has not beaten yet (a beat older than the start is a previous agent's).
 */
export function heartbeatAge(
  beat: Date | undefined,
  startedAt: string,
  now = Date.now(),
): { lastMs: number; ageMs: number } {
  const started = Date.parse(startedAt);
  const last = Math.max(beat?.getTime() ?? -Infinity, Number.isFinite(started) ? started : -Infinity);
  const lastMs = Number.isFinite(last) ? last : now;
  return { lastMs, ageMs: Math.max(0, now - lastMs) };
}
