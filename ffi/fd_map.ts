import { BpfError } from "./error.ts";
import { cString, libbpf } from "./libbpf.ts";
import { closeFd } from "./sys.ts";

const ENOENT = 2;
// struct bpf_map_info begins { __u32 type, id, key_size, value_size, max_entries, map_flags; char name[16]; ... }
const MAP_INFO_BYTES = 80;

/**
 * A map reached through its pin alone, whatever object (or release) made it: its sizes come from the
 * kernel and every access is checked against them. For clean-up paths that must work on any pins.
 */
export class PinnedMap {
  #fd: number;
  readonly path: string;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;

  private constructor(fd: number, path: string, info: DataView) {
    this.#fd = fd;
    this.path = path;
    this.keySize = info.getUint32(8, true);
    this.valueSize = info.getUint32(12, true);
    this.maxEntries = info.getUint32(16, true);
  }

  static open(path: string): PinnedMap {
    const fd = libbpf().bpf_obj_get(cString(path));
    if (fd < 0) throw new BpfError("bpf_obj_get", -fd, { subject: path });
    const info = new Uint8Array(MAP_INFO_BYTES);
    const length = new Uint32Array([MAP_INFO_BYTES]);
    const code = libbpf().bpf_obj_get_info_by_fd(fd, info, new Uint8Array(length.buffer));
    if (code < 0) {
      closeFd(fd);
      throw new BpfError("bpf_obj_get_info_by_fd", -code, { subject: path });
    }
    return new PinnedMap(fd, path, new DataView(info.buffer));
  }

  keys(): Uint8Array<ArrayBuffer>[] {
    const keys: Uint8Array<ArrayBuffer>[] = [];
    let current: Uint8Array<ArrayBuffer> | null = null;
    for (;;) {
      const next = new Uint8Array(this.keySize);
      const code = libbpf().bpf_map_get_next_key(this.#live(), current, next);
      if (code === -ENOENT) return keys;
      if (code < 0) throw new BpfError("bpf_map_get_next_key", -code, { subject: this.path });
      keys.push(next);
      current = next;
    }
  }

  delete(key: Uint8Array<ArrayBuffer>): void {
    this.#checkSize("key", key, this.keySize);
    const code = libbpf().bpf_map_delete_elem(this.#live(), key);
    if (code < 0 && code !== -ENOENT) {
      throw new BpfError("bpf_map_delete_elem", -code, { subject: this.path });
    }
  }

  update(key: Uint8Array<ArrayBuffer>, value: Uint8Array<ArrayBuffer>): void {
    this.#checkSize("key", key, this.keySize);
    this.#checkSize("value", value, this.valueSize);
    const code = libbpf().bpf_map_update_elem(this.#live(), key, value, 0n);
    if (code < 0) throw new BpfError("bpf_map_update_elem", -code, { subject: this.path });
  }

  close(): void {
    if (this.#fd < 0) return;
    closeFd(this.#fd);
    this.#fd = -1;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #live(): number {
    if (this.#fd < 0) throw new Error(`Pinned map is closed: ${this.path}`);
    return this.#fd;
  }

  #checkSize(what: string, bytes: Uint8Array, expected: number): void {
    if (bytes.byteLength !== expected) {
      throw new RangeError(`${this.path}: ${what} is ${bytes.byteLength} bytes, the map's is ${expected}`);
    }
  }
}
