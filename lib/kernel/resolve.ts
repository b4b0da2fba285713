import { createHash } from "node:crypto";
import { ifIndex, inodeGeneration, statxMount, statxStamp, SysError } from "../../ffi/mod.ts";
import type { AllowTarget, InodeTarget, RuleSetPlan } from "../policy/plan.ts";
import { cgroup2Root } from "./cgroup.ts";
import { kernelDev, mountDev } from "./dev.ts";
import type { AllowedInode, ResolvedInode, ResolvedRuleSet, ResolvedSubject } from "./entries.ts";
import { layerPaths, type OverlayMount, overlayMount } from "./overlay.ts";
import {
  DEFAULT_MAX_ENTRIES,
  TreeTooLargeError,
  type Unreadable,
  type WalkReport,
  walkTree,
} from "./tree.ts";
import { printable } from "../text/printable.ts";

/** A name in a plan that does not resolve on this host; names the rule. */
export class ResolveError extends Error {
  override name = "ResolveError";
  readonly ruleId: number;
  constructor(message: string, ruleId: number) {
    super(message);
    this.ruleId = ruleId;
  }
}

export type ResolveOptions = {
  /** Cgroup v2 mount point; found in /proc/mounts by default. */
  cgroupRoot?: string;
  /** Called for optional paths that do not exist. */
  warn?: (message: string) => void;
  /**
   * A rule refresh that applies what it can: a file or exec rule whose path no longer resolves takes what
   * this returns (its last inodes) instead of failing the whole resolution.
   */
  keep?: (target: InodeTarget, area: "file" | "exec", error: Error) => ResolvedInode[];
  /** exec.allow's inodes to use as they are (a refresh keeps the applied set), instead of resolving them. */
  allowed?: AllowedInode[];
};

/**
 * Resolves a plan's names at apply time: paths to (dev, ino) following symlinks (so a symlink or bind
 * mount of a denied file stays denied), directories marked recursive to every file under them, cgroup
 * paths to cgroup ids, interfaces to indexes. Nothing touches BPF maps here.
 */
export function resolvePlan(plan: RuleSetPlan, options: ResolveOptions = {}): ResolvedRuleSet {
  const needsCgroups = plan.scope.include.length + plan.scope.exempt.length > 0;
  const root = needsCgroups ? (options.cgroupRoot ?? cgroup2Root()) : "";
  // A refresh brings the allowed set as applied (`options.allowed`): nothing of it is resolved.
  const allow = plan.execDefaultDeny && !options.allowed ? plan.execAllow ?? [] : [];
  const mountinfo = plan.files.length + plan.exec.length + allow.length + (plan.subjects?.length ?? 0) +
        (plan.protect?.length ?? 0) > 0
    ? Deno.readTextFileSync("/proc/self/mountinfo")
    : "";
  return {
    plan,
    files: plan.files.flatMap((target) => resolveOrKeep(target, "file", plan, mountinfo, options)),
    exec: plan.exec.flatMap((target) => resolveOrKeep(target, "exec", plan, mountinfo, options)),
    ...plan.execDefaultDeny && {
      execAllow: options.allowed ??
        allow.flatMap((target) => resolveAllowed(target, plan, mountinfo, options)),
    },
    protect: (plan.protect ?? []).flatMap((target) =>
      options.keep
        ? keepOnError(() => resolveProtected(target, plan, mountinfo, options.warn), target, options.keep)
        : resolveProtected(target, plan, mountinfo, options.warn)
    ),
    scope: {
      include: plan.scope.include.map((path) => cgroupId(root, path)),
      exempt: plan.scope.exempt.map((path) => cgroupId(root, path)),
    },
    interfaces: plan.ingress.interfaces.map((iface) => {
      if (!hasInterface(iface.name)) {
        throw new ResolveError(`Interface ${iface.name} does not exist here (see ip link)`, iface.ruleId);
      }
      return { ...iface, ifindex: ifIndex(iface.name) };
    }),
    ...plan.forwarded && { forward: forwardInterfaces() },
    ...plan.subjects?.length && { subjects: resolveSubjects(plan, mountinfo, options.warn) },
  };
}

