import { cgroup2Root } from "../../lib/kernel/cgroup.ts";
import { isLeftover, run, uniqueName } from "./privileged.ts";

const PREFIX = "aegisbpf-test-";

/** A cgroup v2 directory made for one test, removed by `remove()`. */
export class TestCgroup {
  readonly path: string;
  readonly #children: string[];

  private constructor(path: string, children: string[] = []) {
    this.path = path;
    this.#children = children;
  }

  /** The path relative to the cgroup v2 root, as policies name cgroups. */
  get relativePath(): string {
    return this.path.slice(cgroup2Root().length);
  }

  /** Makes a child cgroup, removed with this one. */
  child(name: string): TestCgroup {
    const child = new TestCgroup(`${this.path}/${name}`, this.#children);
    Deno.mkdirSync(child.path);
    this.#children.push(child.path);
    return child;
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
  runBash(
    script: string,
    options: RunAs = {},
  ): Promise<{ code: number; stdout: string; stderr: string }> {
    const join = `echo $$ > '${this.path}/cgroup.procs'`;
    const ids = options.setpriv ??
      (options.uid === undefined ? undefined : [`--reuid=${options.uid}`, `--regid=${options.uid}`]);
    if (ids === undefined) return run("bash", ["-c", `${join} && ${script}`]);
    const user = `setpriv ${ids.join(" ")} --clear-groups bash -p -c '${script.replaceAll("'", "'\\''")}'`;
    return run("bash", ["-c", `${join} && exec ${user}`]);
  }

  /** Tries a TCP connect from inside this cgroup; returns "connected", "EPERM" or bash's error text. */
  async connect(host: string, port: number, options: RunAs = {}): Promise<string> {
    const result = await this.runBash(`exec 3<>/dev/tcp/${host}/${port} && echo connected`, options);
    if (result.code === 0) return result.stdout.trim();
    return /Operation not permitted/.test(result.stderr) ? "EPERM" : result.stderr.trim();
  }

  /** Runs tests/support/net_probe.ts inside this cgroup and returns what it printed. */
  async probe(...args: string[]): Promise<string> {
    const probe = new URL("./net_probe.ts", import.meta.url).pathname;
    const result = await this.runBash(
      `exec '${Deno.execPath()}' run --allow-all --unstable-net --quiet '${probe}' ${args.join(" ")}`,
    );
    return (result.stdout.trim() || result.stderr.trim());
  }

  remove(): void {
    for (const child of this.#children.reverse()) removeCgroup(child);
    removeCgroup(this.path);
  }
}

/** Who runs a command: a uid for real and effective ids alike, or setpriv's own id flags (bash -p keeps differing ones). */
export type RunAs = { uid?: number; setpriv?: string[] };

/** Removes a cgroup and its children, deepest first, if none has processes. */
function removeTree(path: string): void {
  for (const entry of Deno.readDirSync(path)) {
    if (entry.isDirectory) removeTree(`${path}/${entry.name}`);
  }
  if (Deno.readTextFileSync(`${path}/cgroup.procs`).trim() === "") removeCgroup(path);
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
    if (!entry.isDirectory || !isLeftover(entry.name, PREFIX)) continue;
    const path = `${root}/${entry.name}`;
    removeTree(path);
  }
}
