/**
 * The agent's event log as a subscriber that never fails the agent: a write that fails (a full disk, the
 * state directory gone) closes the file, and the next event opens it again. An outage is reported twice,
 * once when it starts and once when writing works again, with the count of events it lost.
 *
 * Lines given with `appendLine` (or as bytes, `appendBytes`) are written together at the end of the current task (one write for a
 * whole batch of a flood, not one per event), or as soon as BATCH_BYTES are waiting.
 */

import { jsonText } from "../text/printable.ts";
import { EventLog } from "./event_log.ts";

/** Bytes of lines written in one go at most: well below the log's size, so rotation stays line by line. */
const BATCH_BYTES = 256 * 1024;

export class EventLogSink {
  readonly path: string;
  readonly #warn: (message: string) => void;
  readonly #maxBytes: number | undefined;
  #log: EventLog | undefined;
  /** Events not written since the outage began; undefined while writing works. */
  #lost: number | undefined;
  /** The failed write may have left part of a line: the next line starts on a line of its own. */
  #cut = false;
  /** Lines waiting for the end of the task, as UTF-8 with their newlines, in a buffer reused batch after batch. */
  #batch = new Uint8Array(BATCH_BYTES + 4096);
  #batchBytes = 0;
  #batchLines = 0;
  #flushQueued = false;
  readonly #encoder = new TextEncoder();

  constructor(path: string, warn: (message: string) => void, maxBytes?: number) {
    this.path = path;
    this.#warn = warn;
    this.#maxBytes = maxBytes;
  }

  /** Appends one event now (and what waits before it); a failure is counted and reported, never thrown. */
  append(event: object): void {
    let line: string;
    try {
      line = jsonText(event);
    } catch (error) {
      this.flush();
      this.#fail(error, 1);
      return;
    }
    this.appendLine(line);
    this.flush();
  }

  /** Appends one event's JSON line at the end of this task, with the others given meanwhile. */
  appendLine(line: string): void {
    // UTF-8 takes at most 3 bytes per UTF-16 code unit.
    this.#reserve(line.length * 3 + 1);
    const { written } = this.#encoder.encodeInto(line, this.#batch.subarray(this.#batchBytes));
    this.#batchBytes += written;
    this.#batch[this.#batchBytes++] = 0x0a;
    this.#added();
  }

  /**
   * appendLine for a line already made as UTF-8 (the event pipeline's byte writer), its newline included:
   * copied, so the caller may reuse its buffer at once.
   */
  appendBytes(line: Uint8Array): void {
    this.#reserve(line.length);
    this.#batch.set(line, this.#batchBytes);
    this.#batchBytes += line.length;
    this.#added();
  }

  #reserve(size: number): void {
    if (this.#batchBytes + size <= this.#batch.length) return;
    const grown = new Uint8Array(Math.max(this.#batch.length * 2, this.#batchBytes + size));
    grown.set(this.#batch.subarray(0, this.#batchBytes));
    this.#batch = grown;
  }

  #added(): void {
    this.#batchLines++;
    if (this.#batchBytes >= BATCH_BYTES) this.flush();
    else if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(() => this.flush());
    }
  }

  /** Writes the lines waiting; a failure counts each as lost. */
  flush(): void {
    this.#flushQueued = false;
    if (this.#batchLines === 0) return;
    const lines = this.#batchLines;
    const bytes = this.#batch.subarray(0, this.#batchBytes);
    this.#batchLines = 0;
    this.#batchBytes = 0;
    // A batch of one very long line grew the buffer: it is not kept.
    if (this.#batch.length > 4 * BATCH_BYTES) this.#batch = new Uint8Array(BATCH_BYTES + 4096);
    try {
      this.#log ??= new EventLog(this.path, this.#maxBytes);
      if (this.#cut) {
        this.#log.appendText("\n");
        this.#cut = false;
      }
      // The write is synchronous: the buffer is free again when it returns.
      this.#log.appendBytes(bytes);
    } catch (error) {
      this.#fail(error, lines);
      return;
    }
    if (this.#lost !== undefined) {
      this.#warn(`event log ${this.path}: writing again; ${this.#lost} events were not written`);
      this.#lost = undefined;
    }
  }

  #fail(error: unknown, lines: number): void {
    if (this.#lost === undefined) {
      this.#warn(
        `event log ${this.path}: ${
          error instanceof Error ? error.message : String(error)
        }: events go to stdout only until it can be written again`,
      );
    }
    this.#lost = (this.#lost ?? 0) + lines;
    this.#cut = true;
    try {
      this.#log?.close();
    } catch {
      // Already closed by a failed rotation.
    }
    this.#log = undefined;
  }

  close(): void {
    this.flush();
    try {
      this.#log?.close();
    } catch {
      // Closed by a failed rotation: nothing to flush.
    }
    this.#log = undefined;
  }
}
