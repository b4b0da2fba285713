import assert from "node:assert/strict";
import { type DirectoryEntry, entryName, type EntryStat, SysError } from "../../ffi/mod.ts";
import { HELD_DESCRIPTORS, type TreeDirectory, TreeTooLargeError, walkTree } from "./tree.ts";

/** A directory tree in memory: a file is null, a symlink a string, a directory an object of children. */
type Node = { [name: string]: Node | string | null };

const ENOENT = 2;
const EACCES = 13;
const encoder = new TextEncoder();

/**
 * Fake open directories over a Node tree, counting how many are open at once; `failOpen` names paths
 * whose open fails with EACCES, and `replace` runs before a path is opened (to swap it meanwhile).
 */
function fakeTree(root: Node, options: { failOpen?: Set<string>; beforeOpen?: (path: string) => void } = {}) {
  let open = 0;
  let mostOpen = 0;
  let nextIno = 1n;
  const inodes = new WeakMap<Node, bigint>();
  const inoOf = (node: Node) => {
    if (!inodes.has(node)) inodes.set(node, nextIno++);
    return inodes.get(node)!;
  };
  const stat = (node: Node | string | null): EntryStat => ({
    ino: node !== null && typeof node === "object" ? inoOf(node) : 0n,
    mountId: 1,
    dev: 7,
    type: node === null ? "file" : typeof node === "string" ? "symlink" : "directory",
  });
  const directory = (node: Node, path: string): TreeDirectory => {
    open++;
    mostOpen = Math.max(mostOpen, open);
    let closed = false;
    return {
      path,
      *entries(): Generator<DirectoryEntry> {
        for (const [name, child] of Object.entries(node)) {
          // Half the entries say DT_UNKNOWN, as some file systems do: the walk must statx them.
          const type = name.length % 2 === 0 ? "unknown" : stat(child).type;
          yield { name: encoder.encode(`${name}\0`), type };
        }
      },
      openChild(name) {
        const text = entryName(name);
        const childPath = `${path}/${text}`;
        options.beforeOpen?.(childPath);
        const child = node[text];
        if (options.failOpen?.has(childPath)) throw new SysError("openat", EACCES, childPath);
        if (child === undefined) throw new SysError("openat", ENOENT, childPath);
        if (child === null || typeof child === "string") throw new SysError("openat", 20, childPath);
        return directory(child, childPath);
      },
      stat(name) {
        if (name === undefined) return stat(node);
        const child = node[entryName(name)];
        if (child === undefined) throw new SysError("statx", ENOENT, `${path}/${entryName(name)}`);
        return stat(child);
      },
      close() {
        assert.equal(closed, false, `${path} closed twice`);
        closed = true;
        open--;
      },
    };
  };
  return {
    open: (path: string) => directory(root, path),
    get openNow() {
      return open;
    },
    get mostOpen() {
      return mostOpen;
    },
  };
}

function collect(tree: ReturnType<typeof fakeTree>, maxEntries?: number) {
  const files: string[] = [];
  const directories: string[] = [];
  const report = walkTree("/r", {
    file: (_directory, _name, path) => void files.push(path),
    directory: (path) => void directories.push(path),
  }, { open: tree.open, ...maxEntries !== undefined && { maxEntries } });
  return { files: files.sort(), directories: directories.sort(), report };
}

Deno.test("walkTree() visits every file and directory below the root and follows no symlink", () => {
  const tree = fakeTree({ a: { b: { f1: null }, f2: null }, cd: { f3: null }, link: "/etc", f4: null });
  const { files, directories, report } = collect(tree);
  assert.deepEqual(files, ["/r/a/b/f1", "/r/a/f2", "/r/cd/f3", "/r/f4"]);
  assert.deepEqual(directories, ["/r/a", "/r/a/b", "/r/cd"]);
  assert.deepEqual(report, { files: 4, others: 4, tooDeep: 0, unreadable: { count: 0, byError: {} } });
  assert.equal(tree.openNow, 0, "every directory closed");
});

