import { BpfError } from "./error.ts";
import { libbpf } from "./libbpf.ts";
import type { BpfMap } from "./map.ts";

const SAMPLE_FN = { parameters: ["pointer", "pointer", "usize"], result: "i32" } as const;

/**
 * A consumer of a BPF ring buffer map. `consume()` runs on the calling thread and hands each record,
 * copied out of the ring, to `onRecord`.
 */
export class RingBuffer {
  #pointer: Deno.PointerObject | null;
  #failure: { error: unknown } | undefined;
  readonly #callback: Deno.UnsafeCallback<typeof SAMPLE_FN>;

  constructor(map: BpfMap, onRecord: (record: Uint8Array<ArrayBuffer>) => void) {
    this.#callback = new Deno.UnsafeCallback(
      SAMPLE_FN,
      (_context, data, size) => {
        if (data === null) return 0;
        const record = new Uint8Array(Number(size));
        Deno.UnsafePointerView.copyInto(data, record);
        // An exception cannot cross back into libbpf: keep the first one, stop, rethrow from consume().
        try {
          onRecord(record);
        } catch (error) {
          this.#failure ??= { error };
          return -1;
        }
        return 0;
      },
    );
    const pointer = libbpf().ring_buffer__new(map.fd, this.#callback.pointer, null, null);
    const error = pointer === null ? Number(libbpf().libbpf_get_error(null)) : 0;
    if (pointer === null) {
      this.#callback.close();
      throw new BpfError("ring_buffer__new", -(error || -22), { subject: map.name });
    }
    this.#pointer = pointer;
  }

  /** Hands every record now in the ring to `onRecord`; returns how many there were. */
  consume(): number {
    if (this.#pointer === null) throw new Error("Ring buffer is closed");
    const n = libbpf().ring_buffer__consume(this.#pointer);
    const failure = this.#failure;
    this.#failure = undefined;
    if (failure) throw failure.error;
    if (n < 0) throw new BpfError("ring_buffer__consume", -n);
    return n;
  }

  close(): void {
    if (this.#pointer === null) return;
    libbpf().ring_buffer__free(this.#pointer);
    this.#pointer = null;
    this.#callback.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
