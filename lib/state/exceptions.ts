/**
 * The names of the expiring exceptions: `<state-dir>/exceptions.json` (id, match, reason, ticket, who, when,
 * expiry), written atomically by writers holding the state lock; and the history notes of their adds and
 * removes, one JSON line each in `<state-dir>/history/notes.jsonl`. The kernel maps decide (lib/kernel/
 * exceptions.ts); this file only names what they hold.
 */

import { join } from "node:path";
import { z } from "zod";
import { makePrivateDir, PRIVATE_FILE_MODE } from "./access.ts";
import { writeFileAtomic } from "./files.ts";
import { historyDir, readStateJson } from "./history.ts";

const recordSchema = z.strictObject({
  id: z.int().min(1),
  /** As written: exec:PATH, file:PATH or egress:CIDR[:PORT]. */
  allow: z.string(),
  kind: z.enum(["exec", "file", "egress"]),
  /** The cgroup path (--in), relative to the cgroup v2 root. */
  in: z.string().optional(),
  reason: z.string(),
  ticket: z.string().optional(),
  uid: z.int().min(0),
  created: z.iso.datetime({ offset: true }),
  expires: z.iso.datetime({ offset: true }),
  /** The kernel's deadline (CLOCK_BOOTTIME ns, decimal): the same instant as `expires` in this boot. */
  expiresBootNs: z.string().regex(/^\d+$/),
  /** The inodes the path resolved to (dev:ino), for exec and file. */
  inodes: z.array(z.string()).optional(),
});

const fileSchema = z.strictObject({
  format: z.literal(1),
  /** The last number handed out: numbers go up, wrapping at 65535 past the live ones. */
  lastId: z.int().min(0),
  exceptions: z.array(recordSchema),
});

export type ExceptionRecord = z.infer<typeof recordSchema>;
export type ExceptionFile = z.infer<typeof fileSchema>;

export function exceptionsFile(stateDir: string): string {
  return join(stateDir, "exceptions.json");
}

export function readExceptions(stateDir: string): ExceptionFile {
  return readStateJson(exceptionsFile(stateDir), fileSchema, "exceptions") ??
    { format: 1, lastId: 0, exceptions: [] };
}

/** Writes the whole file atomically: the caller holds the state lock. */
export function writeExceptions(stateDir: string, file: ExceptionFile): void {
  makePrivateDir(stateDir);
  writeFileAtomic(exceptionsFile(stateDir), `${JSON.stringify(file, null, 2)}\n`, PRIVATE_FILE_MODE);
}

/** One history note: a change to the host's enforcement that is not a policy (an exception added or removed). */
export type HistoryNote = {
  time: string;
  uid: number;
  note: "exception-added" | "exception-removed" | "exception-expired-removed";
  exception: number;
  allow: string;
  reason?: string;
  ticket?: string;
  expires?: string;
};

export function notesFile(stateDir: string): string {
  return join(historyDir(stateDir), "notes.jsonl");
}

/** Appends a note (the caller holds the state lock): one line, written with O_APPEND. */
export function appendHistoryNote(stateDir: string, note: HistoryNote): void {
  makePrivateDir(stateDir);
  makePrivateDir(historyDir(stateDir));
  Deno.writeTextFileSync(notesFile(stateDir), `${JSON.stringify(note)}\n`, {
    append: true,
    create: true,
    mode: PRIVATE_FILE_MODE,
  });
}

/** The notes, oldest first; a line that does not read back (a torn last line) is skipped. */
export function readHistoryNotes(stateDir: string): HistoryNote[] {
  let text: string;
  try {
    text = Deno.readTextFileSync(notesFile(stateDir));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
  const notes: HistoryNote[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    try {
      notes.push(JSON.parse(line) as HistoryNote);
    } catch {
      // a line cut short by a crash
    }
  }
  return notes;
}
