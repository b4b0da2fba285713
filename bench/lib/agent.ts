/**
 * The real agent for the events and footprint suites: `aegisbpf run --log-format json --api none` on a
 * private bpffs, state and config directory, its stdout written to a file (as journald or a file would take
 * it, with no reader in this process to slow it or to share its CPU), read back as JSON lines. Everything
 * it made (pins, the directory) is removed by `close()`.
 */
import { DataPlane } from "../../lib/kernel/dataplane.ts";
import { TestBpffs } from "../../tests/support/bpffs.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

// deno-lint-ignore no-explicit-any
export type AgentLine = Record<string, any>;

/** A private bpffs and directories an agent runs on; `close()` detaches what it pinned and removes them. */
export class AgentHome {
  readonly bpffs: TestBpffs;
  readonly dir: string;

  private constructor(bpffs: TestBpffs, dir: string) {
    this.bpffs = bpffs;
    this.dir = dir;
  }

  static async make(): Promise<AgentHome> {
    const bpffs = await TestBpffs.mount();
    const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-bench-agent-" });
    Deno.mkdirSync(`${dir}/etc`, { mode: 0o700 });
    Deno.writeTextFileSync(`${dir}/cmdline`, "ro quiet\n");
    return new AgentHome(bpffs, dir);
  }

  get env(): Record<string, string> {
    return {
      AEGISBPF_BPFFS: this.bpffs.path,
      AEGISBPF_STATE_DIR: `${this.dir}/state`,
      AEGISBPF_CONFIG_DIR: `${this.dir}/etc`,
      AEGISBPF_PROC_CMDLINE: `${this.dir}/cmdline`,
      NO_COLOR: "1",
    };
  }

  /** The path of a pinned map of the plane. */
  mapPin(name: string): string {
    return `${this.bpffs.path}/aegisbpf/maps/${name}`;
  }

  async close(): Promise<void> {
    try {
      DataPlane.detach(this.bpffs.path);
    } finally {
      await this.bpffs.unmount();
      Deno.removeSync(this.dir, { recursive: true });
    }
  }
}

export class BenchAgent {
  readonly stdoutPath: string;
  readonly #child: Deno.ChildProcess;
  readonly #stderrPath: string;
  /** Wall-clock ms when the process was spawned. */
  readonly spawnedAt: number;
  #offset = 0;
  #partial = "";
  readonly lines: AgentLine[] = [];
  #exited = false;

