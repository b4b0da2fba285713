/**
 * The agent's bounded on-disk event log, read by `events`: every event as one JSON line appended to
 * `<state-dir>/events.jsonl`; a line that would take the file past `maxBytes` (8 MiB) first renames it to
 * `events.jsonl.1` (replacing the previous one) and starts a new file. So at most two files, and the newest
 * events are always in `events.jsonl`.
 */

import { join } from "node:path";

export const EVENT_LOG_MAX_BYTES = 8 * 1024 * 1024;

export function eventLogPath(stateDir: string): string {
  return join(stateDir, "events.jsonl");
}

export class EventLog {
  readonly path: string;
  readonly #maxBytes: number;
  readonly #encoder = new TextEncoder();
  #file: Deno.FsFile;
  #size: number;

  constructor(path: string, maxBytes = EVENT_LOG_MAX_BYTES) {
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
    Deno.renameSync(this.path, `${this.path}.1`);
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
