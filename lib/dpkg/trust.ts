/**
 * `trust: dpkg`: the files of the installed packages that may run. A file counts when dpkg's database lists
 * it with an MD5 (info/PKG.md5sums: regular files; conffiles have none), it is a regular file now, it could
 * run or be mapped executable (an exec bit, or a shared object's name, `*.so*`, with an ELF header: libraries
 * ship without exec bits), and its content has the MD5 dpkg recorded. Every such file that does not match, or cannot be read, is listed
 * (`untrusted`), never dropped silently. Symlinked directories (/bin -> /usr/bin on merged /usr) and
 * diversions are followed, so each file is counted once, by its real path.
 *
 * Hashing every file at every apply does not fit in a second: a cache in the state directory keeps each
 * package's candidate files (valid while its md5sums file and the diversions are unchanged) and each file's
 * MD5 keyed by (dev, ino, size, mtime, ctime), ctime being set by the kernel at every change. An entry
 * hashed less than two seconds after the file's last change is not reused (a change within the same clock
 * tick would keep the key). A warm resolution reads no md5sums file that is unchanged: the cache holds its
 * candidates with their MD5s. So a packaged file given an exec bit later counts only once its package
 * changes (until then it stays untrusted: refused, never allowed).
 */
import { dirname, join } from "node:path";
import { InputError } from "../errors.ts";
import {
  type Diversion,
  divertedPath,
  installedPackages,
  type PackageFile,
  parseDiversions,
  parseMd5sums,
} from "./database.ts";
import { md5Files } from "./hash.ts";

export const DPKG_ADMIN_DIR = "/var/lib/dpkg";
export const DPKG_CACHE_FILE = "dpkg_trust.json";

/** A file dpkg lists that is left untrusted, and why. */
export type UntrustedFile = {
  path: string;
  package: string;
  reason: "md5-mismatch" | "no-md5" | "unreadable" | "changed-while-hashed";
};

/** A file trusted: its real path, and its ctime (ns) when its content was checked. */
export type TrustedFile = { path: string; ctimeNs: bigint };

export type DpkgTrust = {
  /** The files trusted, each once, by real path. */
  trusted: TrustedFile[];
  /** Files that could run but are left untrusted. */
  untrusted: UntrustedFile[];
  stats: {
    packages: number;
    /** Files the md5sums list. */
    listed: number;
    /** Listed files missing from disk (a path-exclude, a removed file): nothing to run. */
    missing: number;
    /** Files that could run (exec bit or ELF), before the MD5 check. */
    candidates: number;
    /** Files hashed this time (the rest came from the cache). */
    hashed: number;
  };
};

export type DpkgTrustOptions = {
  /** dpkg's database; $DPKG_ADMINDIR (dpkg's own variable), else /var/lib/dpkg. */
  adminDir?: string;
  /** The cache file (in the state directory); none: everything is checked again. */
  cacheFile?: string;
  /** The file system root the database's paths are under ("" for /: tests use a private root). */
  root?: string;
  /** The time now, in ms (tests move it past the racy window). */
  now?: () => number;
  /**
   * A file's ctime in ns (statx), for the keys of the files that could run: the runtime's stat gives whole
   * seconds only. Without it (lint, which stamps nothing): seconds.
   */
  ctimeNs?: (path: string) => bigint;
};

/** dpkg's database is missing or unreadable: never an empty trusted set. */
export class DpkgDatabaseError extends InputError {
  override name = "DpkgDatabaseError";
}

type FileKey = string;
type Cache = {
  version: 2;
  diversions: string;
  /** By info name: the md5sums file's key, how many files it lists, those that could run with their MD5. */
  packages: Record<string, { key: string; listed: number; candidates: PackageFile[] }>;
  files: Record<string, { key: FileKey; md5: string }>;
};

const RACY_MS = 1000;

