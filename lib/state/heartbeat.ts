/**
 * `<state-dir>/heartbeat`: its modification time is when the running agent last got round its timer loop,
 * touched every HEARTBEAT_MS. A pid that exists says the agent lives; only a fresh heartbeat says it still
 * works (not stopped by SIGSTOP, not wedged in a call that never returns). `health` reads it. Touching a
 * time is atomic and writes no data, so a beat costs no fsync.
 */

import { join } from "node:path";
import { writeFileAtomic } from "./files.ts";

export const HEARTBEAT_MS = 2000;
/** Five missed beats: long enough for a loaded host, short enough for a readiness probe to notice. */
export const HEARTBEAT_STALE_MS = 5 * HEARTBEAT_MS;

export function heartbeatFile(stateDir: string): string {
  return join(stateDir, "heartbeat");
}

export function writeHeartbeat(stateDir: string, now = new Date()): void {
  const path = heartbeatFile(stateDir);
  try {
    Deno.utimeSync(path, now, now);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    writeFileAtomic(path, "", 0o644);
    Deno.utimeSync(path, now, now);
  }
}

/** The last beat, or undefined when there is none. */
export function readHeartbeat(stateDir: string): Date | undefined {
  try {
    return Deno.statSync(heartbeatFile(stateDir)).mtime ?? undefined;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
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
