/**
 * Open directories, read by descriptor: a child is opened relative to its parent's descriptor (openat),
 * its entries read with getdents64 and its files examined with statx relative to it, so a walk never
 * builds a path for the kernel and no depth runs into PATH_MAX. Children are opened with O_NOFOLLOW: a
 * symlink is never followed below the directory first opened.
 */

import { SysError, unwrapSys } from "./error.ts";
import { cString, libc } from "./libbpf.ts";

const O_RDONLY = 0;
const O_DIRECTORY = 0o200000;
const O_NOFOLLOW = 0o400000;
const O_CLOEXEC = 0o2000000;
const AT_SYMLINK_NOFOLLOW = 0x100;
const AT_EMPTY_PATH = 0x1000;
const STATX_TYPE = 0x1;
const STATX_INO = 0x100;
const STATX_MNT_ID = 0x1000;
const STATX_BYTES = 256;
// struct statx offsets: stx_mask 0, stx_mode 28, stx_ino 32, stx_dev_major 136, stx_dev_minor 140,
// stx_mnt_id 144 (Linux 5.8+).
const STX_MASK = 0;
const STX_MODE = 28;
const STX_INO = 32;
const STX_DEV_MAJOR = 136;
const STX_DEV_MINOR = 140;
const STX_MNT_ID = 144;
const S_IFMT = 0o170000;
const EOPNOTSUPP = 95;

// struct linux_dirent64: d_ino u64 0, d_off s64 8, d_reclen u16 16, d_type u8 18, d_name 19.
const D_RECLEN = 16;
const D_TYPE = 18;
const D_NAME = 19;
const DT_UNKNOWN = 0;
const DIRENT_BUFFER_BYTES = 64 * 1024;

export type EntryType = "file" | "directory" | "symlink" | "other" | "unknown";

const D_TYPES: Record<number, EntryType> = { 4: "directory", 8: "file", 10: "symlink" };
const MODE_TYPES: Record<number, EntryType> = {
  0o040000: "directory",
  0o100000: "file",
  0o120000: "symlink",
};

/** A directory entry: its name as the kernel holds it (any bytes but '/' and NUL) and its type. */
export type DirectoryEntry = { name: Uint8Array; type: EntryType };

/**
 * What statx says of an entry (symlinks not followed): its inode, the mount that holds it, its device in
 * the kernel's encoding (MAJOR << 20 | MINOR, as inode->i_sb->s_dev) and its type.
 */
export type EntryStat = { ino: bigint; mountId: number; dev: number; type: EntryType };

const decoder = new TextDecoder();

/** A name's text for paths and messages (bytes that are not UTF-8 show as U+FFFD). */
export function entryName(name: Uint8Array): string {
  return decoder.decode(name.subarray(0, name.length - 1));
}

/** An open directory; close it, or hold it with `using`. */
export class Directory {
  #fd: number;
  /** For messages only: the kernel is never given this path after the first open. */
  readonly path: string;

  private constructor(fd: number, path: string) {
    this.#fd = fd;
    this.path = path;
  }

  /** Opens the directory at `path`, following symlinks (as a rule's own path is resolved). */
  static open(path: string): Directory {
    const fd = unwrapSys(
      libc().openat(-100, cString(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC),
      "open",
      path,
    );
    return new Directory(fd, path);
  }

  /** Opens the subdirectory `name` (from `entries()`) relative to this one; ELOOP or ENOTDIR for a symlink. */
  openChild(name: Uint8Array): Directory {
    const path = `${this.path}/${entryName(name)}`;
    const flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    return new Directory(unwrapSys(libc().openat(this.#descriptor(), name, flags), "openat", path), path);
  }

  /** Every entry but `.` and `..`, read in batches with getdents64. */
  *entries(): Generator<DirectoryEntry> {
    const buffer = new Uint8Array(DIRENT_BUFFER_BYTES);
    const view = new DataView(buffer.buffer);
    for (;;) {
      const read = Number(libc().getdents64(this.#descriptor(), buffer, BigInt(buffer.length)));
      if (read < 0) unwrapSys(read, "getdents64", this.path);
      if (read <= 0) return;
      for (let offset = 0; offset < read;) {
        const length = view.getUint16(offset + D_RECLEN, true);
        const start = offset + D_NAME;
        const end = buffer.indexOf(0, start);
        const dType = view.getUint8(offset + D_TYPE);
        const type = D_TYPES[dType] ?? (dType === DT_UNKNOWN ? "unknown" : "other");
        offset += length;
        const isDot = end - start === 1 && buffer[start] === 0x2e;
        const isDotDot = end - start === 2 && buffer[start] === 0x2e && buffer[start + 1] === 0x2e;
        if (isDot || isDotDot) continue;
        // A copy, NUL included: ready to pass back to openat and statx.
        yield { name: buffer.slice(start, end + 1), type };
      }
    }
  }

  /** statx of the entry `name` without following a symlink, or of this directory itself. */
  stat(name?: Uint8Array): EntryStat {
    const buffer = new Uint8Array(STATX_BYTES);
    const path = name === undefined ? this.path : `${this.path}/${entryName(name)}`;
    const flags = AT_SYMLINK_NOFOLLOW | (name === undefined ? AT_EMPTY_PATH : 0);
    const mask = STATX_TYPE | STATX_INO | STATX_MNT_ID;
    unwrapSys(libc().statx(this.#descriptor(), name ?? EMPTY, flags, mask, buffer), "statx", path);
    const view = new DataView(buffer.buffer);
    if ((view.getUint32(STX_MASK, true) & STATX_MNT_ID) === 0) {
      throw new SysError("statx", EOPNOTSUPP, `${path}: this kernel reports no mount id`);
    }
    return {
      ino: view.getBigUint64(STX_INO, true),
      mountId: Number(view.getBigUint64(STX_MNT_ID, true)),
      dev: view.getUint32(STX_DEV_MAJOR, true) * 2 ** 20 + view.getUint32(STX_DEV_MINOR, true),
      type: MODE_TYPES[view.getUint16(STX_MODE, true) & S_IFMT] ?? "other",
    };
  }

  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    unwrapSys(libc().close(fd), "close", this.path);
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #descriptor(): number {
    if (this.#fd < 0) throw new Error(`Directory ${this.path} is closed`);
    return this.#fd;
  }
}

const EMPTY = new Uint8Array(1);
