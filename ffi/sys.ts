import { SysError, sysFailure, unwrapSys } from "./error.ts";
import { cString, lastErrno, libbpf, libc } from "./libbpf.ts";
import { AF_INET, AF_INET6, SOCK_CLOEXEC, SOCK_DGRAM } from "./socket_constants.ts";

const O_RDONLY = 0;
const O_DIRECTORY = 0o200000;
const O_CLOEXEC = 0o2000000;

/** Opens a directory (a cgroup, say) and returns its fd: Deno gives no fd for its own handles. */
export function openDirectory(path: string): number {
  return unwrapSys(libc().open(cString(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC), "open", path);
}

export function closeFd(fd: number): void {
  unwrapSys(libc().close(fd), "close", `fd ${fd}`);
}

const ENODEV = 19;

/** The index of a network interface, or a SysError (ENODEV) naming it. */
export function ifIndex(name: string): number {
  const index = libc().if_nametoindex(cString(name));
  if (index === 0) throw sysFailure("if_nametoindex", name, ENODEV);
  return index;
}

/** IF_NAMESIZE, with the terminating NUL. */
const IF_NAMESIZE = 16;

/** The name of interface `index` in this thread's network namespace, or undefined when there is none. */
export function ifName(index: number): string | undefined {
  const buffer = new Uint8Array(IF_NAMESIZE);
  if (libc().if_indextoname(index, buffer) === null) return undefined;
  const end = buffer.indexOf(0);
  return new TextDecoder().decode(buffer.subarray(0, end < 0 ? buffer.length : end));
}

const SIOCETHTOOL = 0x8946n;
const ETHTOOL_GDRVINFO = 3;
/** struct ifreq: the name, then a union whose ifr_data pointer sits at offset 16. */
const IFREQ_BYTES = 40;
/** struct ethtool_drvinfo: cmd (u32), then driver[32], version[32], ... (196 bytes in all). */
const DRVINFO_BYTES = 196;
const DRVINFO_DRIVER = 4;
const DRIVER_BYTES = 32;

/**
 * The driver of a network interface in this thread's network namespace, as `ethtool -i` names it ("veth",
 * "virtio_net", "mlx5_core"), or undefined when the interface has none to report (lo, or a device without
 * ethtool operations) or does not exist.
 */
export function interfaceDriver(name: string): string | undefined {
  const fd = unwrapSys(libc().socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), "socket", `ethtool ${name}`);
  try {
    const drvinfo = new Uint8Array(DRVINFO_BYTES);
    new DataView(drvinfo.buffer).setUint32(0, ETHTOOL_GDRVINFO, true);
    const ifreq = new Uint8Array(IFREQ_BYTES);
    ifreq.set(new TextEncoder().encode(name).subarray(0, IF_NAMESIZE - 1));
    const data = Deno.UnsafePointer.value(Deno.UnsafePointer.of(drvinfo));
    new DataView(ifreq.buffer).setBigUint64(16, BigInt(data), true);
    if (libc().ioctl(fd, SIOCETHTOOL, ifreq) !== 0) return undefined;
    const driver = drvinfo.subarray(DRVINFO_DRIVER, DRVINFO_DRIVER + DRIVER_BYTES);
    const end = driver.indexOf(0);
    return new TextDecoder().decode(driver.subarray(0, end < 0 ? DRIVER_BYTES : end)) || undefined;
  } finally {
    libc().close(fd);
  }
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
      unwrapSys(libc().setns(target, CLONE_NEWNET), "setns", nsPath);
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
    unwrapSys(libc().setns(home, CLONE_NEWNET), "setns", "the thread's own network namespace");
    if ("error" in outcome) throw outcome.error;
    return outcome.value;
  } finally {
    closeFd(home);
  }
}

function openFile(path: string): number {
  return unwrapSys(libc().open(cString(path), O_RDONLY | O_CLOEXEC), "open", path);
}

/** "major.minor" of the libbpf.so.1 this process loaded. */
export function libbpfVersion(): string {
  return `${libbpf().libbpf_major_version()}.${libbpf().libbpf_minor_version()}`;
}

const CLOCK_BOOTTIME = 7;

/** CLOCK_BOOTTIME in nanoseconds: the clock of bpf_ktime_get_boot_ns(). */
export function bootTimeNs(): bigint {
  const timespec = new BigInt64Array(2);
  unwrapSys(
    libc().clock_gettime(CLOCK_BOOTTIME, new Uint8Array(timespec.buffer)),
    "clock_gettime",
    "CLOCK_BOOTTIME",
  );
  return timespec[0]! * 1_000_000_000n + timespec[1]!;
}

