/**
 * The walk of a `recursive` rule's directory: at apply, by `health` and `status`, and by the agent's
 * freshness watcher. Whoever may write below the directory (anyone, for /tmp or /home) chooses its shape,
 * so the walk must survive any shape:
 *
 * - iterative (an explicit stack), never recursion as deep as the tree;
 * - relative to open directory descriptors (openat, getdents64, statx), so no path reaches PATH_MAX;
 * - never following a symlink below the rule's directory (children are opened O_NOFOLLOW);
 * - with at most about HELD_DESCRIPTORS descriptors open at any depth: the last WINDOW levels stay open,
 *   and one level in every STRIDE (up to CHECKPOINTS of them); a closed level is opened again from the
 *   nearest open ancestor, name by name, and must still be the directory (dev, ino) it was;
 * - bounded: past `maxEntries` regular files, or as many other entries (directories, symlinks, devices),
 *   it stops with TreeTooLargeError;
 * - tolerant: an entry that vanished or cannot be read is counted in the report, never fatal.
 *
 * It crosses mount points, as the walk always has: a file mounted under the directory is under the rule.
 */

import { Directory, type DirectoryEntry, entryName, type EntryStat, SysError } from "../../ffi/mod.ts";

/** What a walk needs of an open directory; `Directory` in production, a fake in tests. */
export type TreeDirectory = {
  readonly path: string;
  entries(): Iterable<DirectoryEntry>;
  openChild(name: Uint8Array): TreeDirectory;
  stat(name?: Uint8Array): EntryStat;
  close(): void;
};

export type TreeVisitor = {
  /** A regular file: `directory` is open and holds it as `name`; `path` is for records and messages. */
  file?(directory: TreeDirectory, name: Uint8Array, path: string): void;
  /** A directory below the root, once opened. */
  directory?(path: string): void;
};

/** Entries that could not be read, by errno name, and the first of them. */
export type Unreadable = { count: number; byError: Record<string, number>; first?: string };

/**
 * Regular files met, other entries met (directories, symlinks, devices...), directories not entered for
 * being deeper than `maxDepth`, and what could not be read.
 */
export type WalkReport = { files: number; others: number; tooDeep: number; unreadable: Unreadable };

/** A tree with more entries than its rule allows: nothing was applied. */
export class TreeTooLargeError extends RangeError {
  override name = "TreeTooLargeError";
  constructor(readonly root: string, readonly maxEntries: number, readonly what: "files" | "other entries") {
    super(`${root} holds more than ${maxEntries} ${what}`);
  }
}

/**
 * The most regular files (and, separately, other entries) a recursive rule's walk meets unless its rule
 * says otherwise (`maxFiles`): below the 1,048,576 entries of the rules map (ffi/constants.ts CAPACITY).
 */
export const DEFAULT_MAX_ENTRIES = 1_000_000;

const WINDOW = 32;
const STRIDE = 64;
const CHECKPOINTS = 256;
/** The most descriptors one walk holds at once (the root, the window, the checkpoints). */
export const HELD_DESCRIPTORS = 1 + WINDOW + CHECKPOINTS;

type Frame = {
  directory: TreeDirectory | undefined;
  /** Its name in the parent, to open it again. */
  name: Uint8Array;
  path: string;
  identity: EntryStat;
  /** Subdirectories still to walk; undefined until the directory is read. */
  pending: { name: Uint8Array; path: string }[] | undefined;
};

export type WalkOptions = {
  maxEntries?: number;
  /** Directories more than this many levels below the root are counted, not entered. */
  maxDepth?: number;
  /** Opens the root; `Directory.open` by default. */
  open?: (path: string) => TreeDirectory;
};