Deno.test("walkTree() counts an unreadable directory and a vanished file, and walks the rest", () => {
  const tree = fakeTree({ locked: { hidden: null }, ok: { seen: null }, gone: null });
  const files: string[] = [];
  const report = walkTree("/r", {
    file(_directory, _name, path) {
      if (path === "/r/gone") throw new SysError("statx", ENOENT, path);
      files.push(path);
    },
  }, {
    open: fakeTree({ locked: { hidden: null }, ok: { seen: null }, gone: null }, {
      failOpen: new Set(["/r/locked"]),
    }).open,
  });
  assert.deepEqual(files, ["/r/ok/seen"]);
  assert.equal(report.unreadable.count, 2);
  assert.deepEqual(report.unreadable.byError, { EACCES: 1, ENOENT: 1 });
  assert.ok(report.unreadable.first === "/r/gone" || report.unreadable.first === "/r/locked");
  assert.equal(tree.openNow, 0);
});

Deno.test("walkTree() throws anything but a failed system call", () => {
  const tree = fakeTree({ f: null });
  assert.throws(
    () =>
      walkTree("/r", {
        file: () => {
          throw new TypeError("a bug");
        },
      }, { open: tree.open }),
    TypeError,
  );
  assert.equal(tree.openNow, 0, "closed on the way out");
});

Deno.test("walkTree() stops past maxEntries files, or as many other entries, naming the root", () => {
  const files: Node = {};
  for (let i = 0; i < 11; i++) files[`f${i}`] = null;
  const tree = fakeTree({ sub: files });
  assert.equal(collect(fakeTree({ sub: files }), 11).report.files, 11);
  assert.throws(() => collect(tree, 10), (error) => {
    assert.ok(error instanceof TreeTooLargeError);
    assert.equal(error.message, "/r holds more than 10 files");
    return true;
  });
  assert.equal(tree.openNow, 0);
  const dirs: Node = {};
  for (let i = 0; i < 11; i++) dirs[`d${i}`] = {};
  assert.throws(() => collect(fakeTree(dirs), 10), /\/r holds more than 10 other entries/);
});

Deno.test("walkTree() walks a 5,000-deep chain with siblings at every level holding few descriptors", () => {
  const root: Node = {};
  let level = root;
  for (let depth = 0; depth < 5000; depth++) {
    const next: Node = {};
    // The sibling file comes after the subdirectory, so each level is left and come back to.
    level.d = next;
    level.s = { f: null };
    level = next;
  }
  level.bottom = null;
  const tree = fakeTree(root);
  const { files, directories, report } = collect(tree);
  assert.equal(files.length, 5001);
  assert.equal(directories.length, 10000);
  assert.equal(report.unreadable.count, 0);
  assert.ok(files.some((path) => path.endsWith("/d/bottom") && path.length > 10000), "the bottom file");
  assert.ok(
    tree.mostOpen <= HELD_DESCRIPTORS + 2,
    `at most ${HELD_DESCRIPTORS + 2} open, was ${tree.mostOpen}`,
  );
  assert.equal(tree.openNow, 0);
});

Deno.test("walkTree() counts a directory replaced while its descriptor was released (ESTALE), not fatal", () => {
  const root: Node = {};
  let level = root;
  const chain: Node[] = [];
  // Level 100 also holds a subdirectory walked last (listed first, taken last): by then its descriptor
  // was released, and it is replaced by another directory before the walk opens it again.
  const late: Node = { f: null };
  for (let depth = 0; depth < 200; depth++) {
    const next: Node = depth === 99 ? { a: late } : {};
    level.d = next;
    chain.push(next);
    level = next;
  }
  let swapped = false;
  const tree = fakeTree(root, {
    beforeOpen(path) {
      if (!swapped && path.split("/").length > 150) {
        swapped = true;
        chain[98]!.d = { a: late, d: {} };
      }
    },
  });
  const { files, report } = collect(tree);
  assert.deepEqual(files, [], "the replaced directory's file was not taken for the original's");
  assert.ok(report.unreadable.byError.ESTALE === 1, JSON.stringify(report.unreadable));
  assert.equal(tree.openNow, 0);
});
