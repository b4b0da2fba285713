/**
 * Paths for the cgroup ids kernel events carry: a cgroup v2 id is the inode number of its directory under
 * the cgroup v2 mount. The tree is scanned on a miss, at most once a second, so a flood of events from a
 * cgroup that is gone costs no more than one scan. (Interface names come from the agent's own applies:
 * XDP reports only from interfaces it attached to, and /sys/class/net may belong to another namespace.)
 */

import { cgroup2Root } from "../kernel/cgroup.ts";

const RESCAN_MS = 1000;

class Names {
  #names = new Map<number, string>();
  #scannedAt = -Infinity;
  readonly #scan: () => Map<number, string>;

  constructor(scan: () => Map<number, string>) {
    this.#scan = scan;
  }

  lookup(id: number): string | undefined {
    const known = this.#names.get(id);
    if (known !== undefined || performance.now() - this.#scannedAt < RESCAN_MS) return known;
    this.#scannedAt = performance.now();
    try {
      this.#names = this.#scan();
    } catch {
      // A name is a courtesy: an event is reported with its number when the scan fails.
    }
    return this.#names.get(id);
  }
}

/** Cgroup paths by id, relative to the cgroup v2 root as policies name them (`/system.slice/x.service`). */
export function cgroupPaths(root = cgroup2Root()): (id: number) => string | undefined {
  const names = new Names(() => {
    const found = new Map<number, string>();
    const walk = (dir: string, relative: string) => {
      const ino = Deno.statSync(dir).ino;
      if (ino !== null) found.set(ino, relative || "/");
      for (const entry of Deno.readDirSync(dir)) {
        if (!entry.isDirectory) continue;
        try {
          walk(`${dir}/${entry.name}`, `${relative}/${entry.name}`);
        } catch {
          // Removed while walking.
        }
      }
    };
    walk(root, "");
    return found;
  });
  return (id) => names.lookup(id);
}

/**
 * Interface names by index, each asked of the kernel (`lookup`) at most once a second, found or not: a flood
 * of forwarded packets costs no system call per event, and a renamed interface shows its new name within a
 * second.
 */
export function interfaceNames(
  lookup: (ifindex: number) => string | undefined,
  now: () => number = () => performance.now(),
): (ifindex: number) => string | undefined {
  const known = new Map<number, { name: string | undefined; at: number }>();
  return (ifindex) => {
    const at = now();
    const entry = known.get(ifindex);
    if (entry !== undefined && at - entry.at < RESCAN_MS) return entry.name;
    // Indexes are few; a host that made and removed many interfaces starts over rather than grows.
    if (known.size >= 4096) known.clear();
    const name = lookup(ifindex);
    known.set(ifindex, { name, at });
    return name;
  };
}
