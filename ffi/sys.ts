import { BpfError } from "./error.ts";
import { cString, lastErrno, libbpf, libc } from "./libbpf.ts";

const O_RDONLY = 0;
const O_DIRECTORY = 0o200000;
const O_CLOEXEC = 0o2000000;

/** Opens a directory (a cgroup, say) and returns its fd: Deno gives no fd for its own handles. */
export function openDirectory(path: string): number {
  const fd = libc().open(cString(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw new BpfError("open", lastErrno(), { subject: path });
  return fd;
}

export function closeFd(fd: number): void {
  libc().close(fd);
}

/** The index of a network interface, or a BpfError (ENODEV) naming it. */
export function ifIndex(name: string): number {
  const index = libc().if_nametoindex(cString(name));
  if (index === 0) throw new BpfError("if_nametoindex", lastErrno() || 19, { subject: name });
  return index;
}

const CLONE_NEWNET = 0x40000000;

/**
 * Runs `operation` with the calling thread inside the network namespace at `nsPath` (e.g.
 * /run/netns/NAME), then returns the thread to its own. FFI calls run on this thread, so interface
 * lookups and XDP attachments inside `operation` see that namespace.
 */
export function inNetns<T>(nsPath: string, operation: () => T): T {
  const home = openFile("/proc/thread-self/ns/net");
  try {
    const target = openFile(nsPath);
    try {
      if (libc().setns(target, CLONE_NEWNET) < 0) {
        throw new BpfError("setns", lastErrno(), { subject: nsPath });
      }
    } finally {
      closeFd(target);
    }
    let outcome: { value: T } | { error: unknown };
    try {
      outcome = { value: operation() };
    } catch (error) {
      outcome = { error };
    }
    // A thread left in the wrong namespace would misdirect every later call: this must not fail silently.
    if (libc().setns(home, CLONE_NEWNET) < 0) {
      throw new BpfError("setns", lastErrno(), { subject: "the thread's own network namespace" });
    }
    if ("error" in outcome) throw outcome.error;
    return outcome.value;
  } finally {
    closeFd(home);
  }
}

function openFile(path: string): number {
  const fd = libc().open(cString(path), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw new BpfError("open", lastErrno(), { subject: path });
  return fd;
}

/** "major.minor" of the libbpf.so.1 this process loaded. */
export function libbpfVersion(): string {
  return `${libbpf().libbpf_major_version()}.${libbpf().libbpf_minor_version()}`;
}

const CLOCK_BOOTTIME = 7;

/** CLOCK_BOOTTIME in nanoseconds: the clock of bpf_ktime_get_boot_ns(). */
export function bootTimeNs(): bigint {
  const timespec = new BigInt64Array(2);
  if (libc().clock_gettime(CLOCK_BOOTTIME, new Uint8Array(timespec.buffer)) < 0) {
    throw new BpfError("clock_gettime", lastErrno(), { subject: "CLOCK_BOOTTIME" });
  }
  return timespec[0]! * 1_000_000_000n + timespec[1]!;
}

/** mount(2) of a pseudo filesystem (`type` is also the source), or a BpfError naming the path. */
export function mountPseudoFs(type: string, path: string): void {
  if (libc().mount(cString(type), cString(path), cString(type), 0n, null) < 0) {
    throw new BpfError("mount", lastErrno(), { subject: `${type} on ${path}` });
  }
}

const LOCK_EX = 2;
const LOCK_NB = 4;
const EWOULDBLOCK = 11;

/** An exclusive flock(2) on a directory; released by `release()` or `using`. */
export type DirectoryLock = { release(): void; [Symbol.dispose](): void };

/**
 * Takes an exclusive lock on the directory `path` if it is free, or returns undefined. The lock is
 * shared by every process and handle (flock locks an open file description).
 */
export function tryLockDirectory(path: string): DirectoryLock | undefined {
  const fd = openDirectory(path);
  if (libc().flock(fd, LOCK_EX | LOCK_NB) === 0) return heldLock(fd);
  const errno = lastErrno();
  closeFd(fd);
  if (errno !== EWOULDBLOCK) throw new BpfError("flock", errno, { subject: path });
  return undefined;
}

/** Waits for an exclusive lock on the directory `path`, on a worker thread. */
export async function lockDirectory(path: string): Promise<DirectoryLock> {
  const fd = openDirectory(path);
  if ((await libc().flock_wait(fd, LOCK_EX)) < 0) {
    closeFd(fd);
    throw new BpfError("flock", EWOULDBLOCK, { subject: path });
  }
  return heldLock(fd);
}

function heldLock(fd: number): DirectoryLock {
  let held = true;
  const release = () => {
    if (!held) return;
    held = false;
    closeFd(fd); // closing the last descriptor releases the lock
  };
  return { release, [Symbol.dispose]: release };
}

const AT_FDCWD = -100;
const STATX_INO = 0x100;
const STATX_MNT_ID = 0x1000;
const STATX_BYTES = 256;
// struct statx offsets: stx_mask 0, stx_ino 32, stx_mnt_id 144 (Linux 5.8+).
const STX_MASK = 0;
const STX_INO = 32;
const STX_MNT_ID = 144;

/**
 * The inode number and mount id of `path` (symlinks followed), from statx(2): the mount id names the
 * mount, and through /proc/self/mountinfo the superblock, that holds the file.
 */
export function statxMount(path: string): { ino: bigint; mountId: number } {
  const buffer = new Uint8Array(STATX_BYTES);
  if (libc().statx(AT_FDCWD, cString(path), 0, STATX_INO | STATX_MNT_ID, buffer) < 0) {
    throw new BpfError("statx", lastErrno(), { subject: path });
  }
  const view = new DataView(buffer.buffer);
  if ((view.getUint32(STX_MASK, true) & STATX_MNT_ID) === 0) {
    throw new BpfError("statx", 95, { subject: `${path}: this kernel reports no mount id` });
  }
  return { ino: view.getBigUint64(STX_INO, true), mountId: Number(view.getBigUint64(STX_MNT_ID, true)) };
}