/**
 * The programs rules name, by inode: each exe followed through symlinks, with every (dev, ino) it is known
 * by (overlay layers too). A missing exe is bad input unless every rule naming it says optional (its rules
 * then never match); two exes that are the same file (a hard link) cannot be told apart by the kernel.
 */
export function resolveSubjects(
  plan: RuleSetPlan,
  mountinfo: string,
  warn?: (message: string) => void,
): ResolvedSubject[] {
  const resolved: ResolvedSubject[] = [];
  const seen = new Map<string, string>();
  for (const subject of plan.subjects ?? []) {
    const rule = plan.rules[subject.ruleId]?.id ?? `#${subject.ruleId}`;
    let stat: Deno.FileInfo;
    try {
      stat = Deno.statSync(subject.exe);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound && subject.optional) {
        warn?.(
          `Rule ${rule}: exe ${printable(subject.exe)} does not exist; its rules are skipped (optional)`,
        );
        continue;
      }
      const reason = error instanceof Deno.errors.NotFound ? "does not exist" : String(error);
      throw new ResolveError(`Rule ${rule}: exe ${printable(subject.exe)} ${reason}`, subject.ruleId);
    }
    if (!stat.isFile) {
      throw new ResolveError(`Rule ${rule}: exe ${printable(subject.exe)} is not a file`, subject.ruleId);
    }
    for (const identity of fileIdentities(subject.exe, mountinfo)) {
      const key = `${subject.children}:${identity.dev}:${identity.ino}`;
      const other = seen.get(key);
      if (other !== undefined && other !== subject.exe) {
        throw new ResolveError(
          `Rule ${rule}: exe ${printable(subject.exe)} is the same file as ${printable(other)} ` +
            `(a hard link or a symlink): the kernel tells programs apart by inode; name it once`,
          subject.ruleId,
        );
      }
      seen.set(key, subject.exe);
      resolved.push({ ...identity, subject: subject.subject, children: subject.children, path: subject.exe });
    }
  }
  return resolved;
}

/**
 * The interfaces of this thread's network namespace but lo, which forwarded packets leave by: read from
 * /proc/thread-self/net/dev (sysfs shows the namespace it was mounted in, not the thread's).
 */
export function forwardInterfaces(): { ifindex: number; name: string }[] {
  const lines = Deno.readTextFileSync("/proc/thread-self/net/dev").split("\n").slice(2);
  const names = lines.map((line) => line.split(":")[0]!.trim()).filter((name) =>
    name !== "" && name !== "lo"
  );
  // An interface removed between the read and its index: nothing to attach to.
  return names.filter(hasInterface).map((name) => ({ ifindex: ifIndex(name), name })).sort((a, b) =>
    a.ifindex - b.ifindex
  );
}

function resolveOrKeep(
  target: InodeTarget,
  area: "file" | "exec",
  plan: RuleSetPlan,
  mountinfo: string,
  options: ResolveOptions,
): ResolvedInode[] {
  if (!options.keep) return resolveInodes(target, plan, mountinfo, options.warn);
  try {
    return resolveInodes(target, plan, mountinfo, options.warn);
  } catch (error) {
    // Whatever stopped it (gone, a directory now, past maxFiles, removed during the walk).
    return options.keep(target, area, error instanceof Error ? error : new Error(String(error)));
  }
}

/**
 * The inodes an exec.allow entry lets run: a path entry's as a deny rule's are found; a sha256 entry's one
 * file, whose content must have that hash (else ResolveError: nothing is applied), stamped with its ctime
 * as hashed. A refresh (`keep` given) never fails on an allow entry: one that no longer resolves, or whose
 * file no longer has its hash, allows nothing until the next apply, and is reported through `keep`.
 */
