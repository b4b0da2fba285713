/**
 * State safety (SPEC section 9): every state file written atomically, and one lock that serialises the
 * commands that change state. Nothing here touches the kernel.
 */

import { basename, dirname, join } from "node:path";
import { makePrivateDir, PRIVATE_FILE_MODE } from "./access.ts";
import { describeHolder, findHolder, type LockHolder } from "./lock_holder.ts";

/** Temporary files are hidden, so that a directory listing that skips dot files never sees one. */
const TEMP_MARKER = ".tmp-";

/** Whether a directory entry is a temporary file left by writeFileAtomic (for example by a kill -9). */
export function isTempFileName(name: string): boolean {
  return name.startsWith(".") && name.includes(TEMP_MARKER);
}

export type AtomicWriteOptions = {
  /** false: fail with Deno.errors.AlreadyExists rather than replace an existing file. Default true. */
  overwrite?: boolean;
};

/**
 * Writes `data` to `path` so that a reader, or the next boot after a crash, sees either the old file or the
 * whole new one: a temporary file in the same directory, written, given `mode` (whatever the umask),
 * fsynced, renamed over `path`, then the directory fsynced so that the rename itself is durable.
 *
 * The directory may be one another user can write (a node_exporter textfile directory): nothing is done by
 * name to the temporary file once it exists. It is created new (O_CREAT|O_EXCL, which never follows a
 * symlink), its mode is set and checked through the descriptor, and what the rename put at `path` is checked
 * to be that same file, so a swap made meanwhile fails the write instead of reaching another file.
 */
export function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  mode: number,
  options: AtomicWriteOptions = {},
): void {
  const temp = join(dirname(path), `.${basename(path)}${TEMP_MARKER}${Deno.pid}-${randomHex()}`);
  try {
    const written = writeDurably(
      temp,
      typeof data === "string" ? new TextEncoder().encode(data) : data,
      mode,
    );
    if (options.overwrite === false) {
      Deno.linkSync(temp, path); // fails if path exists, where a rename would replace it
      Deno.removeSync(temp);
    } else {
      Deno.renameSync(temp, path); // a rename moves the entry itself: a symlink there is replaced, not followed
    }
    const landed = Deno.lstatSync(path);
    if (landed.dev !== written.dev || landed.ino !== written.ino) {
      throw new Error(
        `${path} was replaced while it was written: another user can write ${dirname(path)}; make the ` +
          "directory writable by its owner only",
      );
    }
  } catch (error) {
    removeIfPresent(temp);
    throw error;
  }
  syncDirectory(dirname(path));
}

function writeDurably(path: string, bytes: Uint8Array, mode: number): Deno.FileInfo {
  using file = Deno.openSync(path, { write: true, createNew: true, mode });
  const created = file.statSync();
  if (((created.mode ?? 0) & 0o7777) !== mode) chmodOpenFile(file, path, mode);
  for (let written = 0; written < bytes.length;) written += file.writeSync(bytes.subarray(written));
  file.syncSync();
  return created;
}

/**
 * fchmod(2) for a Deno.FsFile, which has none: `/proc/self/fd/N` resolves to the open file itself, not to a
 * name another user could swap. N is the descriptor whose file has this one's device and inode; the check
 * after it fails loudly rather than leave a file with a mode it was not given.
 */
export function chmodOpenFile(file: Deno.FsFile, path: string, mode: number): void {
  const own = file.statSync();
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    const link = `/proc/self/fd/${entry.name}`;
    let info: Deno.FileInfo;
    try {
      info = Deno.statSync(link);
    } catch {
      continue; // closed meanwhile, or the directory listing's own descriptor
    }
    if (info.dev !== own.dev || info.ino !== own.ino) continue;
    Deno.chmodSync(link, mode);
    break;
  }
  const now = (file.statSync().mode ?? 0) & 0o7777;
  if (now !== mode) {
    throw new Error(`Cannot give ${path} mode 0${mode.toString(8)}: it has mode 0${now.toString(8)}`);
  }
}

/** Best effort: some file systems refuse to open or fsync a directory. */
export function syncDirectory(path: string): void {
  try {
    using dir = Deno.openSync(path, { read: true });
    dir.syncSync();
  } catch {
    // The rename is still atomic; only its durability across a power loss is weaker there.
  }
}

