import { isLeftover, must, run, uniqueName } from "./privileged.ts";

const PREFIX = "aegisbpf-test-bpffs-";
const TMPFS_PREFIX = "aegisbpf-test-tmpfs-";

/** A file system mounted for one test under TMPDIR, removed by `unmount()`. */
class TestMount {
  readonly path: string;

  protected constructor(path: string) {
    this.path = path;
  }

  async unmount(): Promise<void> {
    await run("umount", [this.path]);
    Deno.removeSync(this.path);
  }
}

/** A private bpffs instance mounted for one test, so pins never touch /sys/fs/bpf. */
export class TestBpffs extends TestMount {
  static async mount(): Promise<TestBpffs> {
    return new TestBpffs(await mountPrivate("bpf", PREFIX));
  }
}

/** A small tmpfs mounted for one test: a disk that fills up. */
export class TestTmpfs extends TestMount {
  static async mountSized(bytes: number): Promise<TestTmpfs> {
    return new TestTmpfs(await mountPrivate("tmpfs", TMPFS_PREFIX, ["-o", `size=${bytes},mode=0700`]));
  }
}

/** Mounts a fresh `fsType` under TMPDIR, after unmounting leftovers of interrupted runs; returns its path. */
async function mountPrivate(fsType: string, prefix: string, options: string[] = []): Promise<string> {
  await removeLeftovers(fsType, prefix);
  const path = `${Deno.env.get("TMPDIR") ?? "/tmp"}/${uniqueName(prefix)}`;
  Deno.mkdirSync(path);
  await must("mount", ["-t", fsType, ...options, fsType, path]);
  return path;
}

async function removeLeftovers(fsType: string, prefix: string): Promise<void> {
  if (fsType === "bpf") await killOrphanedAgents(prefix);
  const mounts = Deno.readTextFileSync("/proc/mounts");
  for (const line of mounts.split("\n")) {
    const [, mountPoint, type] = line.split(" ");
    const name = mountPoint?.slice(mountPoint.lastIndexOf("/") + 1) ?? "";
    if (type === fsType && mountPoint && isLeftover(name, prefix)) {
      await run("umount", [mountPoint]);
      await run("rmdir", [mountPoint]);
    }
  }
}

/**
 * Kills the processes (agents a test started) whose AEGISBPF_BPFFS is a leftover bpffs of `prefix`: the
 * test process that mounted it is gone, so nothing will ever stop them. An interrupted run left one such
 * agent alive with its programs attached to the root cgroup, holding its links open past the unmount of
 * its bpffs; the next run's tests and benchmarks ran under it.
 */
async function killOrphanedAgents(prefix: string): Promise<void> {
  const orphans: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    const pid = Number(entry.name);
    if (!Number.isInteger(pid) || pid === Deno.pid) continue;
    let environ: string;
    try {
      environ = Deno.readTextFileSync(`/proc/${pid}/environ`);
    } catch {
      continue; // gone meanwhile, or a kernel thread
    }
    const bpffs = environ.split("\0").find((variable) => variable.startsWith("AEGISBPF_BPFFS="))?.slice(15);
    const name = bpffs?.slice(bpffs.lastIndexOf("/") + 1) ?? "";
    if (name.startsWith(prefix) && isLeftover(name, prefix)) orphans.push(pid);
  }
  for (const pid of orphans) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch {
      // exited meanwhile
    }
  }
  const deadline = Date.now() + 5000;
  while (orphans.some((pid) => alive(pid)) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function alive(pid: number): boolean {
  try {
    // A zombie has no environment left to read and holds no descriptors: it counts as gone.
    return Deno.readTextFileSync(`/proc/${pid}/environ`) !== "";
  } catch {
    return false;
  }
}