function resolveAllowed(
  target: AllowTarget,
  plan: RuleSetPlan,
  mountinfo: string,
  options: ResolveOptions,
): AllowedInode[] {
  const resolve = () =>
    target.sha256 === undefined
      ? resolveInodes(target, plan, mountinfo, options.warn, true)
      : hashedInodes(target, plan, mountinfo, options.warn);
  if (!options.keep) return resolve();
  try {
    return resolve();
  } catch (error) {
    // Reported as a rule the refresh could not resolve; no inode of it is kept (none is recorded for it).
    options.keep(target, "exec", error instanceof Error ? error : new Error(String(error)));
    return [];
  }
}

const HASH_CHUNK = 1 << 20;

/** A sha256 entry's file: every (dev, ino) it is known by, each stamped with the ctime it had when hashed. */
function hashedInodes(
  target: AllowTarget,
  plan: RuleSetPlan,
  mountinfo: string,
  warn: ((message: string) => void) | undefined,
): AllowedInode[] {
  const rule = plan.rules[target.ruleId]?.id ?? `#${target.ruleId}`;
  const fail = (what: string) =>
    new ResolveError(`Rule ${rule}: ${printable(target.path)} ${what}`, target.ruleId);
  let before: { ino: bigint; ctimeNs: bigint };
  try {
    before = statxStamp(target.path);
  } catch (error) {
    if (error instanceof SysError && error.errnoName === "ENOENT") {
      if (target.optional) {
        warn?.(`Rule ${rule}: ${target.path} does not exist; skipped (optional)`);
        return [];
      }
      throw fail("does not exist");
    }
    throw error;
  }
  if (!Deno.statSync(target.path).isFile) throw fail("is not a regular file (a sha256 entry names one file)");
  const actual = sha256OfFile(target.path);
  const after = statxStamp(target.path);
  if (after.ino !== before.ino || after.ctimeNs !== before.ctimeNs) {
    throw fail("changed while it was hashed; apply again");
  }
  if (actual !== target.sha256) {
    throw fail(`has sha256 ${actual}, not the ${target.sha256} the entry names: nothing was applied`);
  }
  return fileIdentities(target.path, mountinfo).map((identity) => ({
    ...stamped(identity, target.path),
    ruleId: target.ruleId,
    path: target.path,
    ctimeNs: before.ctimeNs,
  }));
}

/** The hex SHA-256 of a file's content, read in chunks (a runtime binary is tens of MB). */
export function sha256OfFile(path: string): string {
  const hash = createHash("sha256");
  using file = Deno.openSync(path, { read: true });
  const chunk = new Uint8Array(HASH_CHUNK);
  for (;;) {
    const read = file.readSync(chunk);
    if (read === null) break;
    hash.update(chunk.subarray(0, read));
  }
  return hash.digest("hex");
}

function keepOnError(
  resolve: () => ResolvedInode[],
  target: InodeTarget,
  keep: NonNullable<ResolveOptions["keep"]>,
): ResolvedInode[] {
  try {
    return resolve();
  } catch (error) {
    return keep(target, "file", error instanceof Error ? error : new Error(String(error)));
  }
}

/**
 * A rule target's stat: undefined (after a warning) for a missing optional target, a ResolveError naming
 * the rule for any other failure.
 */
function statTarget(
  target: InodeTarget,
  rule: string,
  warn: ((message: string) => void) | undefined,
): Deno.FileInfo | undefined {
  try {
    return Deno.statSync(target.path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound && target.optional) {
      warn?.(`Rule ${rule}: ${target.path} does not exist; skipped (optional)`);
      return undefined;
    }
    const reason = error instanceof Deno.errors.NotFound ? "does not exist" : String(error);
    throw new ResolveError(`Rule ${rule}: ${target.path} ${reason}`, target.ruleId);
  }
}

/**
 * A files.protect target's inodes: the file's (every identity, overlay layers included), or a directory's
 * own, whose entries are then fixed; with `recursive`, also every file and directory below it, so that
 * nothing can be created, linked or renamed anywhere in the tree while it is protected.
 */