export function removeIfPresent(path: string): void {
  try {
    Deno.removeSync(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

function randomHex(): string {
  return crypto.getRandomValues(new Uint8Array(6)).toHex();
}

/** How long a command waits for the state lock before it gives up, unless told otherwise. */
export const DEFAULT_LOCK_TIMEOUT_MS = 60_000;
/** How often a waiting command tries the lock again: a blocking flock could not be given up. */
const LOCK_RETRY_MS = 100;

/**
 * The state lock is held by another command: the caller asked not to wait (`--no-wait`), or it waited
 * `waitedMs` and gave up. The holder is the pid the kernel names, with its command.
 */
export class StateLockedError extends Error {
  override name = "StateLockedError";
  constructor(readonly lockFile: string, readonly holder: LockHolder, readonly waitedMs?: number) {
    const held = `the state lock ${lockFile} is held by ${describeHolder(holder)}`;
    super(
      waitedMs === undefined
        ? `The state lock ${lockFile} is held by ${describeHolder(holder)}: try again when it has finished`
        : `Gave up after waiting ${formatWait(waitedMs)}: ${held}; try again when it has finished, or wait ` +
          "longer with --lock-timeout",
    );
  }
}

function formatWait(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

export type StateLockOptions = {
  /** true: wait for the holder to finish, at most `timeoutMs`; false: throw StateLockedError at once. */
  wait: boolean;
  /** What this process is doing, shown to a command that has to wait for it, e.g. "policy apply". */
  command: string;
  /** Called once, before waiting, so the caller can say "waiting for pid N (policy apply)". */
  onWait?: (holder: LockHolder) => void;
  /** The longest wait before StateLockedError; DEFAULT_LOCK_TIMEOUT_MS when absent. */
  timeoutMs?: number;
  /** Ends the wait at once with the signal's reason (the agent stopping). */
  signal?: AbortSignal;
};

export type StateLock = Disposable & { readonly path: string };

/**
 * Takes the exclusive lock on `<stateDir>/lock` (flock, so the kernel releases it when the holder dies,
 * even by kill -9) and writes who holds it into the file. Release it with `using` or `[Symbol.dispose]()`.
 * The directory is made 0700 and the file 0600 (an older 0644 lock file is narrowed through its descriptor):
 * a flock needs only read access, so a lock file others can open is a lock others can hold.
 */
export async function acquireStateLock(stateDir: string, options: StateLockOptions): Promise<StateLock> {
  makePrivateDir(stateDir);
  const path = join(stateDir, "lock");
  const file = await Deno.open(path, { read: true, write: true, create: true, mode: PRIVATE_FILE_MODE });
  try {
    if (((file.statSync().mode ?? 0) & 0o077) !== 0) chmodOpenFile(file, path, PRIVATE_FILE_MODE);
    if (!(await file.tryLock(true))) await waitForLock(file, path, options);
    writeHolder(file, options.command);
  } catch (error) {
    file.close();
    throw error;
  }
  return heldLock(file, path);
}

/**
 * A lock file held through `file`: releasing it empties the holder record and closes the only descriptor,
 * which releases the flock. Used for the state lock and the agent lock.
 */
export function heldLock(file: Deno.FsFile, path: string): StateLock {
  return {
    path,
    [Symbol.dispose]() {
      try {
        file.truncateSync(0);
      } finally {
        file.close(); // closing the only descriptor releases the flock
      }
    },
  };
}

async function waitForLock(file: Deno.FsFile, path: string, options: StateLockOptions): Promise<void> {
  const holder = () => findHolder(path, file.statSync());
  if (!options.wait) throw new StateLockedError(path, holder());
  options.onWait?.(holder());
  const timeoutMs = options.timeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS;
  const deadline = performance.now() + timeoutMs;
  do {
    options.signal?.throwIfAborted();
    const left = deadline - performance.now();
    if (left <= 0) throw new StateLockedError(path, holder(), timeoutMs);
    await new Promise((resolve) => setTimeout(resolve, Math.min(LOCK_RETRY_MS, left)));
    options.signal?.throwIfAborted();
  } while (!(await file.tryLock(true)));
}

function writeHolder(file: Deno.FsFile, command: string): void {
  const holder: LockHolder = { pid: Deno.pid, command, since: new Date().toISOString() };
  file.truncateSync(0);
  file.seekSync(0, Deno.SeekMode.Start);
  file.writeSync(new TextEncoder().encode(JSON.stringify(holder) + "\n"));
}
