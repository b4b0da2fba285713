/**
 * The agent's bounded on-disk event log, read by `events`: every event (SPEC section 6) as one JSON line
 * appended to `<state-dir>/events.jsonl`; a line that would take the file past 8 MiB first renames it to
 * `events.jsonl.1` (replacing the previous one) and starts a new file. So at most two files, and the newest
 * events are always in `events.jsonl`. Recent events come from both files, oldest first; following survives
 * the rotation (the file renamed and a new one made) and a truncation.
 */

import { join } from "node:path";

/** The largest log file the agent keeps before it rotates, so at most twice this is read. */
export const EVENT_LOG_BYTES = 8 * 1024 * 1024;

export function eventLogPath(stateDir: string): string {
  return join(stateDir, "events.jsonl");
}

export class EventLog {
  readonly path: string;
  readonly #maxBytes: number;
  readonly #encoder = new TextEncoder();
  #file: Deno.FsFile;
  #size: number;

  constructor(path: string, maxBytes = EVENT_LOG_BYTES) {
    this.path = path;
    this.#maxBytes = maxBytes;
    this.#file = open(path);
    this.#size = this.#file.statSync().size;
  }

  /** Appends one event as a JSON line. */
  append(event: object): void {
    const bytes = this.#encoder.encode(`${JSON.stringify(event)}\n`);
    if (this.#size > 0 && this.#size + bytes.length > this.#maxBytes) this.#rotate();
    for (let written = 0; written < bytes.length;) written += this.#file.writeSync(bytes.subarray(written));
    this.#size += bytes.length;
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
  return Deno.openSync(path, { append: true, create: true, mode: 0o644 });
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

function readLines(path: string): { file: string; lines: string[] } {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return { file: path, lines: [] };
    throw error;
  }
  const lines = text.split("\n");
  // The last piece is a partial line still being written (or empty after the final newline).
  lines.pop();
  return { file: path, lines };
}

/**
 * The last `count` lines of the rotated and the current log, oldest first; blank lines are skipped and
 * line numbers are those of their file.
 */
export function recentLines(path: string, count: number): LogLine[] {
  if (count <= 0) return [];
  const numbered: { file: string; line: number; raw: string }[] = [];
  for (const { file, lines } of [readLines(rotatedPath(path)), readLines(path)]) {
    lines.forEach((raw, i) => {
      if (raw.trim() !== "") numbered.push({ file, line: i + 1, raw });
    });
  }
  return numbered.slice(-count).map(({ file, line, raw }) => parseLine(file, line, raw));
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
  options: { signal: AbortSignal; intervalMs?: number; fromStart?: boolean },
): Promise<void> {
  const interval = options.intervalMs ?? 200;
  let cursor = openCursor(path, options.fromStart ?? false);
  try {
    while (!options.signal.aborted) {
      if (cursor === undefined) {
        cursor = openCursor(path, true);
      } else {
        drain(cursor, path, onLine);
        const now = statOrUndefined(path);
        if (now === undefined || now.ino !== cursor.ino) {
          // Renamed away (rotation) or removed: the old file's last lines, then the new file from its start.
          drain(cursor, rotatedPath(path), onLine, true);
          cursor.file.close();
          cursor = openCursor(path, true);
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

function openCursor(path: string, fromStart: boolean): Cursor | undefined {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { read: true });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  const info = file.statSync();
  if (fromStart) return { file, ino: info.ino, offset: 0, line: 0, partial: "", decoder: new TextDecoder() };
  // Lines already there were shown as recent ones: start after the last whole line (one being written
  // now is read whole later), counting them so that new lines carry their real number.
  const bytes = Deno.readFileSync(path).subarray(0, info.size);
  const offset = bytes.lastIndexOf(NEWLINE) + 1;
  let line = 0;
  for (let i = 0; i < offset; i++) if (bytes[i] === NEWLINE) line++;
  return { file, ino: info.ino, offset, line, partial: "", decoder: new TextDecoder() };
}

const NEWLINE = 0x0a;

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
