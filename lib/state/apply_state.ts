/**
 * Keeping history and the kernel consistent across a `kill -9` at any point of an apply.
 *
 * The kernel holds no policy sha256, only the active generation word, and an apply changes exactly that
 * word (one atomic flip). So an apply, holding the state lock, having resolved the plan's names and opened
 * the data plane (attaching or adopting programs changes no rule), writes in this order:
 *
 * 1. the history entry with outcome `pending` (its content stored first, see history.ts);
 * 2. `<state-dir>/apply_intent.json`: that entry's seq and the generation live *before* the flip;
 * 3. the kernel write and flip (all or nothing, data plane);
 * 4. `<state-dir>/applied.json`: what the kernel now holds (seq, sha256, generation);
 * 5. the entry's outcome (`applied`, `rolled-back` or `canary`), the anti-rollback counter for a bundle;
 * 6. the intent removed.
 *
 * The next state-changing command, under the same lock, settles what a kill left behind before it does
 * anything (`settlePending`): a `pending` entry named by the intent is in force when the kernel's active
 * generation is no longer the one recorded before the flip, or when applied.json names it; every other
 * `pending` entry (killed before its intent was written, or superseded) is `failed`, and the kernel was
 * never touched for it. Killed before step 1: no entry at all. Between 5 and 6: no pending entry, and the
 * stale intent is removed. Only state-changing commands settle: read-only ones show `pending` as it is.
 *
 * A `detach` between the kill and the next apply resets the generation word to 0; a pending entry whose
 * recorded generation was 0 then reads as failed, which is what the (empty) kernel holds.
 */

import { join } from "node:path";
import { z } from "zod";
import { parseEnvelope } from "../policy/dsse.ts";
import {
  currentEntry,
  type HistoryEntry,
  type HistoryOutcome,
  listHistory,
  readEntryContent,
  readStateJson,
} from "./history.ts";
import { removeIfPresent, writeFileAtomic } from "./files.ts";
import { PRIVATE_FILE_MODE } from "./access.ts";

const intentSchema = z.strictObject({
  seq: z.int().min(1),
  fromGeneration: z.int().min(0),
  /** What the entry becomes once in force. */
  outcome: z.enum(["applied", "rolled-back", "canary"]),
  /** A bundle's version, raised into the anti-rollback counter once in force (not for rollbacks). */
  raiseCounterTo: z.int().min(0).optional(),
  time: z.string(),
});
export type ApplyIntent = z.infer<typeof intentSchema>;

/** A file or exec rule's path and the inode the kernel set denies for it, as resolved at apply. */
const inodeSchema = z.strictObject({
  rule: z.string(),
  area: z.enum(["file", "exec"]),
  path: z.string(),
  /** The rule's own path when `path` was found under it (recursive: true). */
  under: z.string().optional(),
  dev: z.int().min(0),
  /** Decimal: inode numbers may pass 2^53. */
  ino: z.string().regex(/^[0-9]+$/),
});
export type AppliedInode = z.infer<typeof inodeSchema>;

