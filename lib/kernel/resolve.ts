import { ifIndex, statxMount, SysError } from "../../ffi/mod.ts";
import type { InodeTarget, RuleSetPlan } from "../policy/plan.ts";
import { cgroup2Root } from "./cgroup.ts";
import { kernelDev, mountDev } from "./dev.ts";
import type { ResolvedInode, ResolvedRuleSet } from "./entries.ts";
import { layerPaths, overlayMount } from "./overlay.ts";

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
};

/**
 * Resolves a plan's names at apply time: paths to (dev, ino) following symlinks (so a symlink or bind
 * mount of a denied file stays denied), directories marked recursive to every file under them, cgroup
 * paths to cgroup ids, interfaces to indexes. Nothing touches BPF maps here.
 */
export function resolvePlan(plan: RuleSetPlan, options: ResolveOptions = {}): ResolvedRuleSet {
  const needsCgroups = plan.scope.include.length + plan.scope.exempt.length > 0;
  const root = needsCgroups ? (options.cgroupRoot ?? cgroup2Root()) : "";
  const mountinfo = plan.files.length + plan.exec.length > 0
    ? Deno.readTextFileSync("/proc/self/mountinfo")
    : "";
  return {
    plan,
    files: plan.files.flatMap((target) => resolveInodes(target, plan, mountinfo, options.warn)),
    exec: plan.exec.flatMap((target) => resolveInodes(target, plan, mountinfo, options.warn)),
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
  };
}

function resolveInodes(
  target: InodeTarget,
  plan: RuleSetPlan,
  mountinfo: string,
  warn: ((message: string) => void) | undefined,
): ResolvedInode[] {
  const rule = plan.rules[target.ruleId]?.id ?? `#${target.ruleId}`;
  let stat: Deno.FileInfo;
  try {
    stat = Deno.statSync(target.path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound && target.optional) {
      warn?.(`Rule ${rule}: ${target.path} does not exist; skipped (optional)`);
      return [];
    }
    const reason = error instanceof Deno.errors.NotFound ? "does not exist" : String(error);
    throw new ResolveError(`Rule ${rule}: ${target.path} ${reason}`, target.ruleId);
  }
  if (stat.isDirectory) {
    if (!target.recursive) {
      throw new ResolveError(
        `Rule ${rule}: ${target.path} is a directory (set recursive: true)`,
        target.ruleId,
      );
    }
    return walkFiles(target.path).flatMap((path) =>
      fileIdentities(path, mountinfo).map((identity) => ({ ...identity, ruleId: target.ruleId, path }))
    );
  }
  return fileIdentities(target.path, mountinfo).map((identity) => ({
    ...identity,
    ruleId: target.ruleId,
    path: target.path,
  }));
}

export function walkFiles(dir: string): string[] {
  const files: string[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) files.push(...walkFiles(path));
    else if (entry.isFile) files.push(path);
  }
  return files;
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
export function fileIdentity(path: string, mountinfo: string): { dev: number; ino: bigint } {
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

/**
 * Every (dev, ino) a file is known by: its own and, when it lies on an overlay mount, that of its copy in
 * each layer where it exists (upper and lower, through nested overlays too), so that reading it from a layer
 * directory or through another overlay of the same layers is denied as well.
 */
export function fileIdentities(path: string, mountinfo: string, depth = 0): { dev: number; ino: bigint }[] {
  const identities = [fileIdentity(path, mountinfo)];
  const overlay = depth < MAX_OVERLAY_DEPTH ? overlayMount(statxMount(path).mountId, mountinfo) : undefined;
  if (overlay) {
    for (const layerPath of layerPaths(overlay, Deno.realPathSync(path))) {
      let info: Deno.FileInfo;
      try {
        info = Deno.lstatSync(layerPath);
      } catch (error) {
        if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) continue;
        throw error;
      }
      // A whiteout (a 0:0 character device) hides a lower file: not a view of this one.
      if (!info.isFile) continue;
      identities.push(...fileIdentities(layerPath, mountinfo, depth + 1));
    }
  }
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
