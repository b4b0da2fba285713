/**
 * The agent's event log as a subscriber that never fails the agent: a write that fails (a full disk, the
 * state directory gone) closes the file, and the next event opens it again. An outage is reported twice,
 * once when it starts and once when writing works again, with the count of events it lost.
 */

import { EventLog } from "./event_log.ts";

export class EventLogSink {
  readonly path: string;
  readonly #warn: (message: string) => void;
  readonly #maxBytes: number | undefined;
  #log: EventLog | undefined;
  /** Events not written since the outage began; undefined while writing works. */
  #lost: number | undefined;
  /** The failed write may have left part of a line: the next line starts on a line of its own. */
  #cut = false;

  constructor(path: string, warn: (message: string) => void, maxBytes?: number) {
    this.path = path;
    this.#warn = warn;
    this.#maxBytes = maxBytes;
  }

  /** Appends one event; a failure is counted and reported, never thrown. */
  append(event: object): void {
    try {
      this.#log ??= new EventLog(this.path, this.#maxBytes);
      if (this.#cut) {
        this.#log.appendText("\n");
        this.#cut = false;
      }
      this.#log.append(event);
    } catch (error) {
      this.#fail(error);
      return;
    }
    if (this.#lost !== undefined) {
      this.#warn(`event log ${this.path}: writing again; ${this.#lost} events were not written`);
      this.#lost = undefined;
    }
  }

  #fail(error: unknown): void {
    if (this.#lost === undefined) {
      this.#warn(
        `event log ${this.path}: ${
          error instanceof Error ? error.message : String(error)
        }: events go to stdout only until it can be written again`,
      );
    }
    this.#lost = (this.#lost ?? 0) + 1;
    this.#cut = true;
    try {
      this.#log?.close();
    } catch {
      // Already closed by a failed rotation.
    }
    this.#log = undefined;
  }

  close(): void {
    try {
      this.#log?.close();
    } catch {
      // Closed by a failed rotation: nothing to flush.
    }
    this.#log = undefined;
  }
}