/** The files `trust: dpkg` lets run on this host now (see the top of this file). */
export function resolveDpkgTrust(options: DpkgTrustOptions = {}): DpkgTrust {
  // DPKG_ADMINDIR: dpkg's own variable for a database elsewhere.
  const adminDir = options.adminDir ?? (Deno.env.get("DPKG_ADMINDIR") || DPKG_ADMIN_DIR);
  const root = options.root ?? "";
  const status = readDatabase(join(adminDir, "status"));
  const diversionsPath = join(adminDir, "diversions");
  const diversionsText = readOptional(diversionsPath) ?? "";
  const diversions = new Map<string, Diversion>(parseDiversions(diversionsText).map((d) => [d.from, d]));
  const old = options.cacheFile === undefined ? undefined : readCache(options.cacheFile);
  const diversionsKey = statKey(diversionsPath) ?? "none";
  const cache: Cache = { version: 2, diversions: diversionsKey, packages: {}, files: {} };
  const reuseLists = old?.diversions === diversionsKey;
  const packages = installedPackages(status);
  const realDirs = new Map<string, string | undefined>();
  const stats = { packages: packages.length, listed: 0, missing: 0, candidates: 0, hashed: 0 };
  const untrusted: UntrustedFile[] = [];
  /** Candidates by real path: the MD5 dpkg expects, the package, the stat key. */
  const wanted = new Map<string, { md5: string; pkg: string; key: FileKey; size: number; path: string }>();

  for (const pkg of packages) {
    const md5sumsPath = join(adminDir, "info", `${pkg.infoName}.md5sums`);
    const listKey = statKey(md5sumsPath);
    // A package whose md5sums file is as the cache saw it: its candidates (and their MD5s) from the cache,
    // the file not even read.
    const known = reuseLists && listKey !== undefined ? old?.packages[pkg.infoName] : undefined;
    let files: PackageFile[];
    let listed: number;
    const reused = known?.key === listKey;
    if (known && reused) {
      files = known.candidates;
      listed = known.listed;
    } else {
      const md5sumsText = listKey === undefined ? undefined : readOptional(md5sumsPath);
      if (md5sumsText === undefined) {
        noChecksums(pkg.name, join(adminDir, "info", `${pkg.infoName}.list`), root, untrusted, stats);
        continue;
      }
      files = parseMd5sums(md5sumsText).files;
      listed = files.length;
    }
    stats.listed += listed;
    const found: PackageFile[] = [];
    for (const file of files) {
      const onDisk = root + divertedPath(file.path, pkg.name, diversions);
      const real = realPath(onDisk, realDirs);
      let info: Deno.FileInfo;
      try {
        info = Deno.lstatSync(real ?? onDisk);
      } catch {
        stats.missing++;
        continue;
      }
      if (!info.isFile) continue;
      if (!reused && !couldRun(real ?? onDisk, info)) continue;
      const key = fileKey(real ?? onDisk, info, options.ctimeNs);
      found.push(file);
      if (real === undefined) continue;
      const other = wanted.get(real);
      if (other && other.md5 === file.md5) continue;
      if (other) {
        // Two packages ship different content at one real path: only one of them can be on disk.
        if (old?.files[real]?.md5 === other.md5) continue;
      }
      wanted.set(real, { md5: file.md5, pkg: pkg.name, key, size: info.size, path: onDisk });
    }
    cache.packages[pkg.infoName] = { key: listKey!, listed, candidates: found };
  }
  stats.candidates = wanted.size;

  const toHash: { path: string; size: number }[] = [];
  for (const [real, want] of wanted) {
    const cached = old?.files[real];
    if (cached?.key !== want.key) toHash.push({ path: real, size: want.size });
  }
  const hashed = md5Files(toHash);
  stats.hashed = toHash.length;
  const now = (options.now ?? Date.now)();
  const trusted: TrustedFile[] = [];
  for (const [real, want] of wanted) {
    const fresh = hashed.get(real);
    const md5 = fresh ?? old?.files[real]?.md5;
    if (fresh !== undefined) {
      const after = statKeyOf(real, options.ctimeNs);
      if (after !== want.key) {
        untrusted.push({ path: want.path, package: want.pkg, reason: "changed-while-hashed" });
        continue;
      }
    } else if (old?.files[real]?.key !== want.key || md5 === undefined) {
      untrusted.push({ path: want.path, package: want.pkg, reason: "unreadable" });
      continue;
    }
    if (!racy(want.key, now)) cache.files[real] = { key: want.key, md5: md5! };
    if (md5 === want.md5) trusted.push({ path: real, ctimeNs: keyCtime(want.key) });
    else untrusted.push({ path: want.path, package: want.pkg, reason: "md5-mismatch" });
  }
  if (options.cacheFile !== undefined) writeCache(options.cacheFile, cache);
  untrusted.sort((a, b) => a.path < b.path ? -1 : a.path > b.path ? 1 : 0);
  trusted.sort((a, b) => a.path < b.path ? -1 : a.path > b.path ? 1 : 0);
  return { trusted, untrusted, stats };
}

/** A package with no md5sums: each file of its list that could run is untrusted (nothing to check it by). */
function noChecksums(
  pkg: string,
  listPath: string,
  root: string,
  untrusted: UntrustedFile[],
  stats: DpkgTrust["stats"],
): void {
  const list = readOptional(listPath);
  if (list === undefined) return;
  for (const path of list.split("\n")) {
    if (path === "" || path === "/.") continue;
    let info: Deno.FileInfo;
    try {
      info = Deno.lstatSync(root + path);
    } catch {
      continue;
    }
    if (!info.isFile) continue;
    stats.listed++;
    if (couldRun(root + path, info)) untrusted.push({ path: root + path, package: pkg, reason: "no-md5" });
  }
}