  private constructor(child: Deno.ChildProcess, stdoutPath: string, stderrPath: string, spawnedAt: number) {
    this.#child = child;
    this.stdoutPath = stdoutPath;
    this.#stderrPath = stderrPath;
    this.spawnedAt = spawnedAt;
    child.status.then(() => this.#exited = true);
  }

  /** Starts `aegisbpf run ARGS` in `home`, its stdout and stderr to files named after `name` there. */
  static spawn(
    home: AgentHome,
    name: string,
    args: readonly string[],
    denoFlags: readonly string[] = [],
  ): BenchAgent {
    const stdoutPath = `${home.dir}/${name}.stdout`;
    const stderrPath = `${home.dir}/${name}.stderr`;
    const deno = [
      Deno.execPath(),
      "run",
      "--allow-all",
      "--quiet",
      ...denoFlags,
      MAIN,
      "run",
      "--log-format",
      "json",
    ];
    const spawnedAt = Date.now();
    const child = new Deno.Command("bash", {
      args: [
        "-c",
        'exec "$@" >"$AEGIS_BENCH_OUT" 2>"$AEGIS_BENCH_ERR"',
        "bash",
        ...deno,
        "--api",
        "none",
        ...args,
      ],
      env: { ...home.env, AEGIS_BENCH_OUT: stdoutPath, AEGIS_BENCH_ERR: stderrPath },
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    return new BenchAgent(child, stdoutPath, stderrPath, spawnedAt);
  }

  get pid(): number {
    return this.#child.pid;
  }

  get stderr(): string {
    try {
      return Deno.readTextFileSync(this.#stderrPath);
    } catch {
      return "";
    }
  }

  /** Bytes written to stdout so far. */
  stdoutBytes(): number {
    try {
      return Deno.statSync(this.stdoutPath).size;
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return 0;
      throw error;
    }
  }

  /** Reads the lines written since the last call, parses them, keeps them in `lines`; returns the new ones. */
  readNew(): AgentLine[] {
    let file: Deno.FsFile;
    try {
      file = Deno.openSync(this.stdoutPath);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return []; // bash has not made it yet
      throw error;
    }
    using _file = file;
    file.seekSync(this.#offset, Deno.SeekMode.Start);
    const chunks: string[] = [this.#partial];
    const buffer = new Uint8Array(1 << 20);
    const decoder = new TextDecoder();
    for (;;) {
      const read = file.readSync(buffer);
      if (read === null || read === 0) break;
      this.#offset += read;
      chunks.push(decoder.decode(buffer.subarray(0, read), { stream: true }));
    }
    const text = chunks.join("");
    const end = text.lastIndexOf("\n");
    this.#partial = text.slice(end + 1);
    const fresh: AgentLine[] = [];
    if (end < 0) return fresh;
    for (const line of text.slice(0, end).split("\n")) {
      if (line === "") continue;
      const parsed = JSON.parse(line) as AgentLine;
      fresh.push(parsed);
    }
    for (const line of fresh) this.lines.push(line);
    return fresh;
  }

  /** The first line (of all read) matching `test`, reading on every 10 ms for at most `timeoutMs`. */
  async waitFor(test: (line: AgentLine) => boolean, timeoutMs = 60_000): Promise<AgentLine> {
    const deadline = Date.now() + timeoutMs;
    let from = 0;
    for (;;) {
      this.readNew();
      const found = this.lines.slice(from).find(test);
      if (found) return found;
      from = this.lines.length;
      if (this.#exited || Date.now() > deadline) {
        throw new Error(
          `agent: no such line ${this.#exited ? "before it exited" : `after ${timeoutMs} ms`}; ` +
            `stderr: ${this.stderr.trim().slice(0, 1500)}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /** Its first `policy.applied`, and ms from the spawn to that event's own timestamp. */
  async ready(timeoutMs = 60_000): Promise<{ startMs: number }> {
    const applied = await this.waitFor((line) => line.type === "policy.applied", timeoutMs);
    return { startMs: Date.parse(applied.ts) - this.spawnedAt };
  }

  /** CPU time (user + system) it used so far, in seconds, from /proc/PID/stat. */
  cpuSeconds(): number {
    return cpuSeconds(this.pid);
  }

  /** SIGTERM, then waits for the exit (SIGKILL after `ms`); the exit code. */
  async stop(ms = 10_000): Promise<number> {
    if (!this.#exited) {
      try {
        this.#child.kill("SIGTERM");
      } catch {
        // Already gone.
      }
    }
    const timer = setTimeout(() => {
      try {
        this.#child.kill("SIGKILL");
      } catch {
        // Gone meanwhile.
      }
    }, ms);
    try {
      return (await this.#child.status).code;
    } finally {
      clearTimeout(timer);
    }
  }
}

const TICKS_PER_SECOND = 100;

/** utime + stime of a process (all its threads), in seconds. */
export function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // Fields 14 and 15 of proc(5), counted from the state (field 3) here.
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/**
 * CPU time of a process's live threads (user + system, in seconds) from /proc/PID/task/TID/schedstat, in
 * nanoseconds where /proc/PID/stat counts 10 ms ticks: an idle process's few milliseconds stay visible.
 */
export function cpuSecondsPrecise(pid: number): number {
  let ns = 0;
  for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/schedstat`).split(" ")[0]);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error; // the thread ended meanwhile
    }
  }
  return ns / 1e9;
}

/** RssAnon and RssFile of a process from /proc/PID/status, in MiB. */
export function residentMiB(pid: number): { anon: number; file: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const field = (name: string) => {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status);
    if (!match) throw new Error(`/proc/${pid}/status has no ${name}`);
    return Number(match[1]) / 1024;
  };
  return { anon: field("RssAnon"), file: field("RssFile") };
}

/** Pins every thread of `pid` to `cpu`. */
export async function pinToCpu(pid: number, cpu: number): Promise<void> {
  const out = await new Deno.Command("taskset", {
    args: ["-a", "-p", "-c", String(cpu), String(pid)],
    stdout: "null",
  })
    .output();
  if (!out.success) throw new Error(`taskset of ${pid} failed`);
}