const appliedSchema = z.strictObject({
  seq: z.int().min(1),
  name: z.string(),
  version: z.int().min(0),
  sha256: z.string(),
  contentSha256: z.string(),
  generation: z.int().min(0),
  time: z.string(),
  /** The policy's mode (absent in records written before it was kept). */
  mode: z.enum(["audit", "enforce"]).optional(),
  /** The areas whose programs the apply attached. */
  areas: z.array(z.enum(["file", "exec", "egress", "bind", "ingress"])).optional(),
  /** The interfaces the ingress rules filter. */
  interfaces: z.array(z.string()).optional(),
  /** The interfaces forwarded packets are judged on (network.egress.forwarded), each an aegis_forward@ link. */
  forward: z.array(z.string()).optional(),
  /** Every inode the file and exec rules deny; `health` compares them with what the paths hold now. */
  inodes: z.array(inodeSchema).optional(),
  /** Recursive rules' directories, to find files created under them after the apply. */
  recursive: z.array(z.strictObject({
    rule: z.string(),
    area: z.enum(["file", "exec"]),
    path: z.string(),
    /** The rule's cap on its walk, when it sets one. */
    maxFiles: z.int().min(1).optional(),
    /** Every inode denied under the directory, compactly (see inode_set.ts); not listed in `inodes`. */
    denied: z.array(z.strictObject({
      dev: z.int().min(0),
      count: z.int().min(0),
      inodes: z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/),
    })).optional(),
  })).optional(),
  /**
   * exec.allow's inodes as the apply resolved them (exec.default deny), by rule, compactly; `ctimeNs`: a
   * sha256 entry's stamp. A rule refresh keeps these: a file replaced since apply stays untrusted.
   */
  allowed: z.array(z.strictObject({
    rule: z.string(),
    ctimeNs: z.string().regex(/^[0-9]+$/).optional(),
    inodes: z.array(z.strictObject({
      dev: z.int().min(0),
      count: z.int().min(0),
      inodes: z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/),
      /** Each inode's i_generation, where the filesystem showed it (see inode_set.ts). */
      generations: z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/).optional(),
    })),
  })).optional(),
});
export type AppliedRecord = z.infer<typeof appliedSchema>;

function intentFile(stateDir: string): string {
  return join(stateDir, "apply_intent.json");
}

export function appliedFile(stateDir: string): string {
  return join(stateDir, "applied.json");
}

export function writeApplyIntent(stateDir: string, intent: ApplyIntent): void {
  writeFileAtomic(intentFile(stateDir), JSON.stringify(intentSchema.parse(intent)) + "\n", PRIVATE_FILE_MODE);
}

export function readApplyIntent(stateDir: string): ApplyIntent | undefined {
  return readStateJson(intentFile(stateDir), intentSchema, "record");
}

export function clearApplyIntent(stateDir: string): void {
  removeIfPresent(intentFile(stateDir));
}

export function writeApplied(stateDir: string, record: AppliedRecord): void {
  writeFileAtomic(
    appliedFile(stateDir),
    JSON.stringify(appliedSchema.parse(record), null, 2) + "\n",
    PRIVATE_FILE_MODE,
  );
}

/** What the last successful apply put into the kernel, or undefined before any. */
export function readApplied(stateDir: string): AppliedRecord | undefined {
  return readStateJson(appliedFile(stateDir), appliedSchema, "record");
}

/** A history entry with its policy text: a stored bundle's payload, or the stored policy itself. */
export type StoredPolicy = { entry: HistoryEntry; policyText: string };

export function storedPolicy(stateDir: string, entry: HistoryEntry): StoredPolicy {
  const content = readEntryContent(stateDir, entry);
  if (entry.kind === "policy") return { entry, policyText: content };
  const { payload } = parseEnvelope(content, `history entry ${entry.seq}`);
  return { entry, policyText: new TextDecoder().decode(payload) };
}

/** The policy in force as history records it (see `currentEntry`), or undefined before any apply. */
export function appliedPolicy(stateDir: string): StoredPolicy | undefined {
  const entry = currentEntry(listHistory(stateDir));
  return entry && storedPolicy(stateDir, entry);
}

/** One pending entry and what it turned out to be. */
export type Settlement = { seq: number; outcome: HistoryOutcome; raiseCounterTo?: number };

/**
 * The outcome of every `pending` entry, given the intent and applied records left by an interrupted apply
 * and the kernel's active generation now. Pure.
 */
export function settlePending(
  entries: readonly HistoryEntry[],
  intent: ApplyIntent | undefined,
  applied: AppliedRecord | undefined,
  activeGeneration: number,
): Settlement[] {
  return entries.filter((entry) => entry.outcome === "pending").map((entry) => {
    const named = intent?.seq === entry.seq;
    const flipped = named && intent.fromGeneration !== activeGeneration;
    if (named && (flipped || applied?.seq === entry.seq)) {
      return intent.raiseCounterTo === undefined
        ? { seq: entry.seq, outcome: intent.outcome }
        : { seq: entry.seq, outcome: intent.outcome, raiseCounterTo: intent.raiseCounterTo };
    }
    return { seq: entry.seq, outcome: "failed" };
  });
}
