import { cgroup2Root } from "../../lib/kernel/cgroup.ts";
import { run, uniqueName } from "./privileged.ts";

const PREFIX = "aegisbpf-test-";

/** A cgroup v2 directory made for one test, removed by `remove()`. */
export class TestCgroup {
  readonly path: string;

  private constructor(path: string) {
    this.path = path;
  }

  /** Makes a fresh cgroup under the cgroup v2 root, after removing leftovers of interrupted runs. */
  static create(): TestCgroup {
    const root = cgroup2Root();
    removeLeftovers(root);
    const path = `${root}/${uniqueName(PREFIX)}`;
    Deno.mkdirSync(path);
    return new TestCgroup(path);
  }

  /** Runs a bash script inside this cgroup (bash moves itself in before the script starts). */
  runBash(script: string): Promise<{ code: number; stdout: string; stderr: string }> {
    return run("bash", ["-c", `echo $$ > '${this.path}/cgroup.procs' && ${script}`]);
  }

  /** Tries a TCP connect from inside this cgroup; returns "connected" or bash's error text. */
  async connect(host: string, port: number): Promise<string> {
    const result = await this.runBash(`exec 3<>/dev/tcp/${host}/${port} && echo connected`);
    return result.code === 0 ? result.stdout.trim() : result.stderr.trim();
  }

  remove(): void {
    removeCgroup(this.path);
  }
}

function removeCgroup(path: string): void {
  try {
    Deno.removeSync(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

/** Test cgroups left by an interrupted run: ours by name, and empty. */
function removeLeftovers(root: string): void {
  for (const entry of Deno.readDirSync(root)) {
    if (!entry.isDirectory || !entry.name.startsWith(PREFIX)) continue;
    const path = `${root}/${entry.name}`;
    if (Deno.readTextFileSync(`${path}/cgroup.procs`).trim() === "") removeCgroup(path);
  }
}