/** mount(2) of a pseudo filesystem (`type` is also the source), or a SysError naming the path. */
export function mountPseudoFs(type: string, path: string): void {
  unwrapSys(
    libc().mount(cString(type), cString(path), cString(type), 0n, null),
    "mount",
    `${type} on ${path}`,
  );
}

/**
 * connect(2) of a new UDP socket to `addr` (4 or 16 bytes, network order) and `port`: no datagram leaves,
 * and the cgroup connect hooks decide it as they would a TCP connect. Returns 0, or the errno it failed with.
 */
export function connectUdp(addr: Uint8Array, port: number): number {
  const v6 = addr.length === 16;
  const fd = unwrapSys(libc().socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), "socket", "udp");
  try {
    // struct sockaddr_in (16 bytes: family, port, address) or sockaddr_in6 (28: family, port, flowinfo, address)
    const sockaddr = new Uint8Array(v6 ? 28 : 16);
    const view = new DataView(sockaddr.buffer);
    view.setUint16(0, v6 ? AF_INET6 : AF_INET, true);
    view.setUint16(2, port, false);
    sockaddr.set(addr, v6 ? 8 : 4);
    return libc().connect(fd, sockaddr, sockaddr.length) < 0 ? lastErrno() : 0;
  } finally {
    libc().close(fd);
  }
}

const MNT_DETACH = 2;

/** umount2(2) with MNT_DETACH: the mount goes from the tree now, and away once nothing uses it. */
export function unmountLazily(path: string): void {
  unwrapSys(libc().umount2(cString(path), MNT_DETACH), "umount2", path);
}

/** This process (every thread: glibc's set*id broadcast) becomes `uid`:`gid` with no supplementary groups. */
export function becomeUser(uid: number, gid: number): void {
  unwrapSys(libc().setgroups(0n, null), "setgroups", "[]");
  unwrapSys(libc().setresgid(gid, gid, gid), "setresgid", String(gid));
  unwrapSys(libc().setresuid(uid, uid, uid), "setresuid", String(uid));
}

const LOCK_EX = 2;
const LOCK_NB = 4;
const EWOULDBLOCK = 11;
const EINTR = 4;

/** An exclusive flock(2) on a directory; released by `release()` or `using`. */
export type DirectoryLock = { release(): void; [Symbol.dispose](): void };

/**
 * Takes an exclusive lock on the directory `path` if it is free, or returns undefined. The lock is
 * shared by every process and handle (flock locks an open file description).
 */
export function tryLockDirectory(path: string): DirectoryLock | undefined {
  const fd = openDirectory(path);
  if (libc().flock(fd, LOCK_EX | LOCK_NB) === 0) return heldLock(fd);
  const failure = sysFailure("flock", path);
  closeFd(fd);
  if (failure.errno !== EWOULDBLOCK) throw failure;
  return undefined;
}

/** Waits for an exclusive lock on the directory `path`, on a worker thread. */
export async function lockDirectory(path: string): Promise<DirectoryLock> {
  const fd = openDirectory(path);
  if ((await libc().flock_wait(fd, LOCK_EX)) < 0) {
    closeFd(fd);
    // errno stayed on the worker thread; a blocking flock on a valid descriptor fails only when interrupted.
    throw new SysError("flock", EINTR, path);
  }
  return heldLock(fd);
}

/**
 * Waits for an exclusive lock on the directory `path`, blocking this thread: for synchronous callers
 * whose holder is another process (a holder in this thread would never get to release it).
 */