function resolveProtected(
  target: InodeTarget,
  plan: RuleSetPlan,
  mountinfo: string,
  warn: ((message: string) => void) | undefined,
): ResolvedInode[] {
  const rule = plan.rules[target.ruleId]?.id ?? `#${target.ruleId}`;
  const stat = statTarget(target, rule, warn);
  if (!stat) return [];
  const found: ResolvedInode[] = fileIdentities(target.path, mountinfo).map((identity) => ({
    ...stamped(identity, target.path),
    ruleId: target.ruleId,
    path: target.path,
  }));
  if (!stat.isDirectory || !target.recursive) return found;
  const report = walkRuleTree(target, rule, mountinfo, (identities, path) => {
    for (const identity of identities) found.push({ ...stamped(identity, path), ruleId: target.ruleId });
  }, (path) => {
    // A directory removed during the walk holds nothing to protect.
    const identity = currentIdentity(path, mountinfo);
    if (identity) found.push({ ...stamped(identity, path), ruleId: target.ruleId });
  });
  if (report.unreadable.count > 0) warn?.(describeUnreadable(rule, target.path, report.unreadable));
  return found;
}

/**
 * An identity with the i_generation of the inode `path` names, when it is that inode and its filesystem
 * shows one (see inodeGeneration): the hooks then hold the rule to that very inode, not to a later file
 * that reuses its number.
 */
function stamped<T extends Identity>(identity: T, path: string): T & { generation?: number } {
  const generation = inodeGeneration(path, identity.ino);
  return generation === undefined ? identity : { ...identity, generation };
}

/** A rule's inodes (`stamp`: with their i_generation, for the rules that allow or protect). */
function resolveInodes(
  target: InodeTarget,
  plan: RuleSetPlan,
  mountinfo: string,
  warn: ((message: string) => void) | undefined,
  stamp = false,
): ResolvedInode[] {
  const mark = (identity: Identity, path: string) => stamp ? stamped(identity, path) : identity;
  const rule = plan.rules[target.ruleId]?.id ?? `#${target.ruleId}`;
  const stat = statTarget(target, rule, warn);
  if (!stat) return [];
  if (stat.isDirectory) {
    if (!target.recursive) {
      throw new ResolveError(
        `Rule ${rule}: ${target.path} is a directory (set recursive: true)`,
        target.ruleId,
      );
    }
    const found: ResolvedInode[] = [];
    const report = walkRuleTree(target, rule, mountinfo, (identities, path) => {
      for (const identity of identities) found.push({ ...mark(identity, path), ruleId: target.ruleId });
    });
    if (report.unreadable.count > 0) warn?.(describeUnreadable(rule, target.path, report.unreadable));
    return found;
  }
  return fileIdentities(target.path, mountinfo).map((identity) => ({
    ...mark(identity, target.path),
    ruleId: target.ruleId,
    path: target.path,
  }));
}

/**
 * Walks a recursive rule's directory (see tree.ts) and calls `onFile` with every (dev, ino) each regular
 * file under it is known by (overlay layers included) and its path. Past the rule's cap: ResolveError.
 */
export function walkRuleTree(
  target: InodeTarget,
  rule: string,
  mountinfo: string,
  onFile: (identities: Identity[], path: string) => void,
  onDirectory?: (path: string) => void,
): WalkReport {
  const mounts = new Map<number, { dev: number | undefined; overlay: OverlayMount | undefined }>();
  let realRoot: string | undefined;
  const maxEntries = target.maxFiles ?? DEFAULT_MAX_ENTRIES;
  try {
    return walkTree(target.path, {
      file(directory, name, path) {
        const stat = directory.stat(name);
        let mount = mounts.get(stat.mountId);
        if (mount === undefined) {
          mount = { dev: mountDev(stat.mountId, mountinfo), overlay: overlayMount(stat.mountId, mountinfo) };
          mounts.set(stat.mountId, mount);
        }
        const own = { dev: mount.dev ?? stat.dev, ino: stat.ino };
        if (mount.overlay === undefined) return onFile([own], path);
        // No symlink is followed below the root: its real path and the relative part make the file's.
        realRoot ??= Deno.realPathSync(target.path);
        const realPath = realRoot + path.slice(target.path.length);
        onFile(distinct([own, ...layerIdentities(mount.overlay, realPath, mountinfo, 0)]), path);
      },
      ...onDirectory && { directory: onDirectory },
    }, { maxEntries });
  } catch (error) {
    if (!(error instanceof TreeTooLargeError)) throw error;
    throw new ResolveError(
      `Rule ${rule}: ${printable(target.path)} holds more than ${maxEntries} ${error.what} (maxFiles ` +
        `${maxEntries}): nothing was applied; raise maxFiles on the rule or deny a narrower directory`,
      target.ruleId,
    );
  }
}

