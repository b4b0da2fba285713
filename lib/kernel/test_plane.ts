/**
 * A throw-away data plane for `policy test`: its own bpffs mounted on a temporary directory (never
 * /sys/fs/bpf, so never the live `<bpffs>/aegisbpf` pins), its own programs, and socket programs attached
 * only to a temporary cgroup it makes. The names of both carry the pid of the process that made them: a
 * later run removes what a killed one left (`removeLeftovers`).
 */
import { mountPseudoFs, unmountLazily } from "../../ffi/mod.ts";
import type { Area } from "../policy/plan.ts";
import { cgroup2Root } from "./cgroup.ts";
import { DataPlane } from "./dataplane.ts";
import { isLeftover } from "./leftover.ts";

/** The prefix of the bpffs directory and of the cgroup; never the live pin directory's name. */
export const TEST_PLANE_PREFIX = "aegisbpf-policy-test-";

export class TestPlane implements Disposable {
  readonly bpffs: string;
  /** The cgroup's absolute path, and its path below the cgroup v2 root (what a policy's scope names). */
  readonly cgroup: string;
  readonly cgroupRelative: string;
  #plane: DataPlane | undefined;
  #closed = false;

  private constructor(bpffs: string, cgroup: string, cgroupRelative: string) {
    this.bpffs = bpffs;
    this.cgroup = cgroup;
    this.cgroupRelative = cgroupRelative;
  }

  /** Makes the directory, the bpffs mount and the cgroup, after removing leftovers of killed runs. */
  static create(): TestPlane {
    removeLeftovers();
    const name = `${TEST_PLANE_PREFIX}${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
    const root = cgroup2Root();
    const bpffs = `${Deno.env.get("TMPDIR") ?? "/tmp"}/${name}`;
    Deno.mkdirSync(bpffs, { mode: 0o700 });
    const plane = new TestPlane(bpffs, `${root}/${name}`, `/${name}`);
    try {
      mountPseudoFs("bpf", bpffs);
      Deno.mkdirSync(plane.cgroup);
    } catch (error) {
      plane.close();
      throw error;
    }
    return plane;
  }

  /** Loads the programs of `areas` and attaches them (the socket programs to the test cgroup only). */
  open(areas: readonly Area[]): DataPlane {
    this.#plane = DataPlane.open({ bpffs: this.bpffs, cgroupPath: this.cgroup, areas, lsm: "auto" });
    return this.#plane;
  }

  /** Moves process `pid` into the test cgroup. */
  join(pid: number): void {
    Deno.writeTextFileSync(`${this.cgroup}/cgroup.procs`, `${pid}\n`);
  }

  /** Detaches and removes everything; safe to call twice, and from a signal handler (all synchronous). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // The mount and the cgroup go even when the plane's own close fails (a signal that lands while an
    // apply's inner maps are installed on worker threads): a SIGTERM must leave nothing behind.
    let failed: unknown;
    try {
      this.#plane?.close();
    } catch (error) {
      failed = error;
    }
    removePlane(this.bpffs, this.cgroup);
    if (failed !== undefined) throw failed;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

function removePlane(bpffs: string, cgroup: string): void {
  const problems: unknown[] = [];
  const attempt = (step: () => void) => {
    try {
      step();
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) problems.push(error);
    }
  };
  if (mounted(bpffs)) {
    attempt(() => DataPlane.detach(bpffs));
    attempt(() => unmountLazily(bpffs));
  }
  attempt(() => Deno.removeSync(bpffs));
  attempt(() => removeCgroup(cgroup));
  if (problems.length > 0) {
    throw new AggregateError(problems, `could not remove all of ${bpffs} and ${cgroup}`);
  }
}

/** Kills what is left in the cgroup (probe children) and removes it. */
function removeCgroup(path: string): void {
  try {
    Deno.writeTextFileSync(`${path}/cgroup.kill`, "1");
  } catch {
    // before 5.14 there is no cgroup.kill; a probe child ends on its own within its timeout
  }
  // A killed runtime on a loaded host can take over a second to exit: up to 5 s.
  const deadline = Date.now() + 5000;
  for (;;) {
    try {
      Deno.removeSync(path);
      return;
    } catch (error) {
      // EBUSY while the killed processes exit
      if (error instanceof Deno.errors.NotFound || Date.now() >= deadline) throw error;
      const until = Date.now() + 20;
      while (Date.now() < until) { /* a short synchronous wait: this may run in a signal handler */ }
    }
  }
}

function mounted(path: string): boolean {
  return Deno.readTextFileSync("/proc/mounts").split("\n").some((line) => line.split(" ")[1] === path);
}

/** Removes the bpffs mounts, directories and cgroups of `policy test` runs that were killed. */
export function removeLeftovers(): string[] {
  const removed: string[] = [];
  const tmp = Deno.env.get("TMPDIR") ?? "/tmp";
  for (const entry of Deno.readDirSync(tmp)) {
    if (!entry.isDirectory || !isLeftover(entry.name, TEST_PLANE_PREFIX)) continue;
    removePlane(`${tmp}/${entry.name}`, `${cgroup2Root()}/${entry.name}`);
    removed.push(entry.name);
  }
  const root = cgroup2Root();
  for (const entry of Deno.readDirSync(root)) {
    if (!entry.isDirectory || !isLeftover(entry.name, TEST_PLANE_PREFIX)) continue;
    removeCgroup(`${root}/${entry.name}`);
    removed.push(entry.name);
  }
  return removed;
}
