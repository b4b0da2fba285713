/**
 * Lines for a reader that may stall (a pipe nobody reads, a journald that stopped reading): pushed into a
 * bounded queue and written asynchronously, one write at a time, so the writer never waits for the reader.
 * When the queue is full a line is dropped and counted; the count is reported once the reader has caught up
 * (the queue empty again). A reader that left (EPIPE) ends the queue: later lines are discarded.
 */

/** Where the lines go: `Deno.stdout` (its async write runs off the JavaScript thread). */
export type AsyncSink = {
  write(data: Uint8Array): Promise<number>;
  /**
   * `write` for bytes already printable (text printableText leaves as it is, such as jsonText's JSON lines):
   * a sink that escapes what it writes may skip its check. Optional: without it, `write`.
   */
  writePrintable?(data: Uint8Array): Promise<number>;
};

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

/** The buffer a task's lines are gathered in, to begin with (it grows for a flood's task). */
const PENDING_BYTES = 64 * 1024;

/**
 * Lines of one task (a turn of the event loop: a drain of the ring) are encoded as they come into one
 * buffer, reused task after task, and copied out as one chunk when the task ends: what waits for a slow
 * reader is bytes, outside the JavaScript heap, rather than strings that would outlive collections and fill
 * the old generation. Lines made as UTF-8 already (`bytes`) are copied in as they are. A write
 * takes every chunk queued: one write per turn, however many lines a flood made.
 */
export class LineQueue {
  readonly #sink: AsyncSink;
  readonly #maxChars: number;
  readonly #options: LineQueueOptions;
  readonly #encoder = new TextEncoder();
  /** Lines of the current task as UTF-8 with their newlines, in a buffer reused task after task. */
  #pending = new Uint8Array(PENDING_BYTES);
  #pendingBytes = 0;
  #pendingChars = 0;
  /** Whether every pending line came from `bytes`, already printable. */
  #pendingPrintable = true;
  #sealQueued = false;
  /** Encoded lines, oldest first, with the characters they count for. */
  #chunks: { bytes: Uint8Array; chars: number; printable: boolean }[] = [];
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
    // UTF-8 takes at most 3 bytes per UTF-16 code unit.
    this.#reserve(text.length * 3 + 1);
    const { written } = this.#encoder.encodeInto(text, this.#pending.subarray(this.#pendingBytes));
    this.#pendingBytes += written;
    this.#pending[this.#pendingBytes++] = 0x0a;
    this.#pendingPrintable = false;
    this.#queued(chars);
    return true;
  }

  /**
   * `line` for a line already made as UTF-8 (the agent's JSON event writer), its newline included; it counts
   * its bytes as characters. Copied: the caller may reuse its buffer at once. The line must be printable as
   * it is (what printableText leaves unchanged: a JSON line as jsonText makes it), so a sink may write it
   * without looking (AsyncSink.writePrintable).
   */
  bytes(line: Uint8Array, keep = false): boolean {
    if (this.#closed) return false;
    if (!keep && this.#queuedChars + line.length > this.#maxChars) {
      this.#dropped++;
      return false;
    }
    this.#reserve(line.length);
    this.#pending.set(line, this.#pendingBytes);
    this.#pendingBytes += line.length;
    this.#queued(line.length);
    return true;
  }

  #reserve(size: number): void {
    if (this.#pendingBytes + size <= this.#pending.length) return;
    const grown = new Uint8Array(Math.max(this.#pending.length * 2, this.#pendingBytes + size));
    grown.set(this.#pending.subarray(0, this.#pendingBytes));
    this.#pending = grown;
  }

  #queued(chars: number): void {
    this.#pendingChars += chars;
    this.#queuedChars += chars;
    if (!this.#draining) {
      // Nothing in flight: written at once.
      this.#seal();
    } else if (!this.#sealQueued) {
      this.#sealQueued = true;
      queueMicrotask(() => this.#seal());
    }
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

  /** The pending lines, each with its newline, copied into one chunk; a drain started if none runs. */
  #seal(): void {
    this.#sealQueued = false;
    if (this.#pendingBytes === 0 || this.#closed) return;
    this.#chunks.push({
      bytes: this.#pending.slice(0, this.#pendingBytes),
      chars: this.#pendingChars,
      printable: this.#pendingPrintable,
    });
    this.#pendingBytes = 0;
    this.#pendingChars = 0;
    this.#pendingPrintable = true;
    // A flood's task grew the buffer past what a queue may hold: it is not kept.
    if (this.#pending.length > Math.max(PENDING_BYTES, this.#maxChars)) {
      this.#pending = new Uint8Array(PENDING_BYTES);
    }
    if (!this.#draining) {
      this.#draining = true;
      this.#writing = this.#drain();
    }
  }

  /** Writes until the queue is empty; the step that finds it empty also ends the drain (no await between). */
  async #drain(): Promise<void> {
    try {
      for (;;) {
        this.#seal();
        if (this.#chunks.length === 0 || this.#closed) break;
        let { bytes: chunk, printable } = this.#take();
        const sink = this.#sink;
        try {
          while (chunk.length > 0) {
            chunk = chunk.subarray(
              await (printable && sink.writePrintable ? sink.writePrintable(chunk) : sink.write(chunk)),
            );
          }
        } catch (error) {
          this.#closed = true;
          this.#pendingBytes = 0;
          this.#pendingChars = 0;
          this.#pendingPrintable = true;
          this.#chunks = [];
          this.#queuedChars = 0;
          this.#options.onClosed(error);
          return;
        }
        if (this.#chunks.length === 0 && this.#pendingBytes === 0 && this.#dropped > 0) {
          const count = this.#dropped;
          this.#dropped = 0;
          this.#options.onDropped(count);
        }
      }
    } finally {
      this.#draining = false;
    }
  }

  /** Every queued chunk, in one buffer, taken off the queue; printable when every chunk is. */
  #take(): { bytes: Uint8Array; printable: boolean } {
    const chunks = this.#chunks;
    this.#chunks = [];
    let size = 0;
    let printable = true;
    for (const chunk of chunks) {
      size += chunk.bytes.length;
      printable &&= chunk.printable;
      this.#queuedChars -= chunk.chars;
    }
    if (chunks.length === 1) return chunks[0]!;
    const joined = new Uint8Array(size);
    let at = 0;
    for (const { bytes } of chunks) {
      joined.set(bytes, at);
      at += bytes.length;
    }
    return { bytes: joined, printable };
  }
}