/** One warning for every entry under a recursive rule's directory that could not be read. */
export function describeUnreadable(rule: string, dir: string, unreadable: Unreadable): string {
  const reasons = Object.entries(unreadable.byError).map(([name, count]) => `${name} ${count}`).join(", ");
  return `Rule ${rule}: ${unreadable.count} entries under ${printable(dir)} could not be read and are not ` +
    `covered (${reasons}; first: ${printable(unreadable.first ?? dir)})`;
}

/** Whether this network namespace has an interface of that name. */
export function hasInterface(name: string): boolean {
  try {
    ifIndex(name);
    return true;
  } catch {
    return false;
  }
}

/**
 * (dev, ino) of a file as the hooks see it: the inode, on the device of the superblock of the mount that
 * holds it (statx's mount id looked up in /proc/self/mountinfo), falling back to stat's device.
 */
export function fileIdentity(path: string, mountinfo: string): Identity {
  const { ino, mountId } = statxMount(path);
  return { dev: mountDev(mountId, mountinfo) ?? kernelDev(Deno.statSync(path).dev), ino };
}

/** fileIdentity, or undefined when nothing is at `path` now (or a component is not a directory). */
export function currentIdentity(path: string, mountinfo: string): { dev: number; ino: bigint } | undefined {
  try {
    return fileIdentity(path, mountinfo);
  } catch (error) {
    if (error instanceof SysError && (error.errnoName === "ENOENT" || error.errnoName === "ENOTDIR")) {
      return undefined;
    }
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) return undefined;
    throw error;
  }
}

const MAX_OVERLAY_DEPTH = 8;

type Identity = { dev: number; ino: bigint };

/**
 * Every (dev, ino) a file is known by: its own and, when it lies on an overlay mount, that of its copy in
 * each layer where it exists (upper and lower, through nested overlays too), so that reading it from a layer
 * directory or through another overlay of the same layers is denied as well.
 */
export function fileIdentities(path: string, mountinfo: string, depth = 0): Identity[] {
  const own = fileIdentity(path, mountinfo);
  const overlay = depth < MAX_OVERLAY_DEPTH ? overlayMount(statxMount(path).mountId, mountinfo) : undefined;
  if (!overlay) return [own];
  return distinct([own, ...layerIdentities(overlay, Deno.realPathSync(path), mountinfo, depth)]);
}

/** The identities of a file's copies in the layers of the overlay that holds it (at `realPath`). */
function layerIdentities(
  overlay: OverlayMount,
  realPath: string,
  mountinfo: string,
  depth: number,
): Identity[] {
  const identities: Identity[] = [];
  for (const layerPath of layerPaths(overlay, realPath)) {
    let info: Deno.FileInfo;
    try {
      info = Deno.lstatSync(layerPath);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) continue;
      throw error;
    }
    // A whiteout (a 0:0 character device) hides a lower file: not a view of this one.
    if (!info.isFile) continue;
    for (const identity of fileIdentities(layerPath, mountinfo, depth + 1)) identities.push(identity);
  }
  return identities;
}

function distinct(identities: Identity[]): Identity[] {
  const seen = new Set<string>();
  return identities.filter(({ dev, ino }) => !seen.has(`${dev}:${ino}`) && seen.add(`${dev}:${ino}`));
}

/** A cgroup v2 id is the inode number of its directory. */
export function cgroupId(root: string, path: string): bigint {
  const full = `${root}/${path.replace(/^\/+/, "")}`.replace(/\/+$/, "");
  try {
    return BigInt(Deno.statSync(full).ino ?? 0);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new ResolveError(`Cgroup ${path} does not exist under ${root}`, 0);
    }
    throw error;
  }
}