/** Walks everything below `root` (the root itself opened following symlinks; errors opening it are thrown). */
export function walkTree(root: string, visitor: TreeVisitor, options: WalkOptions = {}): WalkReport {
  const maxEntries = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
  const report: WalkReport = { files: 0, others: 0, tooDeep: 0, unreadable: { count: 0, byError: {} } };
  const maxDepth = options.maxDepth ?? Infinity;
  const unreadable = (path: string, error: unknown) => {
    const why = failureName(error);
    report.unreadable.count++;
    report.unreadable.byError[why] = (report.unreadable.byError[why] ?? 0) + 1;
    report.unreadable.first ??= path;
  };
  const rootDirectory = (options.open ?? Directory.open)(root);
  const stack: Frame[] = [];
  try {
    stack.push({
      directory: rootDirectory,
      name: new Uint8Array(1),
      path: root,
      identity: rootDirectory.stat(),
      pending: undefined,
    });
    while (stack.length > 0) {
      const depth = stack.length - 1;
      const frame = stack[depth]!;
      if (frame.pending === undefined) {
        frame.pending = [];
        try {
          readFrame(frame, frame.directory!, visitor, report, maxEntries, unreadable);
        } catch (error) {
          if (error instanceof TreeTooLargeError) throw new TreeTooLargeError(root, maxEntries, error.what);
          unreadable(frame.path, error);
        }
      }
      const next = frame.pending.pop();
      if (next === undefined) {
        frame.directory?.close();
        frame.directory = undefined;
        stack.pop();
        continue;
      }
      if (stack.length > maxDepth) {
        report.tooDeep++;
        continue;
      }
      let parent: TreeDirectory;
      try {
        parent = reopen(stack, depth);
      } catch (error) {
        // Gone or replaced since it was read: what it still held is not walked.
        unreadable(frame.path, error);
        frame.pending = [];
        continue;
      }
      let child: TreeDirectory;
      let identity: EntryStat;
      try {
        child = parent.openChild(next.name);
      } catch (error) {
        unreadable(next.path, error);
        continue;
      }
      try {
        identity = child.stat();
      } catch (error) {
        child.close();
        unreadable(next.path, error);
        continue;
      }
      visitor.directory?.(next.path);
      stack.push({ directory: child, name: next.name, path: next.path, identity, pending: undefined });
      release(stack, stack.length - 1 - WINDOW);
    }
  } finally {
    for (const frame of stack) frame.directory?.close();
  }
  return report;
}

/** The errno name of a failed system call; anything else is a bug and is thrown again. */
function failureName(error: unknown): string {
  if (error instanceof SysError) return error.errnoName;
  const code = (error as { code?: unknown })?.code;
  if (DENO_ERRORS.some((kind) => error instanceof kind) && typeof code === "string") return code;
  throw error;
}

const DENO_ERRORS = Object.values(Deno.errors);

function readFrame(
  frame: Frame,
  directory: TreeDirectory,
  visitor: TreeVisitor,
  report: WalkReport,
  maxEntries: number,
  unreadable: (path: string, error: unknown) => void,
): void {
  for (const entry of directory.entries()) {
    const path = `${frame.path}/${entryName(entry.name)}`;
    let type = entry.type;
    try {
      if (type === "unknown") type = directory.stat(entry.name).type;
    } catch (error) {
      unreadable(path, error);
      continue;
    }
    const counted = type === "file" ? ++report.files : ++report.others;
    if (counted > maxEntries) {
      throw new TreeTooLargeError(frame.path, maxEntries, type === "file" ? "files" : "other entries");
    }
    try {
      if (type === "directory") frame.pending!.push({ name: entry.name, path });
      else if (type === "file") visitor.file?.(directory, entry.name, path);
    } catch (error) {
      unreadable(path, error);
    }
  }
}

/** Closes the descriptor of level `index` unless it is the root or a checkpoint. */
function release(stack: Frame[], index: number): void {
  if (index <= 0 || (index % STRIDE === 0 && index / STRIDE <= CHECKPOINTS)) return;
  const frame = stack[index]!;
  frame.directory?.close();
  frame.directory = undefined;
}

/**
 * The open directory of level `index`, opened again if it was released: name by name from the nearest
 * open ancestor, each level checked to be the same directory it was when first opened (a directory renamed
 * into its place meanwhile is refused: ESTALE). Levels opened on the way are closed again.
 */
function reopen(stack: Frame[], index: number): TreeDirectory {
  const frame = stack[index]!;
  if (frame.directory !== undefined) return frame.directory;
  let from = index - 1;
  while (stack[from]!.directory === undefined) from--;
  let current = stack[from]!.directory!;
  for (let level = from + 1; level <= index; level++) {
    const { name, identity, path } = stack[level]!;
    const next = current.openChild(name);
    if (level - 1 > from) current.close();
    current = next;
    let now: EntryStat;
    try {
      now = current.stat();
    } catch (error) {
      current.close();
      throw error;
    }
    if (now.ino !== identity.ino || now.dev !== identity.dev) {
      current.close();
      throw new SysError("openat", ESTALE, `${path}: replaced during the walk`);
    }
  }
  frame.directory = current;
  return current;
}

const ESTALE = 116;
