/**
 * `<state-dir>/self-check.json`: a policy with `spec.checks` went (or is going) into force and its probes
 * have not passed yet. Written under the state lock just before the flip, removed once the probes passed or
 * the previous policy was put back. A marker found by the next command under the lock means the command
 * that wrote it was killed between the flip and the end of its probes: that command (`policy apply`,
 * `rollback`) or the agent runs the probes of the policy in force then, and puts `previousSeq` back when
 * they fail (lib/ops/self_check.ts). `health` says a check is pending while one is.
 */

import { join } from "node:path";
import { z } from "zod";
import { readStateJson } from "./history.ts";
import { removeIfPresent, writeFileAtomic } from "./files.ts";
import { PRIVATE_FILE_MODE } from "./access.ts";

const markerSchema = z.strictObject({
  /** The policy whose probes are pending (the compiler's sha256, as history records it). */
  sha256: z.string(),
  name: z.string(),
  version: z.int(),
  /** Its history entry, once recorded (absent when killed before the entry was written). */
  seq: z.int().min(1).optional(),
  /** The entry in force before: what a failed check puts back; absent when no policy was in force. */
  previousSeq: z.int().min(1).optional(),
  /** Who writes it: `policy apply`, `policy rollback`, `run (reload)`, `api policy apply`. */
  holder: z.string(),
  pid: z.int(),
  time: z.string(),
  /** How long its probes may take together: a running agent holds a deadman deadline that long meanwhile. */
  budgetMs: z.int().min(0).optional(),
});
export type SelfCheckMarker = z.infer<typeof markerSchema>;

export function selfCheckMarkerFile(stateDir: string): string {
  return join(stateDir, "self-check.json");
}

export function writeSelfCheckMarker(stateDir: string, marker: SelfCheckMarker): void {
  writeFileAtomic(
    selfCheckMarkerFile(stateDir),
    JSON.stringify(markerSchema.parse(marker)) + "\n",
    PRIVATE_FILE_MODE,
  );
}

export function readSelfCheckMarker(stateDir: string): SelfCheckMarker | undefined {
  return readStateJson(selfCheckMarkerFile(stateDir), markerSchema, "record");
}

export function clearSelfCheckMarker(stateDir: string): void {
  removeIfPresent(selfCheckMarkerFile(stateDir));
}

/** Whether the process that wrote the marker still runs (then its probes are running now). */
export function markerWriterAlive(marker: SelfCheckMarker): boolean {
  if (marker.pid === Deno.pid) return true;
  try {
    Deno.statSync(`/proc/${marker.pid}`);
    return true;
  } catch {
    return false;
  }
}
