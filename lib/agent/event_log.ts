/**
 * The agent's bounded on-disk event log, read by `events`: every event (SPEC section 6) as one JSON line
 * appended to `<state-dir>/events.jsonl`; a line that would take the file past 8 MiB first renames it to
 * `events.jsonl.1` (replacing the previous one) and starts a new file. So at most two files, and the newest
 * events are always in `events.jsonl`. Recent events come from both files, oldest first; following survives
 * the rotation (the file renamed and a new one made) and a truncation.
 */

import { concatBytes } from "../../ffi/bytes.ts";
import { join } from "node:path";
import { jsonText } from "../text/printable.ts";
import { PRIVATE_FILE_MODE } from "../state/access.ts";

/** The largest log file the agent keeps before it rotates, so at most twice this is read. */
export const EVENT_LOG_BYTES = 8 * 1024 * 1024;

/** The largest encoding buffer a log keeps for reuse; a longer text is encoded on its own. */
const SCRATCH_KEPT_BYTES = 1024 * 1024;

export function eventLogPath(stateDir: string): string {
  return join(stateDir, "events.jsonl");
}

export class EventLog {
  readonly path: string;
  readonly #maxBytes: number;
  readonly #encoder = new TextEncoder();
  #file: Deno.FsFile;
  #size: number;
  #scratch = new Uint8Array(0);

  constructor(path: string, maxBytes = EVENT_LOG_BYTES) {
    this.path = path;
    this.#maxBytes = maxBytes;
    this.#file = open(path);
    this.#size = this.#file.statSync().size;
  }

  /** Appends one event as a JSON line. */
  append(event: object): void {
    this.appendText(`${jsonText(event)}\n`);
  }

  /** Appends text as it is (whole lines, or a newline that ends a line cut short). */
  appendText(text: string): void {
    this.appendBytes(this.#encode(text));
  }

  /** Appends the UTF-8 of whole lines (or of a newline that ends a line cut short) as they are. */
  appendBytes(bytes: Uint8Array): void {
    if (this.#size > 0 && this.#size + bytes.length > this.#maxBytes) this.#rotate();
    for (let written = 0; written < bytes.length;) written += this.#file.writeSync(bytes.subarray(written));
    this.#size += bytes.length;
  }

  /**
   * The UTF-8 of `text` in a buffer this log keeps and reuses (the write that takes it is synchronous): a
   * flood's batches cost no allocation of their size each.
   */
  #encode(text: string): Uint8Array {
    // UTF-8 takes at most 3 bytes per UTF-16 code unit.
    if (this.#scratch.length < text.length * 3) {
      this.#scratch = new Uint8Array(Math.min(Math.max(text.length * 3, 64 * 1024), SCRATCH_KEPT_BYTES));
    }
    if (this.#scratch.length < text.length * 3) return this.#encoder.encode(text);
    const { written } = this.#encoder.encodeInto(text, this.#scratch);
    return this.#scratch.subarray(0, written);
  }

  #rotate(): void {
    this.#file.close();
    Deno.renameSync(this.path, rotatedPath(this.path));
    this.#file = open(this.path);
    this.#size = 0;
  }

  close(): void {
    this.#file.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

function open(path: string): Deno.FsFile {
  return Deno.openSync(path, { append: true, create: true, mode: PRIVATE_FILE_MODE });
}

export function rotatedPath(path: string): string {
  return `${path}.1`;
}

/** One line of the log: parsed, or why not, with where it is. */
export type LogLine =
  | { ok: true; file: string; line: number; raw: string; event: Record<string, unknown> }
  | { ok: false; file: string; line: number; raw: string; why: string };

/** Parses a line: an event is a JSON object with a string `type`. */
export function parseLine(file: string, line: number, raw: string): LogLine {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return { ok: false, file, line, raw, why: "not JSON" };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { ok: false, file, line, raw, why: "not a JSON object" };
  }
  if (typeof (value as { type?: unknown }).type !== "string") {
    return { ok: false, file, line, raw, why: "no event type" };
  }
  return { ok: true, file, line, raw, event: value as Record<string, unknown> };
}

/** Where reading stopped in a log file: after its last whole line. */
export type LogPosition = { ino: number | null; offset: number; line: number };

const NEWLINE = 0x0a;

/** The whole lines of `path` and where they end; none when it does not exist. */
function readWholeLines(path: string): { lines: string[]; end: LogPosition | undefined } {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { read: true });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return { lines: [], end: undefined };
    throw error;
  }
  try {
    const { ino } = file.statSync();
    const chunks: Uint8Array[] = [];
    const buffer = new Uint8Array(1024 * 1024);
    for (let read = file.readSync(buffer); read !== null && read > 0; read = file.readSync(buffer)) {
      chunks.push(buffer.slice(0, read));
    }
    const bytes = concatBytes(chunks);
    // A last line without its newline is still being written: it is read whole by a follower later.
    const offset = bytes.lastIndexOf(NEWLINE) + 1;
    const lines = new TextDecoder().decode(bytes.subarray(0, offset)).split("\n");
    lines.pop();
    return { lines, end: { ino, offset, line: lines.length } };
  } finally {
    file.close();
  }
}

