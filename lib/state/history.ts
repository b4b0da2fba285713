/**
 * The history of applied policies in `<state-dir>/history/`, and the anti-rollback counter
 * `<state-dir>/version_counter` (SPEC sections 4 and 9).
 *
 * Layout: `content/<sha256>` holds each applied text exactly (a policy, or a whole bundle so that a rollback
 * can verify its signature again), named by the SHA-256 of its bytes; `index.json` lists the entries.
 * Crash safety comes from the order of writes, each one atomic: content first, then the index that refers to
 * it, then pruning what the index no longer refers to. A kill -9 between any two steps leaves an index whose
 * every entry has its content; the worst left behind is an unreferenced file, removed by the next append.
 *
 * Writers hold the state lock (`acquireStateLock`); readers need no lock.
 */

import { join } from "node:path";
import { z } from "zod";
import { InputError } from "../errors.ts";
import { makePrivateDir, PRIVATE_FILE_MODE } from "./access.ts";
import { policySha256 } from "../policy/digest.ts";
import { isTempFileName, removeIfPresent, syncDirectory, writeFileAtomic } from "./files.ts";

/** Entries kept at least; the current and the previous in-force entry are kept even when older. */
export const HISTORY_KEEP = 20;

/**
 * - `pending`: recorded before the kernel write, so that a kill -9 during an apply leaves a trace
 * - `applied`, `rolled-back` (a rollback re-applied an older entry), `canary` (being watched),
 *   `canary-kept`: the policy went into force
 * - `canary-rolled-back`, `failed`, `check-failed` (its self-check failed: the previous policy was put back
 *   at once): the policy is not in force
 */
export const HISTORY_OUTCOMES = [
  "pending",
  "applied",
  "rolled-back",
  "canary",
  "canary-kept",
  "canary-rolled-back",
  "failed",
  "check-failed",
] as const;
export type HistoryOutcome = typeof HISTORY_OUTCOMES[number];

const IN_FORCE: ReadonlySet<HistoryOutcome> = new Set(["applied", "rolled-back", "canary", "canary-kept"]);

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/);

const entrySchema = z.strictObject({
  seq: z.int().min(1),
  time: z.iso.datetime({ offset: true }),
  uid: z.int().min(0),
  source: z.string(),
  kind: z.enum(["policy", "bundle"]),
  name: z.string(),
  version: z.int().min(0),
  /** The policy's sha256 as the compiler states it: what `policy history` shows and `--to` matches. */
  sha256: sha256Hex,
  /** The SHA-256 of the stored content: the policy text, or the whole bundle. */
  contentSha256: sha256Hex,
  keyid: sha256Hex.optional(),
  outcome: z.enum(HISTORY_OUTCOMES),
  /** For a rollback: the seq of the entry it re-applied. */
  restoredSeq: z.int().min(1).optional(),
  /** Why the outcome is what it is, where history has more to say: the self-check probe that failed. */
  note: z.string().optional(),
});

const indexSchema = z.strictObject({ format: z.literal(1), entries: z.array(entrySchema) });

export type HistoryEntry = z.infer<typeof entrySchema>;

export type NewHistoryEntry = Omit<HistoryEntry, "seq" | "time" | "contentSha256"> & {
  /** The exact text applied: the policy file, or the whole bundle. */
  content: string;
  /**
   * The SHA-256 of `content` when the caller already has it (a plain policy's own `sha256`), so that a
   * large text is hashed once per apply; computed here when absent.
   */
  contentSha256?: string;
  time?: Date;
};

/** Steps of an append, in order; `onStep` runs before each (tests stop there to simulate a kill -9). */
export type AppendStep = "content" | "index" | "prune";
export type AppendOptions = { onStep?: (step: AppendStep) => void };

/** State that aegisbpf wrote and cannot read back: a file damaged outside it. A runtime failure, exit 1. */
export class CorruptStateError extends Error {
  override name = "CorruptStateError";
  constructor(readonly file: string, detail: string, options?: ErrorOptions) {
    super(`Corrupt state file ${file}: ${detail}`, options);
  }
}

export function historyDir(stateDir: string): string {
  return join(stateDir, "history");
}

function indexFile(stateDir: string): string {
  return join(historyDir(stateDir), "index.json");
}

export function contentDir(stateDir: string): string {
  return join(historyDir(stateDir), "content");
}

