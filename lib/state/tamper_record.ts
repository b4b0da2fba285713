/**
 * `<state-dir>/tamper.json`: what the running agent found changed behind its back and put back (a mode word
 * written with bpftool, a link's pin removed), for `health` (recent ones) and `metrics` (counts per kind,
 * kept across restarts so the counter only grows). And `<state-dir>/forced_audit.json`: who asked for the
 * forced-audit word (`run --audit`, or a detach that did not finish), so that `health` can tell a word set
 * on purpose from one written behind aegisbpf's back once the agent that set it has stopped.
 */

import { join } from "node:path";
import { z } from "zod";
import { PRIVATE_FILE_MODE } from "./access.ts";
import { removeIfPresent, writeFileAtomic } from "./files.ts";

/** What was tampered with: a mode word, or a link's pin. */
export const TAMPER_KINDS = ["force_audit", "break_glass", "deadman", "enforce_signal", "link"] as const;
export type TamperKind = typeof TAMPER_KINDS[number];

/** One detection: the value found and the value restored (a link: "unpinned" and "pinned"). */
export type TamperFinding = {
  what: TamperKind;
  found: number | string;
  restored: number | string;
  /** The link's pinned name, for `what: "link"`. */
  link?: string | undefined;
};

export type TamperEntry = TamperFinding & { at: string; pid: number };

/** How long `health` names a restored tampering as recent (a warning; the agent already undid it). */
export const TAMPER_RECENT_MS = 15 * 60_000;
/** Detections kept in the record. */
const KEEP = 20;

const findingSchema = z.object({
  what: z.enum(TAMPER_KINDS),
  found: z.union([z.number(), z.string()]),
  restored: z.union([z.number(), z.string()]),
  link: z.string().optional(),
  at: z.string(),
  pid: z.number(),
});
const recordSchema = z.object({
  total: z.partialRecord(z.enum(TAMPER_KINDS), z.number().int().min(0)),
  recent: z.array(findingSchema),
});
export type TamperRecord = z.infer<typeof recordSchema>;

export function tamperFile(stateDir: string): string {
  return join(stateDir, "tamper.json");
}

/** The record; empty when there is none, or it cannot be read (a warning says so where it matters). */
export function readTamperRecord(stateDir: string): TamperRecord {
  try {
    const parsed = recordSchema.safeParse(JSON.parse(Deno.readTextFileSync(tamperFile(stateDir))));
    if (parsed.success) return parsed.data;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound) && !(error instanceof SyntaxError)) throw error;
  }
  return { total: {}, recent: [] };
}

/** Adds `findings` (made now by process `pid`) to the record: counted, and the newest kept first. */
export function recordTampering(stateDir: string, findings: readonly TamperFinding[], pid = Deno.pid): void {
  if (findings.length === 0) return;
  const record = readTamperRecord(stateDir);
  const at = new Date().toISOString();
  for (const finding of findings) {
    record.total[finding.what] = (record.total[finding.what] ?? 0) + 1;
    record.recent.unshift({ ...finding, at, pid });
  }
  record.recent = record.recent.slice(0, KEEP);
  writeFileAtomic(tamperFile(stateDir), `${JSON.stringify(record, null, 2)}\n`, PRIVATE_FILE_MODE);
}

/** The detections of the last TAMPER_RECENT_MS, newest first. */
export function recentTampering(record: TamperRecord, nowMs = Date.now()): TamperEntry[] {
  return record.recent.filter((entry) => nowMs - Date.parse(entry.at) < TAMPER_RECENT_MS);
}

/** A detection in words: "the force-audit word was 1, restored to 0". */
export function describeTampering(finding: TamperFinding): string {
  if (finding.what === "link") return `the pin of link ${finding.link} was removed, pinned again`;
  const word = finding.what.replace("_", "-");
  return `the ${word} word was ${finding.found}, restored to ${finding.restored}`;
}

/** Who asked for the forced-audit word when no agent holds it now. */
export type FloorRecord = { by: "run --audit" | "detach"; pid: number; since: string };

const floorSchema = z.object({ by: z.enum(["run --audit", "detach"]), pid: z.number(), since: z.string() });

export function floorFile(stateDir: string): string {
  return join(stateDir, "forced_audit.json");
}

export function writeFloorRecord(stateDir: string, by: FloorRecord["by"], pid = Deno.pid): void {
  const record: FloorRecord = { by, pid, since: new Date().toISOString() };
  writeFileAtomic(floorFile(stateDir), `${JSON.stringify(record)}\n`, PRIVATE_FILE_MODE);
}

export function removeFloorRecord(stateDir: string): void {
  removeIfPresent(floorFile(stateDir));
}

/** The record, or undefined when nobody asked for the word (or the record cannot be read). */
export function readFloorRecord(stateDir: string): FloorRecord | undefined {
  try {
    const parsed = floorSchema.safeParse(JSON.parse(Deno.readTextFileSync(floorFile(stateDir))));
    return parsed.success ? parsed.data : undefined;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof SyntaxError) return undefined;
    throw error;
  }
}
