/**
 * State safety (SPEC section 9): every state file written atomically, and one lock that serialises the
 * commands that change state. Nothing here touches the kernel.
 */

import { basename, dirname, join } from "node:path";

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
 */
export function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  mode: number,
  options: AtomicWriteOptions = {},
): void {
  const temp = join(dirname(path), `.${basename(path)}${TEMP_MARKER}${Deno.pid}-${randomHex()}`);
  try {
    writeDurably(temp, typeof data === "string" ? new TextEncoder().encode(data) : data, mode);
    if (options.overwrite === false) {
      Deno.linkSync(temp, path); // fails if path exists, where a rename would replace it
      Deno.removeSync(temp);
    } else {
      Deno.renameSync(temp, path);
    }
  } catch (error) {
    removeIfPresent(temp);
    throw error;
  }
  syncDirectory(dirname(path));
}

function writeDurably(path: string, bytes: Uint8Array, mode: number): void {
  using file = Deno.openSync(path, { write: true, createNew: true, mode });
  for (let written = 0; written < bytes.length;) written += file.writeSync(bytes.subarray(written));
  Deno.chmodSync(path, mode);
  file.syncSync();
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

/** Who holds the state lock, as the holder wrote it; fields are absent when it could not be read. */
export type LockHolder = { pid?: number; command?: string; since?: string };

/** The state lock is held by another command and the caller asked not to wait (`--no-wait`). */
export class StateLockedError extends Error {
  override name = "StateLockedError";
  constructor(readonly lockFile: string, readonly holder: LockHolder) {
    super(`The state lock ${lockFile} is held by ${describeHolder(holder)}: try again when it has finished`);
  }
}

export function describeHolder(holder: LockHolder): string {
  if (holder.pid === undefined) return "another aegisbpf command";
  return holder.command === undefined ? `pid ${holder.pid}` : `pid ${holder.pid} (${holder.command})`;
}

export type StateLockOptions = {
  /** true: wait for the holder to finish; false: throw StateLockedError at once. */
  wait: boolean;
  /** What this process is doing, shown to a command that has to wait for it, e.g. "policy apply". */
  command: string;
  /** Called once, before waiting, so the caller can say "waiting for pid N (policy apply)". */
  onWait?: (holder: LockHolder) => void;
};

export type StateLock = Disposable & { readonly path: string };

/**
 * Takes the exclusive lock on `<stateDir>/lock` (flock, so the kernel releases it when the holder dies,
 * even by kill -9) and writes who holds it into the file. Release it with `using` or `[Symbol.dispose]()`.
 */
export async function acquireStateLock(stateDir: string, options: StateLockOptions): Promise<StateLock> {
  Deno.mkdirSync(stateDir, { recursive: true, mode: 0o755 });
  const path = join(stateDir, "lock");
  const file = await Deno.open(path, { read: true, write: true, create: true, mode: 0o644 });
  try {
    if (!(await file.tryLock(true))) {
      const holder = readHolder(path);
      if (!options.wait) throw new StateLockedError(path, holder);
      options.onWait?.(holder);
      await file.lock(true);
    }
    writeHolder(file, options.command);
  } catch (error) {
    file.close();
    throw error;
  }
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

function writeHolder(file: Deno.FsFile, command: string): void {
  const holder: LockHolder = { pid: Deno.pid, command, since: new Date().toISOString() };
  file.truncateSync(0);
  file.seekSync(0, Deno.SeekMode.Start);
  file.writeSync(new TextEncoder().encode(JSON.stringify(holder) + "\n"));
}

/** The holder's record, or {} when it is missing or half written: it is only ever a hint. */
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
