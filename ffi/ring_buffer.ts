import { sysFailure } from "./error.ts";
import { FdWaiter } from "./fd_waiter.ts";
import { libc } from "./libbpf.ts";

const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 1;
const SC_PAGESIZE = 30;
/** Header word of a record (include/uapi/linux/bpf.h): length in the low bits, then these flags. */
const BUSY_BIT = 1 << 31;
const DISCARD_BIT = 1 << 30;
const HEADER_BYTES = 8;
/** Consumed bytes after which the consumer position is published before the batch ends. */
const PUBLISH_EVERY_BYTES = 64 * 1024;

/** What a ring buffer needs of its map: a BPF_MAP_TYPE_RINGBUF fd and its size in bytes. */
export type RingBufferMap = { readonly fd: number; readonly maxEntries: number; readonly name: string };

/**
 * Called for each record with the ring's data view, the record's byte offset in it and its size. The
 * view is the ring itself: read the record during the call, never keep the view.
 */
export type RecordHandler = (ring: DataView, offset: number, size: number) => void;

/**
 * A consumer of a BPF ring buffer map, read in place without an FFI call per record or per poll: the
 * kernel's consumer page, producer page and data area are mapped into this process, the data area twice
 * in a row so that a record which wraps around the end reads as one piece (kernel/bpf/ringbuf.c,
 * bpf_ringbuf_area_alloc). `consume()` follows the protocol libbpf's ringbuf_process_ring follows: read
 * the producer position, walk the records from the consumer position, stop at one whose busy bit is still
 * set (reserved, not yet submitted), skip discarded ones, and publish the new consumer position so the
 * kernel can reuse the space. One consumer per ring at a time (the consumer position is shared).
 */
export class RingBuffer {
  readonly #name: string;
  readonly #size: number;
  readonly #onRecord: RecordHandler;
  #mapping: { consumer: Deno.PointerObject; producer: Deno.PointerObject; page: number } | null;
  /** The consumer position (first word of the read-write consumer page). */
  readonly #consumerPos: BigUint64Array;
  /** The producer position (first word of the read-only producer page). */
  readonly #producerPos: BigUint64Array;
  /** Record header words over the data area (both copies): read with Atomics for acquire order. */
  readonly #headers: Int32Array;
  readonly #data: DataView;
  /** Set while consume() runs: a close() from a record handler then waits for it to finish. */
  #consuming = false;
  #closeRequested = false;

  constructor(map: RingBufferMap, onRecord: RecordHandler) {
    const size = map.maxEntries;
    if (size <= 0 || (size & (size - 1)) !== 0) {
      throw new RangeError(`Ring buffer ${map.name} has a size that is not a power of two: ${size}`);
    }
    this.#name = map.name;
    this.#size = size;
    this.#onRecord = onRecord;
    const page = Number(libc().sysconf(SC_PAGESIZE));
    const consumer = mapOrThrow(page, PROT_READ | PROT_WRITE, map.fd, 0, map.name);
    let producer: Deno.PointerObject;
    try {
      producer = mapOrThrow(page + 2 * size, PROT_READ, map.fd, page, map.name);
    } catch (error) {
      libc().munmap(consumer, BigInt(page));
      throw error;
    }
    this.#mapping = { consumer, producer, page };
    this.#consumerPos = new BigUint64Array(Deno.UnsafePointerView.getArrayBuffer(consumer, 8));
    this.#producerPos = new BigUint64Array(Deno.UnsafePointerView.getArrayBuffer(producer, 8));
    const data = Deno.UnsafePointerView.getArrayBuffer(producer, 2 * size, page);
    this.#headers = new Int32Array(data);
    this.#data = new DataView(data);
  }

  /** Size of the data area in bytes. */
  get size(): number {
    return this.#size;
  }

  /**
   * Hands every record submitted so far to `onRecord`, in ring order, and frees their space; returns how
   * many records it handed out (discarded ones are skipped and not counted). Stops after `limit` records.
   * If `onRecord` throws, the record it threw for counts as consumed and the error propagates; the rest
   * stays in the ring for the next call.
   */
  consume(limit = Infinity): number {
    if (this.#mapping === null) throw new Error(`Ring buffer ${this.#name} is closed`);
    const mask = this.#size - 1;
    const headers = this.#headers;
    // Positions are byte counts since the map was made: exact as Numbers up to 2^53 bytes (years at GB/s).
    let consumed = Number(Atomics.load(this.#consumerPos, 0));
    let published = consumed;
    let records = 0;
    this.#consuming = true;
    try {
      while (records < limit) {
        const produced = Number(Atomics.load(this.#producerPos, 0));
        if (consumed >= produced) break;
        while (consumed < produced && records < limit) {
          const offset = consumed & mask;
          const header = Atomics.load(headers, offset >> 2);
          if ((header & BUSY_BIT) !== 0) return records;
          const length = header & ~(BUSY_BIT | DISCARD_BIT);
          if (length > this.#size - HEADER_BYTES) {
            throw new RangeError(
              `Ring buffer ${this.#name} holds a record of ${length} bytes at ${consumed}`,
            );
          }
          consumed += (length + HEADER_BYTES + 7) & ~7;
          if ((header & DISCARD_BIT) === 0) {
            records++;
            this.#onRecord(this.#data, offset + HEADER_BYTES, length);
            if (this.#closeRequested) return records;
          }
          if (consumed - published >= PUBLISH_EVERY_BYTES) {
            Atomics.store(this.#consumerPos, 0, BigInt(consumed));
            published = consumed;
          }
        }
      }
      return records;
    } finally {
      if (consumed !== published) Atomics.store(this.#consumerPos, 0, BigInt(consumed));
      this.#consuming = false;
      if (this.#closeRequested) this.close();
    }
  }

  /** Unmaps the ring (after the current consume() if a record handler calls it). */
  close(): void {
    if (this.#mapping === null) return;
    if (this.#consuming) {
      this.#closeRequested = true;
      return;
    }
    const { consumer, producer, page } = this.#mapping;
    this.#mapping = null;
    libc().munmap(producer, BigInt(page + 2 * this.#size));
    libc().munmap(consumer, BigInt(page));
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

const MAP_FAILED = 0xffff_ffff_ffff_ffffn;

function mapOrThrow(length: number, protection: number, fd: number, offset: number, subject: string) {
  const pointer = libc().mmap(null, BigInt(length), protection, MAP_SHARED, fd, BigInt(offset));
  if (pointer === null || Deno.UnsafePointer.value(pointer) === MAP_FAILED) {
    throw sysFailure("mmap", `ring buffer ${subject}`);
  }
  return pointer;
}

/**
 * Sleeps until a ring buffer map has records, without holding the JavaScript thread (see FdWaiter): the
 * kernel wakes it when a record is submitted to a ring its consumer has caught up with
 * (kernel/bpf/ringbuf.c). Idle, it costs no CPU: no timer, no poll.
 */
export class RingWaiter extends FdWaiter {
  constructor(map: RingBufferMap) {
    super(map.fd, `ring buffer ${map.name}`);
  }
}
