/**
 * The agent's event log as a subscriber that never fails the agent: a write that fails (a full disk, the
 * state directory gone) closes the file, and the next event opens it again. An outage is reported twice,
 * once when it starts and once when writing works again, with the count of events it lost.
 *
 * Lines given with `appendLine` are written together at the end of the current task (one write for a
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
  /** Lines waiting for the end of the task. */
  #batch: string[] = [];
  #batchBytes = 0;
  #flushQueued = false;

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
    this.#batch.push(line);
    this.#batchBytes += line.length + 1;
    if (this.#batchBytes >= BATCH_BYTES) this.flush();
    else if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(() => this.flush());
    }
  }

  /** Writes the lines waiting; a failure counts each as lost. */
  flush(): void {
    this.#flushQueued = false;
    if (this.#batch.length === 0) return;
    const lines = this.#batch;
    this.#batch = [];
    this.#batchBytes = 0;
    try {
      this.#log ??= new EventLog(this.path, this.#maxBytes);
      if (this.#cut) {
        this.#log.appendText("\n");
        this.#cut = false;
      }
      this.#log.appendText(`${lines.join("\n")}\n`);
    } catch (error) {
      this.#fail(error, lines.length);
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
