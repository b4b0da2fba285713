import { isLeftover, must, run, uniqueName } from "./privileged.ts";

const PREFIX = "aegisbpf-test-bpffs-";

/** A private bpffs instance mounted for one test, so pins never touch /sys/fs/bpf. */
export class TestBpffs {
  readonly path: string;

  private constructor(path: string) {
    this.path = path;
  }

  static async mount(): Promise<TestBpffs> {
    await removeLeftovers();
    const path = `${Deno.env.get("TMPDIR") ?? "/tmp"}/${uniqueName(PREFIX)}`;
    Deno.mkdirSync(path);
    await must("mount", ["-t", "bpf", "bpf", path]);
    return new TestBpffs(path);
  }

  async unmount(): Promise<void> {
    await run("umount", [this.path]);
    Deno.removeSync(this.path);
  }
}

async function removeLeftovers(): Promise<void> {
  const mounts = Deno.readTextFileSync("/proc/mounts");
  for (const line of mounts.split("\n")) {
    const [, mountPoint, fsType] = line.split(" ");
    const name = mountPoint?.slice(mountPoint.lastIndexOf("/") + 1) ?? "";
    if (fsType === "bpf" && mountPoint && isLeftover(name, PREFIX)) {
      await run("umount", [mountPoint]);
      await run("rmdir", [mountPoint]);
    }
  }
}