/** The entries, oldest first. No history yet is an empty list. */
export function listHistory(stateDir: string): HistoryEntry[] {
  return readStateJson(indexFile(stateDir), indexSchema, "index")?.entries ?? [];
}

/**
 * A JSON state file checked against `schema`, or undefined when there is none; anything else that does
 * not read back is a CorruptStateError naming the file and, for a schema problem, the field (or `what`).
 */
export function readStateJson<S extends z.ZodType>(
  file: string,
  schema: S,
  what: string,
): z.output<S> | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(file);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new CorruptStateError(file, `not valid JSON: ${(error as Error).message}`, { cause: error });
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new CorruptStateError(file, `${issue?.path.join(".") || what}: ${issue?.message ?? "invalid"}`);
  }
  return parsed.data;
}

/** Records an applied (or attempted) policy and its content; returns the entry with its new seq. */
export function appendHistory(
  stateDir: string,
  input: NewHistoryEntry,
  options: AppendOptions = {},
): HistoryEntry {
  const entries = listHistory(stateDir);
  const { content, contentSha256, time = new Date(), ...fields } = input;
  const bytes = new TextEncoder().encode(content);
  const entry: HistoryEntry = entrySchema.parse({
    ...fields,
    seq: (entries.at(-1)?.seq ?? 0) + 1,
    time: time.toISOString(),
    contentSha256: contentSha256 ?? policySha256(bytes),
  });
  options.onStep?.("content");
  makePrivateDir(contentDir(stateDir));
  const file = join(contentDir(stateDir), entry.contentSha256);
  // Content is stored by its hash: a policy applied again (a rollback) finds its text stored, written
  // durably when it was first applied, and is not written again. A file there with other bytes is replaced.
  if (!holds(file, bytes)) writeFileAtomic(file, bytes, PRIVATE_FILE_MODE);
  options.onStep?.("index");
  const kept = keptEntries([...entries, entry]);
  writeIndex(stateDir, kept);
  options.onStep?.("prune");
  pruneContent(stateDir, kept);
  return entry;
}

/**
 * Whether `file` is a private regular file (as writeFileAtomic leaves it) holding exactly `bytes`; false when
 * it is missing, cannot be read, or is anything else.
 */
function holds(file: string, bytes: Uint8Array): boolean {
  let stored: Uint8Array;
  try {
    const info = Deno.lstatSync(file);
    if (!info.isFile || info.size !== bytes.length || ((info.mode ?? 0) & 0o7777) !== PRIVATE_FILE_MODE) {
      return false;
    }
    stored = Deno.readFileSync(file);
  } catch {
    return false;
  }
  if (stored.length !== bytes.length) return false;
  for (let i = 0; i < bytes.length; i++) if (stored[i] !== bytes[i]) return false;
  return true;
}

/** Changes the outcome of an entry, e.g. `pending` → `applied`, or `canary` → `canary-kept`. */
export function setOutcome(
  stateDir: string,
  seq: number,
  outcome: HistoryOutcome,
  note?: string,
): HistoryEntry {
  const entries = listHistory(stateDir);
  const index = entries.findIndex((entry) => entry.seq === seq);
  const entry = entries[index];
  if (entry === undefined) throw new InputError(`No history entry ${seq} in ${historyDir(stateDir)}`);
  const updated = { ...entry, outcome, ...note !== undefined && { note } };
  writeIndex(stateDir, entries.with(index, updated));
  return updated;
}

/** The stored text of an entry, checked against its hash. */
export function readEntryContent(stateDir: string, entry: HistoryEntry): string {
  const file = join(contentDir(stateDir), entry.contentSha256);
  let bytes: Uint8Array;
  try {
    bytes = Deno.readFileSync(file);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    throw new CorruptStateError(file, `the content of history entry ${entry.seq} is missing`, {
      cause: error,
    });
  }
  if (policySha256(bytes) !== entry.contentSha256) {
    throw new CorruptStateError(file, `the content of history entry ${entry.seq} does not match its sha256`);
  }
  return new TextDecoder().decode(bytes);
}

/** Whether an entry's outcome put its policy in force (it may have been replaced since). */
export function wasInForce(entry: HistoryEntry): boolean {
  return IN_FORCE.has(entry.outcome);
}

/** The policy in force: the newest entry whose outcome put it in force. */
export function currentEntry(entries: readonly HistoryEntry[]): HistoryEntry | undefined {
  return entries.findLast((entry) => IN_FORCE.has(entry.outcome));
}