export function lockDirectorySync(path: string): DirectoryLock {
  const fd = openDirectory(path);
  if (libc().flock(fd, LOCK_EX) < 0) {
    const failure = sysFailure("flock", path);
    closeFd(fd);
    throw failure;
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
const EOPNOTSUPP = 95;

/**
 * The inode number and mount id of `path` (symlinks followed), from statx(2): the mount id names the
 * mount, and through /proc/self/mountinfo the superblock, that holds the file.
 */
export function statxMount(path: string): { ino: bigint; mountId: number } {
  const buffer = new Uint8Array(STATX_BYTES);
  unwrapSys(libc().statx(AT_FDCWD, cString(path), 0, STATX_INO | STATX_MNT_ID, buffer), "statx", path);
  const view = new DataView(buffer.buffer);
  if ((view.getUint32(STX_MASK, true) & STATX_MNT_ID) === 0) {
    throw new SysError("statx", EOPNOTSUPP, `${path}: this kernel reports no mount id`);
  }
  return { ino: view.getBigUint64(STX_INO, true), mountId: Number(view.getBigUint64(STX_MNT_ID, true)) };
}

const STATX_CTIME = 0x80;
const STX_CTIME_SEC = 96;
const STX_CTIME_NSEC = 104;

/**
 * statx(2) of `path` (symlinks followed): its inode number and ctime in ns (sec * 10^9 + nsec), as the
 * kernel's inode holds them: what the exec allowlist stamps a hashed file with.
 */
export function statxStamp(path: string): { ino: bigint; ctimeNs: bigint } {
  const buffer = new Uint8Array(STATX_BYTES);
  unwrapSys(libc().statx(AT_FDCWD, cString(path), 0, STATX_INO | STATX_CTIME, buffer), "statx", path);
  const view = new DataView(buffer.buffer);
  if ((view.getUint32(STX_MASK, true) & STATX_CTIME) === 0) {
    throw new SysError("statx", EOPNOTSUPP, `${path}: this filesystem reports no ctime`);
  }
  const seconds = view.getBigInt64(STX_CTIME_SEC, true);
  const nanos = BigInt(view.getUint32(STX_CTIME_NSEC, true));
  return {
    ino: view.getBigUint64(STX_INO, true),
    ctimeNs: BigInt.asUintN(64, seconds * 1_000_000_000n + nanos),
  };
}

const AT_SYMLINK_FOLLOW = 0x400;
const HANDLE_BYTES = 128;
/** FILEID_INO32_GEN: (ino, generation) on ext2/3/4 and most filesystems; tmpfs writes (generation, ino). */
const FILEID_INO32_GEN = 1;

/**
 * The i_generation of the inode `ino` that `path` names (symlinks followed), read from its file handle, or
 * undefined where the handle does not show it: ext2/3/4 and the filesystems using the kernel's default
 * handle (ino, generation), and tmpfs (generation, ino). Each layout is accepted only when its ino word is
 * the inode's own, so a handle of another shape is never misread. Filesystems that export no handles, or
 * another layout (btrfs, xfs with 64-bit inodes, overlayfs), give undefined.
 */
export function inodeGeneration(path: string, ino: bigint): number | undefined {
  const buffer = new Uint8Array(8 + HANDLE_BYTES);
  const view = new DataView(buffer.buffer);
  view.setUint32(0, HANDLE_BYTES, true);
  const mountId = new Uint8Array(4);
  if (libc().name_to_handle_at(AT_FDCWD, cString(path), buffer, mountId, AT_SYMLINK_FOLLOW) !== 0) {
    return undefined;
  }
  const bytes = view.getUint32(0, true);
  if (view.getInt32(4, true) !== FILEID_INO32_GEN) return undefined;
  const low = Number(ino & 0xffffffffn);
  const word = (index: number) => view.getUint32(8 + index * 4, true);
  if (bytes === 8 && word(0) === low) return word(1);
  if (bytes === 12 && word(1) === low && word(2) === Number(ino >> 32n)) return word(0);
  return undefined;
}

const SYS_PIDFD_OPEN = 434n;
const SYS_PIDFD_SEND_SIGNAL = 424n;

/** pidfd_open(2): a descriptor that names process `pid` and no later one that reuses its number. */
export function pidfdOpen(pid: number): number {
  return unwrapSys(
    Number(libc().syscall4(SYS_PIDFD_OPEN, BigInt(pid), 0n, 0n, 0n)),
    "pidfd_open",
    `pid ${pid}`,
  );
}

/** pidfd_send_signal(2): `signal` to the process `pidfd` names (ESRCH when it has exited). */
export function pidfdSendSignal(pidfd: number, signal: number): void {
  unwrapSys(
    Number(libc().syscall4(SYS_PIDFD_SEND_SIGNAL, BigInt(pidfd), BigInt(signal), 0n, 0n)),
    "pidfd_send_signal",
    `signal ${signal}`,
  );
}

/**
 * Hands the C heap's free memory back to the system (glibc `malloc_trim`): libbpf parses the kernel's BTF
 * (megabytes) to load the object and frees it, and glibc would otherwise keep those pages resident for the
 * life of a long-running agent.
 */
export function releaseFreedMemory(): void {
  libc().malloc_trim(0n);
}