/**
 * The last `count` lines of the rotated and the current log, oldest first (blank lines skipped, line
 * numbers those of their file), and where the current file's lines end: following from there misses
 * nothing appended after this read.
 */
export function readRecent(path: string, count: number): { lines: LogLine[]; end: LogPosition | undefined } {
  const current = readWholeLines(path);
  const numbered: { file: string; line: number; raw: string }[] = [];
  const sources = count > 0 ? [{ file: rotatedPath(path), ...readWholeLines(rotatedPath(path)) }] : [];
  for (const { file, lines } of [...sources, { file: path, ...current }]) {
    lines.forEach((raw, i) => {
      if (raw.trim() !== "") numbered.push({ file, line: i + 1, raw });
    });
  }
  const lines = count > 0
    ? numbered.slice(-count).map(({ file, line, raw }) => parseLine(file, line, raw))
    : [];
  return { lines, end: current.end };
}

/** The last `count` lines of the rotated and the current log, oldest first. */
export function recentLines(path: string, count: number): LogLine[] {
  return readRecent(path, count).lines;
}

/** Where a follower is in the current file: its identity, the bytes read and the line count. */
type Cursor = {
  file: Deno.FsFile;
  ino: number | null;
  offset: number;
  line: number;
  partial: string;
  decoder: TextDecoder;
};

/**
 * Calls `onLine` for each line appended to `path` from its current end, every `intervalMs`, until
 * `signal` aborts. When the file is renamed away and a new one made (rotation), the rest of the old one
 * is read first, then the new one from its start; when it is truncated, from its start again.
 */
export async function followLines(
  path: string,
  onLine: (line: LogLine) => void,
  options: { signal: AbortSignal; intervalMs?: number; from?: LogPosition | undefined },
): Promise<void> {
  const interval = options.intervalMs ?? 200;
  let cursor = options.from === undefined ? openCursor(path) : resumeCursor(path, options.from);
  try {
    while (!options.signal.aborted) {
      if (cursor === undefined) {
        cursor = openCursor(path);
      } else {
        drain(cursor, path, onLine);
        const now = statOrUndefined(path);
        if (now === undefined || now.ino !== cursor.ino) {
          // Renamed away (rotation) or removed: the old file's last lines, then the new file from its start.
          drain(cursor, rotatedPath(path), onLine, true);
          cursor.file.close();
          cursor = openCursor(path);
          if (cursor) drain(cursor, path, onLine);
        } else if (now.size < cursor.offset) {
          cursor.offset = 0;
          cursor.line = 0;
          cursor.partial = "";
          cursor.decoder = new TextDecoder();
        }
      }
      await sleep(interval, options.signal);
    }
  } finally {
    cursor?.file.close();
  }
}

/** A cursor at the start of `path`, or undefined when it does not exist. */
function openCursor(path: string, at: LogPosition = { ino: null, offset: 0, line: 0 }): Cursor | undefined {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { read: true });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  const { ino } = file.statSync();
  return { file, ino, offset: at.offset, line: at.line, partial: "", decoder: new TextDecoder() };
}

/**
 * A cursor where an earlier read stopped: in the current file if it is still the same one, in the rotated
 * file if it was renamed there meanwhile (the loop then reads its rest and moves on), else at the start of
 * the current file.
 */
function resumeCursor(path: string, from: LogPosition): Cursor | undefined {
  for (const candidate of [path, rotatedPath(path)]) {
    const cursor = openCursor(candidate);
    if (cursor && cursor.ino === from.ino) return { ...cursor, offset: from.offset, line: from.line };
    cursor?.file.close();
  }
  return openCursor(path);
}

/** Reads what was appended since the cursor; a last line without its newline waits, unless `final`. */
function drain(cursor: Cursor, name: string, onLine: (line: LogLine) => void, final = false): void {
  const buffer = new Uint8Array(64 * 1024);
  cursor.file.seekSync(cursor.offset, Deno.SeekMode.Start);
  let text = cursor.partial;
  for (;;) {
    const read = cursor.file.readSync(buffer);
    if (read === null || read === 0) break;
    cursor.offset += read;
    text += cursor.decoder.decode(buffer.subarray(0, read), { stream: true });
  }
  const lines = text.split("\n");
  cursor.partial = final ? "" : lines.pop() ?? "";
  if (final && lines.at(-1) === "") lines.pop();
  for (const raw of lines) {
    cursor.line += 1;
    if (raw.trim() !== "") onLine(parseLine(name, cursor.line, raw));
  }
}

function statOrUndefined(path: string): Deno.FileInfo | undefined {
  try {
    return Deno.statSync(path);
  } catch {
    return undefined;
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}