/**
 * What `policy rollback` with no `--to` re-applies: the newest in-force entry before the current one with a
 * different policy (re-applying the policy already in force would change nothing). Entries that failed, were
 * rolled back by a canary, or are pending are skipped.
 */
export function previousEntry(entries: readonly HistoryEntry[]): HistoryEntry | undefined {
  const current = currentEntry(entries);
  if (current === undefined) return undefined;
  return entries.findLast((entry) =>
    entry.seq < current.seq && IN_FORCE.has(entry.outcome) && entry.sha256 !== current.sha256
  );
}

/**
 * The entry `policy rollback --to REF` names: a seq (decimal, fewer than 8 digits), or at least 8 hex
 * digits of a policy sha256 (the newest entry with that policy). An InputError when nothing or more than one
 * policy matches.
 */
export function findEntry(entries: readonly HistoryEntry[], ref: string): HistoryEntry {
  if (/^\d{1,7}$/.test(ref)) {
    const entry = entries.find((candidate) => candidate.seq === Number(ref));
    if (entry === undefined) throw new InputError(`No history entry with seq ${ref}`);
    return entry;
  }
  const prefix = ref.toLowerCase();
  if (!/^[0-9a-f]{8,64}$/.test(prefix)) {
    throw new InputError(
      `Invalid history reference ${JSON.stringify(ref)}: give a seq or 8 to 64 hex digits of a sha256`,
    );
  }
  const matches = entries.filter((entry) => entry.sha256.startsWith(prefix));
  const policies = new Set(matches.map((entry) => entry.sha256));
  if (policies.size > 1) {
    throw new InputError(`Sha256 prefix ${prefix} is ambiguous: it matches ${[...policies].join(", ")}`);
  }
  const entry = matches.findLast((candidate) => IN_FORCE.has(candidate.outcome)) ?? matches.at(-1);
  if (entry === undefined) throw new InputError(`No history entry with sha256 ${prefix}`);
  return entry;
}

function keptEntries(entries: readonly HistoryEntry[]): HistoryEntry[] {
  const keep = new Set(entries.slice(-HISTORY_KEEP));
  for (const entry of [currentEntry(entries), previousEntry(entries)]) if (entry) keep.add(entry);
  return entries.filter((entry) => keep.has(entry));
}

function writeIndex(stateDir: string, entries: readonly HistoryEntry[]): void {
  makePrivateDir(historyDir(stateDir));
  writeFileAtomic(
    indexFile(stateDir),
    JSON.stringify({ format: 1, entries }, null, 2) + "\n",
    PRIVATE_FILE_MODE,
  );
}

/** Removes content no kept entry refers to, and temporary files of interrupted writes. */
function pruneContent(stateDir: string, kept: readonly HistoryEntry[]): void {
  const referenced = new Set(kept.map((entry) => entry.contentSha256));
  for (const dir of [historyDir(stateDir), contentDir(stateDir)]) {
    for (const { name, isFile } of Deno.readDirSync(dir)) {
      const stray = isTempFileName(name) || (dir === contentDir(stateDir) && !referenced.has(name));
      if (isFile && stray) removeIfPresent(join(dir, name));
    }
  }
  syncDirectory(contentDir(stateDir));
}

function versionCounterFile(stateDir: string): string {
  return join(stateDir, "version_counter");
}

/** The anti-rollback counter: the highest bundle version applied, 0 before any. */
export function readVersionCounter(stateDir: string): number {
  const file = versionCounterFile(stateDir);
  let text: string;
  try {
    text = Deno.readTextFileSync(file);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return 0;
    throw error;
  }
  const value = Number(text.trim());
  if (!/^\d+\s*$/.test(text) || !Number.isSafeInteger(value)) {
    throw new CorruptStateError(
      file,
      `expected a non-negative integer, found ${JSON.stringify(text.slice(0, 40))}`,
    );
  }
  return value;
}

/** Raises the counter to `version`; it never goes down. Returns the counter now. */
export function raiseVersionCounter(stateDir: string, version: number): number {
  if (!Number.isSafeInteger(version) || version < 0) {
    throw new RangeError(`A policy version is a non-negative integer, not ${version}`);
  }
  const current = readVersionCounter(stateDir);
  if (version <= current) return current;
  makePrivateDir(stateDir);
  writeFileAtomic(versionCounterFile(stateDir), `${version}\n`, PRIVATE_FILE_MODE);
  return version;
}
