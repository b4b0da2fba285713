/**
 * Who holds the state lock. Each holder writes a record (`{pid, command, since}`) into the lock file, but
 * anyone able to open the file can flock it without writing one; so the kernel's word (/proc/locks) comes
 * first, and the record only names the command when its pid is the one the kernel names.
 */

/** Who holds the state lock; fields are absent when they could not be found. */
export type LockHolder = { pid?: number; command?: string; since?: string };

/** The file identity /proc/locks prints: the superblock's major and minor, and the inode. */
export type LockedFile = { dev: number; ino: number | null };

export function describeHolder(holder: LockHolder): string {
  if (holder.pid === undefined) return "another aegisbpf command";
  return holder.command === undefined ? `pid ${holder.pid}` : `pid ${holder.pid} (${holder.command})`;
}

/** The holder's record, or {} when it is missing or half written: on its own it is only a hint. */
export function readHolder(path: string): LockHolder {
  try {
    const value: unknown = JSON.parse(Deno.readTextFileSync(path));
    if (typeof value !== "object" || value === null) return {};
    const { pid, command, since } = value as Record<string, unknown>;
    return {
      ...(Number.isSafeInteger(pid) ? { pid: pid as number } : {}),
      ...(typeof command === "string" ? { command } : {}),
      ...(typeof since === "string" ? { since } : {}),
    };
  } catch {
    return {};
  }
}

/**
 * The pids holding a flock on `file` in /proc/locks text (lines such as
 * `1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF`; waiters, marked `->`, are left out). The device is
 * compared when it matches, else the inode alone (stat's st_dev names a btrfs subvolume, not the
 * superblock /proc/locks prints). Pids the reader's namespace cannot see (0) are left out; pure.
 */
export function flockHolders(procLocks: string, file: LockedFile): number[] {
  const major = ((file.dev >> 8) & 0xfff).toString(16).padStart(2, "0");
  const minor = ((file.dev & 0xff) | ((file.dev >> 12) & ~0xff)).toString(16).padStart(2, "0");
  const exact: number[] = [];
  const sameInode: number[] = [];
  for (const line of procLocks.split("\n")) {
    const fields = line.trim().split(/\s+/);
    if (fields[1] !== "FLOCK") continue;
    const pid = Number(fields[4]);
    const [lockMajor, lockMinor, ino] = (fields[5] ?? "").split(":");
    if (!(pid > 0) || file.ino === null || Number(ino) !== file.ino) continue;
    (lockMajor === major && lockMinor === minor ? exact : sameInode).push(pid);
  }
  return exact.length > 0 ? exact : sameInode;
}

/**
 * Who holds the lock on the open lock file `path` (identified by `file`): the pid the kernel names, with
 * the recorded command when the record is that pid's, else its command line from /proc. Without
 * /proc/locks, the record alone.
 */
export function findHolder(path: string, file: LockedFile): LockHolder {
  const recorded = readHolder(path);
  let pids: number[];
  try {
    pids = flockHolders(Deno.readTextFileSync("/proc/locks"), file);
  } catch {
    return recorded;
  }
  const pid = pids.find((candidate) => candidate === recorded.pid) ?? pids[0];
  if (pid === undefined) return recorded;
  if (pid === recorded.pid) return recorded;
  const command = commandLineOf(pid);
  return command === undefined ? { pid } : { pid, command };
}

/** `/proc/PID/cmdline` as one line, shortened; undefined when the process is gone or hidden. */
export function commandLineOf(pid: number): string | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/cmdline`);
  } catch {
    return undefined;
  }
  const line = text.split("\0").filter((arg) => arg !== "").join(" ");
  if (line === "") return undefined;
  return line.length > 120 ? `${line.slice(0, 117)}...` : line;
}
