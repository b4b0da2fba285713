import { unwrap } from "./error.ts";
import { cString, libbpf } from "./libbpf.ts";
import { lookupBytes } from "./map.ts";
import { closeFd } from "./sys.ts";

const ENOENT = 2;
// struct bpf_map_info begins { __u32 type, id, key_size, value_size, max_entries, map_flags; char name[16]; ... }
const MAP_INFO_BYTES = 80;
// struct bpf_map_create_opts { size_t sz; __u32 btf_fd, btf_key_type_id, btf_value_type_id,
//   btf_vmlinux_value_type_id, inner_map_fd, map_flags; __u64 map_extra; __u32 numa_node, map_ifindex; }
const CREATE_OPTS_BYTES = 48;
const CREATE_OPTS_MAP_FLAGS = 28;

export type MapDefinition = {
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
};

/**
 * A map held by its own file descriptor rather than through a libbpf object: one this process created
 * (the inner maps of a rule generation), or one reached through its pin alone, whatever object or
 * release made it. Sizes come from the kernel and every access is checked against them.
 */
export class FdMap {
  #fd: number;
  readonly name: string;
  readonly definition: Readonly<MapDefinition>;

  private constructor(fd: number, name: string) {
    this.#fd = fd;
    this.name = name;
    const info = new Uint8Array(MAP_INFO_BYTES);
    const length = new Uint32Array([MAP_INFO_BYTES]);
    const code = libbpf().bpf_obj_get_info_by_fd(fd, info, new Uint8Array(length.buffer));
    if (code < 0) closeFd(fd);
    unwrap(code, "bpf_obj_get_info_by_fd", { subject: name });
    const view = new DataView(info.buffer);
    this.definition = {
      type: view.getUint32(0, true),
      keySize: view.getUint32(8, true),
      valueSize: view.getUint32(12, true),
      maxEntries: view.getUint32(16, true),
      flags: view.getUint32(20, true),
    };
  }

  /** Opens the map pinned at `path`. */
  static open(path: string): FdMap {
    return new FdMap(unwrap(libbpf().bpf_obj_get(cString(path)), "bpf_obj_get", { subject: path }), path);
  }

  /** Opens the map with kernel id `id` (an inner map read from a map of maps); `name` names it in errors. */
  static fromId(id: number, name: string): FdMap {
    return new FdMap(
      unwrap(libbpf().bpf_map_get_fd_by_id(id), "bpf_map_get_fd_by_id", { subject: name }),
      name,
    );
  }

  /** Creates a map (`name`: at most 15 characters, the kernel's limit). */
  static create(name: string, definition: MapDefinition): FdMap {
    const opts = new Uint8Array(CREATE_OPTS_BYTES);
    const view = new DataView(opts.buffer);
    view.setBigUint64(0, BigInt(CREATE_OPTS_BYTES), true);
    view.setUint32(CREATE_OPTS_MAP_FLAGS, definition.flags, true);
    const fd = libbpf().bpf_map_create(
      definition.type,
      cString(name.slice(0, 15)),
      definition.keySize,
      definition.valueSize,
      definition.maxEntries,
      opts,
    );
    return new FdMap(unwrap(fd, "bpf_map_create", { subject: name }), name);
  }

  get fd(): number {
    if (this.#fd < 0) throw new Error(`Map is closed: ${this.name}`);
    return this.#fd;
  }

  get keySize(): number {
    return this.definition.keySize;
  }

  get valueSize(): number {
    return this.definition.valueSize;
  }

  get maxEntries(): number {
    return this.definition.maxEntries;
  }

  keys(): Uint8Array<ArrayBuffer>[] {
    const keys: Uint8Array<ArrayBuffer>[] = [];
    let current: Uint8Array<ArrayBuffer> | null = null;
    for (;;) {
      const next = new Uint8Array(this.keySize);
      const code = libbpf().bpf_map_get_next_key(this.fd, current, next);
      if (code === -ENOENT) return keys;
      unwrap(code, "bpf_map_get_next_key", { subject: this.name });
      keys.push(next);
      current = next;
    }
  }

  /** The value under `key` (every CPU's slot for a per-CPU map), or undefined when absent. */
  lookup(key: Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer> | undefined {
    this.#checkSize("key", key, this.keySize);
    const value = new Uint8Array(lookupBytes(this.definition.type, this.valueSize));
    const code = libbpf().bpf_map_lookup_elem(this.fd, key, value);
    if (code === -ENOENT) return undefined;
    unwrap(code, "bpf_map_lookup_elem", { subject: this.name });
    return value;
  }

  /** Deletes `key`; false when it was not there. */
  delete(key: Uint8Array<ArrayBuffer>): boolean {
    this.#checkSize("key", key, this.keySize);
    const code = libbpf().bpf_map_delete_elem(this.fd, key);
    if (code === -ENOENT) return false;
    unwrap(code, "bpf_map_delete_elem", { subject: this.name });
    return true;
  }

  update(key: Uint8Array<ArrayBuffer>, value: Uint8Array<ArrayBuffer>): void {
    this.#checkSize("key", key, this.keySize);
    this.#checkSize("value", value, this.valueSize);
    const code = libbpf().bpf_map_update_elem(this.fd, key, value, 0n);
    unwrap(code, "bpf_map_update_elem", { subject: this.name });
  }

  /** Writes `count` entries held back to back in `keys` and `values`, in one call. */
  updateBatch(keys: Uint8Array<ArrayBuffer>, values: Uint8Array<ArrayBuffer>, count: number): void {
    if (!this.#batchable(keys, values, count)) return;
    const done = new Uint32Array([count]);
    const code = libbpf().bpf_map_update_batch(this.fd, keys, values, new Uint8Array(done.buffer), null);
    unwrap(code, "bpf_map_update_batch", { subject: `${this.name}: ${done[0]} of ${count} written` });
  }

  /**
   * updateBatch() on a worker thread: this thread goes on meanwhile. `keys` and `values` must stay as they
   * are until it settles.
   */
  async updateBatchAsync(
    keys: Uint8Array<ArrayBuffer>,
    values: Uint8Array<ArrayBuffer>,
    count: number,
  ): Promise<void> {
    if (!this.#batchable(keys, values, count)) return;
    const done = new Uint32Array([count]);
    const code = await libbpf().bpf_map_update_batch_wait(
      this.fd,
      keys,
      values,
      new Uint8Array(done.buffer),
      null,
    );
    unwrap(code, "bpf_map_update_batch", { subject: `${this.name}: ${done[0]} of ${count} written` });
  }

  #batchable(keys: Uint8Array, values: Uint8Array, count: number): boolean {
    if (keys.byteLength < count * this.keySize || values.byteLength < count * this.valueSize) {
      throw new RangeError(`Batch for map ${this.name} is shorter than ${count} entries`);
    }
    return count > 0;
  }

  close(): void {
    if (this.#fd < 0) return;
    closeFd(this.#fd);
    this.#fd = -1;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #checkSize(what: string, bytes: Uint8Array, expected: number): void {
    if (bytes.byteLength !== expected) {
      throw new RangeError(`${this.name}: ${what} is ${bytes.byteLength} bytes, the map's is ${expected}`);
    }
  }
}