function readDatabase(path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch (error) {
    const why = error instanceof Deno.errors.NotFound ? "does not exist" : `cannot be read: ${error}`;
    throw new DpkgDatabaseError(
      `trust: dpkg needs dpkg's database, and ${path} ${why}: nothing was applied (is this a Debian host?)`,
    );
  }
}

function readOptional(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw new DpkgDatabaseError(`trust: dpkg cannot read ${path}: ${error}: nothing was applied`);
  }
}

/** The path with its directory's symlinks resolved (one realpath per directory), or undefined when gone. */
function realPath(path: string, dirs: Map<string, string | undefined>): string | undefined {
  const dir = dirname(path);
  let real = dirs.get(dir);
  if (!dirs.has(dir)) {
    try {
      real = Deno.realPathSync(dir);
    } catch {
      real = undefined;
    }
    dirs.set(dir, real);
  }
  if (real === undefined) return undefined;
  return `${real === "/" ? "" : real}/${path.slice(dir.length + 1)}`;
}

const ELF_MAGIC = [0x7f, 0x45, 0x4c, 0x46];

/** A shared object's name: `libz.so`, `libz.so.1.2.13`, `_ssl.cpython-311-x86_64-linux-gnu.so`. */
const SHARED_OBJECT = /\.so(\.\d+)*$/;

/**
 * Whether a regular file could be run or mapped executable: an exec bit, or a shared object's name and an
 * ELF header (libraries ship without exec bits). Only those names are opened: reading the head of every
 * file a system's packages ship (a hundred thousand) would cost seconds at each cold resolution.
 */
function couldRun(path: string, info: Deno.FileInfo): boolean {
  if (((info.mode ?? 0) & 0o111) !== 0) return true;
  if (info.size < 4 || !SHARED_OBJECT.test(path)) return false;
  try {
    using file = Deno.openSync(path, { read: true });
    const head = new Uint8Array(4);
    return file.readSync(head) === 4 && ELF_MAGIC.every((byte, i) => head[i] === byte);
  } catch {
    // Unreadable: it cannot be checked, so it is listed by the MD5 step as unreadable.
    return true;
  }
}

/** (dev, ino, size, mtime in ms, ctime in ns): what a change of the file's content changes. */
function fileKey(path: string, info: Deno.FileInfo, ctimeNs?: (path: string) => bigint): FileKey {
  const ctime = ctimeNs ? ctimeNs(path) : BigInt(info.ctime?.getTime() ?? 0) * 1_000_000n;
  return `${info.dev}:${info.ino}:${info.size}:${info.mtime?.getTime()}:${ctime}`;
}

function statKeyOf(path: string, ctimeNs?: (path: string) => bigint): FileKey | undefined {
  try {
    return fileKey(path, Deno.lstatSync(path), ctimeNs);
  } catch {
    return undefined;
  }
}

/** A database file's key (no ctime in ns needed: dpkg replaces its files, a new inode). */
function statKey(path: string): string | undefined {
  return statKeyOf(path);
}

/** The ctime (ns) a key holds. */
function keyCtime(key: FileKey): bigint {
  return BigInt(key.split(":").at(-1) ?? "0");
}

/**
 * A key whose ctime is within RACY_MS of now: the kernel's ctime is as coarse as its clock tick (and the
 * runtime's stat, without `ctimeNs`, gives seconds), so a change just after the check could keep it.
 */
function racy(key: FileKey, now: number): boolean {
  return now - Number(keyCtime(key) / 1_000_000n) < RACY_MS + 1000;
}

function readCache(path: string): Cache | undefined {
  try {
    const value = JSON.parse(Deno.readTextFileSync(path)) as Cache;
    return value?.version === 2 && typeof value.files === "object" && typeof value.packages === "object"
      ? value
      : undefined;
  } catch {
    // Missing or damaged: everything is checked again.
    return undefined;
  }
}

function writeCache(path: string, cache: Cache): void {
  const temp = `${path}.tmp-${Deno.pid}`;
  try {
    Deno.writeTextFileSync(temp, JSON.stringify(cache), { mode: 0o600 });
    Deno.renameSync(temp, path);
  } catch {
    // A cache that cannot be written costs time at the next apply, nothing else.
    try {
      Deno.removeSync(temp);
    } catch { /* not there */ }
  }
}
