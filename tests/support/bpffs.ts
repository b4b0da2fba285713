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
