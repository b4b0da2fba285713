/**
 * Lines for a reader that may stall (a pipe nobody reads, a journald that stopped reading): pushed into a
 * bounded queue and written asynchronously, one write at a time, so the writer never waits for the reader.
 * When the queue is full a line is dropped and counted; the count is reported once the reader has caught up
 * (the queue empty again). A reader that left (EPIPE) ends the queue: later lines are discarded.
 */

/** Where the lines go: `Deno.stdout` (its async write runs off the JavaScript thread). */
export type AsyncSink = { write(data: Uint8Array): Promise<number> };

export type LineQueueOptions = {
  /**
   * Characters queued at most (UTF-16 code units, as JavaScript counts a string's length: the bytes of an
   * ASCII line); a line that would go past it is dropped.
   */
  maxChars?: number;
  /** The reader caught up after `count` lines were dropped. */
  onDropped: (count: number) => void;
  /** The reader left (broken pipe); or an error that ends the queue. */
  onClosed: (error: unknown) => void;
};

/**
 * Characters queued at most by default: about ten thousand events, a bounded cost when nobody reads (the
 * queue, and the one write in flight that took it, hold at most twice this).
 */
export const LINE_QUEUE_CHARS = 4 * 1024 * 1024;

/**
 * Lines are kept as the strings they were given and encoded when a write takes them: all that is queued in
 * one buffer, one encode and one write per turn of the event loop, however many lines a flood made.
 */
export class LineQueue {
  readonly #sink: AsyncSink;
  readonly #maxChars: number;
  readonly #options: LineQueueOptions;
  readonly #encoder = new TextEncoder();
  #queue: string[] = [];
  #queuedChars = 0;
  #dropped = 0;
  /** Whether a drain runs; cleared in the same step that finds the queue empty, so no line is left behind. */
  #draining = false;
  #writing: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(sink: AsyncSink, options: LineQueueOptions) {
    this.#sink = sink;
    this.#maxChars = options.maxChars ?? LINE_QUEUE_CHARS;
    this.#options = options;
  }

  /**
   * Queues `text` and a newline; false when it was dropped (queue full, or the reader left). With `keep`, a
   * full queue takes it all the same: for the rare lines that must not be lost among a flood of others (the
   * agent's own events, among them the report of what was dropped).
   */
  line(text: string, keep = false): boolean {
    if (this.#closed) return false;
    const chars = text.length + 1;
    if (!keep && this.#queuedChars + chars > this.#maxChars) {
      this.#dropped++;
      return false;
    }
    this.#queue.push(text);
    this.#queuedChars += chars;
    if (!this.#draining) {
      this.#draining = true;
      this.#writing = this.#drain();
    }
    return true;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Lines dropped since the last report. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Waits until every queued line is written, at most `timeoutMs`; false when time ran out. */
  async flush(timeoutMs: number): Promise<boolean> {
    if (!this.#draining) return true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
    try {
      return await Promise.race([this.#drained(), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  async #drained(): Promise<true> {
    while (this.#draining) await this.#writing;
    return true;
  }

  /** Writes until the queue is empty; the step that finds it empty also ends the drain (no await between). */
  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0 && !this.#closed) {
        let chunk = this.#take();
        try {
          while (chunk.length > 0) chunk = chunk.subarray(await this.#sink.write(chunk));
        } catch (error) {
          this.#closed = true;
          this.#queue = [];
          this.#queuedChars = 0;
          this.#options.onClosed(error);
          return;
        }
        if (this.#queue.length === 0 && this.#dropped > 0) {
          const count = this.#dropped;
          this.#dropped = 0;
          this.#options.onDropped(count);
        }
      }
    } finally {
      this.#draining = false;
    }
  }

  /** Every queued line, each with its newline, encoded into one buffer and taken off the queue. */
  #take(): Uint8Array {
    const lines = this.#queue;
    this.#queue = [];
    this.#queuedChars = 0;
    lines.push("");
    return this.#encoder.encode(lines.join("\n"));
  }
}
