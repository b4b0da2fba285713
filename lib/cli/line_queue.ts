/**
 * Lines for a reader that may stall (a pipe nobody reads, a journald that stopped reading): pushed into a
 * bounded queue and written asynchronously, one write at a time, so the writer never waits for the reader.
 * When the queue is full a line is dropped and counted; the count is reported once the reader has caught up
 * (the queue empty again). A reader that left (EPIPE) ends the queue: later lines are discarded.
 */

/** Where the lines go: `Deno.stdout` (its async write runs off the JavaScript thread). */
export type AsyncSink = { write(data: Uint8Array): Promise<number> };

export type LineQueueOptions = {
  /** Bytes queued at most; a line that would go past it is dropped. */
  maxBytes?: number;
  /** The reader caught up after `count` lines were dropped. */
  onDropped: (count: number) => void;
  /** The reader left (broken pipe); or an error that ends the queue. */
  onClosed: (error: unknown) => void;
};

/** Queued bytes at most by default: a few thousand events, a bounded cost when nobody reads. */
export const LINE_QUEUE_BYTES = 4 * 1024 * 1024;
/** Bytes given to one write: a flood's lines in few writes, one per turn of the event loop at most. */
const CHUNK_BYTES = 1024 * 1024;

export class LineQueue {
  readonly #sink: AsyncSink;
  readonly #maxBytes: number;
  readonly #options: LineQueueOptions;
  readonly #encoder = new TextEncoder();
  #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  #dropped = 0;
  /** Whether a drain runs; cleared in the same step that finds the queue empty, so no line is left behind. */
  #draining = false;
  #writing: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(sink: AsyncSink, options: LineQueueOptions) {
    this.#sink = sink;
    this.#maxBytes = options.maxBytes ?? LINE_QUEUE_BYTES;
    this.#options = options;
  }

  /**
   * Queues `text` and a newline; false when it was dropped (queue full, or the reader left). With `keep`, a
   * full queue takes it all the same: for the rare lines that must not be lost among a flood of others (the
   * agent's own events, among them the report of what was dropped).
   */
  line(text: string, keep = false): boolean {
    if (this.#closed) return false;
    const bytes = this.#encoder.encode(`${text}\n`);
    if (!keep && this.#queuedBytes + bytes.length > this.#maxBytes) {
      this.#dropped++;
      return false;
    }
    this.#queue.push(bytes);
    this.#queuedBytes += bytes.length;
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
          this.#queuedBytes = 0;
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

  /** Queued lines joined into one buffer of about CHUNK_BYTES (at least one line), taken off the queue. */
  #take(): Uint8Array {
    let size = 0;
    let count = 0;
    while (count < this.#queue.length && (count === 0 || size + this.#queue[count]!.length <= CHUNK_BYTES)) {
      size += this.#queue[count]!.length;
      count++;
    }
    const chunk = new Uint8Array(size);
    let at = 0;
    for (const line of this.#queue.splice(0, count)) {
      chunk.set(line, at);
      at += line.length;
    }
    this.#queuedBytes -= size;
    return chunk;
  }
}
