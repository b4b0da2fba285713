import { unwrap } from "./error.ts";
import { libbpf, readCString } from "./libbpf.ts";

const ENOENT = 2;
const BPF_MAP_TYPE_PERCPU_HASH = 5;
const BPF_MAP_TYPE_PERCPU_ARRAY = 6;
const BPF_MAP_TYPE_LRU_PERCPU_HASH = 10;
const PERCPU_TYPES: ReadonlySet<number> = new Set([
  BPF_MAP_TYPE_PERCPU_HASH,
  BPF_MAP_TYPE_PERCPU_ARRAY,
  BPF_MAP_TYPE_LRU_PERCPU_HASH,
]);

/** Bytes of one lookup result of a map: per-CPU maps return one 8-byte-aligned slot per possible CPU. */
export function lookupBytes(type: number, valueSize: number): number {
  return PERCPU_TYPES.has(type) ? Math.ceil(valueSize / 8) * 8 * possibleCpus() : valueSize;
}

const BPF_ANY = 0n;

/**
 * A map of a loaded object. Reads and writes go through libbpf's size-checked bpf_map__* calls; the
 * object owns the map, so it is valid until the object is closed.
 */
export class BpfMap {
  readonly #raw: Deno.PointerObject;
  readonly #owner: { readonly open: boolean };
  readonly name: string;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly type: number;
  /** Bytes of one lookup result: per-CPU maps return one 8-byte-aligned slot per possible CPU. */
  readonly lookupSize: number;

  /** @internal Made by BpfObject.map. */
  constructor(pointer: Deno.PointerObject, owner: { readonly open: boolean }) {
    const lib = libbpf();
    this.#raw = pointer;
    this.#owner = owner;
    this.name = readCString(lib.bpf_map__name(pointer));
    this.keySize = lib.bpf_map__key_size(pointer);
    this.valueSize = lib.bpf_map__value_size(pointer);
    this.maxEntries = lib.bpf_map__max_entries(pointer);
    this.type = lib.bpf_map__type(pointer);
    this.lookupSize = lookupBytes(this.type, this.valueSize);
  }

  /** The libbpf map, while the object that owns it is open (libbpf frees it with the object). */
  get #pointer(): Deno.PointerObject {
    if (!this.#owner.open) throw new Error(`BPF object is closed: map ${this.name} is gone`);
    return this.#raw;
  }

  get fd(): number {
    return libbpf().bpf_map__fd(this.#pointer);
  }

  get isPerCpu(): boolean {
    return PERCPU_TYPES.has(this.type);
  }

  /** The value stored under `key` (every CPU's slot for a per-CPU map), or undefined when absent. */
  lookup(key: Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer> | undefined {
    const value = new Uint8Array(this.lookupSize);
    const code = libbpf().bpf_map__lookup_elem(
      this.#pointer,
      key,
      BigInt(key.byteLength),
      value,
      BigInt(value.byteLength),
      0n,
    );
    if (code === -ENOENT) return undefined;
    this.#check(code, "bpf_map__lookup_elem");
    return value;
  }

  update(key: Uint8Array<ArrayBuffer>, value: Uint8Array<ArrayBuffer>, flags: bigint = BPF_ANY): void {
    const code = libbpf().bpf_map__update_elem(
      this.#pointer,
      key,
      BigInt(key.byteLength),
      value,
      BigInt(value.byteLength),
      flags,
    );
    this.#check(code, "bpf_map__update_elem");
  }

  /** Deletes `key`; returns false when it was not there. */
  delete(key: Uint8Array<ArrayBuffer>): boolean {
    const code = libbpf().bpf_map__delete_elem(this.#pointer, key, BigInt(key.byteLength), 0n);
    if (code === -ENOENT) return false;
    this.#check(code, "bpf_map__delete_elem");
    return true;
  }

  /** Whether the map holds no entry (one key lookup: no entry is read). */
  isEmpty(): boolean {
    return this.#nextKey(null) === undefined;
  }

  /** Every key in the map, in the kernel's iteration order. */
  keys(): Uint8Array<ArrayBuffer>[] {
    const keys: Uint8Array<ArrayBuffer>[] = [];
    for (let key = this.#nextKey(null); key; key = this.#nextKey(key)) keys.push(key);
    return keys;
  }

  /** The key after `current` (null: the first), undefined past the last. */
  #nextKey(current: Uint8Array<ArrayBuffer> | null): Uint8Array<ArrayBuffer> | undefined {
    const next = new Uint8Array(this.keySize);
    const code = libbpf().bpf_map__get_next_key(this.#pointer, current, next, BigInt(this.keySize));
    if (code === -ENOENT) return undefined;
    this.#check(code, "bpf_map__get_next_key");
    return next;
  }

  /**
   * Writes `count` entries in one call: `keys` and `values` hold them back to back (a per-CPU map's values
   * `lookupSize` bytes each, every CPU's slot). Map types without batch support are written one entry at a
   * time. Throws naming how many were written on failure.
   */
  updateBatch(keys: Uint8Array<ArrayBuffer>, values: Uint8Array<ArrayBuffer>, count: number): void {
    const valueSize = this.lookupSize;
    if (keys.byteLength !== count * this.keySize || values.byteLength !== count * valueSize) {
      throw new RangeError(
        `Batch for map ${this.name} has wrong sizes: ${keys.byteLength}/${values.byteLength} bytes for ${count} entries`,
      );
    }
    if (count === 0) return;
    const done = new Uint32Array([count]);
    const code = libbpf().bpf_map_update_batch(this.fd, keys, values, new Uint8Array(done.buffer), null);
    if (code === 0) return;
    if (done[0] === 0 && (code === -22 || code === -95 || code === -524)) {
      for (let i = 0; i < count; i++) {
        this.update(
          keys.subarray(i * this.keySize, (i + 1) * this.keySize),
          values.subarray(i * valueSize, (i + 1) * valueSize),
        );
      }
      return;
    }
    unwrap(code, "bpf_map_update_batch", { subject: `${this.name}: ${done[0]} of ${count} written` });
  }

  #check(code: number, operation: string): void {
    unwrap(code, operation, { subject: this.name });
  }
}

let cpus: number | undefined;

/** Possible CPUs, the slot count of per-CPU map values. */
function possibleCpus(): number {
  if (cpus === undefined) {
    cpus = unwrap(libbpf().libbpf_num_possible_cpus(), "libbpf_num_possible_cpus");
  }
  return cpus;
}
