/**
 * A private host for running a runbook's steps as root on this machine: the runbook's paths
 * (/etc/aegisbpf, /etc/default/aegisbpf, /var/lib/aegisbpf, /sys/fs/bpf, /root) are rewritten into a
 * scratch directory and a private bpffs mount, `aegisbpf` on PATH runs this source tree, and `systemctl
 * start|stop|restart|reload aegisbpf` do what systemd does with packaging/systemd/aegisbpf.service: its
 * ExecStart with the settings file the runbook edits, its ExecStartPost health wait, SIGHUP, SIGTERM.
 * The one change to the unit: the agent's API socket is in the scratch directory, not /run/aegisbpf.
 */
import { DataPlane } from "../../lib/kernel/dataplane.ts";
import { TestBpffs } from "../support/bpffs.ts";
import { cgroup2Root } from "../../lib/kernel/cgroup.ts";
import { directive, PACKAGING, readUnit, REPO } from "./unit_file.ts";

const MAIN = `${REPO}main.ts`;
const BINARY = "/usr/bin/aegisbpf";
/** How long a runbook command may take (an apply loads the programs: a few seconds on this machine). */
const COMMAND_TIMEOUT_MS = 180_000;
/** `--canary DUR` of a runbook watches for minutes; here the watch is this long (the test says so). */
export const CANARY_HERE = "3s";

export type Outcome = { code: number; output: string };

export class RunbookHost implements AsyncDisposable {
  #agent: Deno.ChildProcess | undefined;
  readonly #cgroups: string[] = [];
  readonly #vars: Record<string, string> = {};

  private constructor(readonly dir: string, readonly bpffs: TestBpffs) {}

  static async create(): Promise<RunbookHost> {
    const bpffs = await TestBpffs.mount();
    const dir = await Deno.makeTempDir({ prefix: "aegisbpf-runbook-" });
    const host = new RunbookHost(dir, bpffs);
    for (const path of ["etc/aegisbpf", "etc/default", "var/lib/aegisbpf", "root", "work", "bin", "run"]) {
      await Deno.mkdir(`${dir}/${path}`, { recursive: true, mode: 0o700 });
    }
    // What the package installs.
    await Deno.copyFile(`${PACKAGING}systemd/aegisbpf.default`, `${dir}/etc/default/aegisbpf`);
    await Deno.writeTextFile(
      `${dir}/bin/aegisbpf`,
      `#!/bin/sh\nexec '${Deno.execPath()}' run --allow-all '${MAIN}' "$@"\n`,
      { mode: 0o755 },
    );
    return host;
  }

  /** The command as it runs here: the runbook's system paths moved into the scratch directory. */
  rewrite(command: string): string {
    return command
      .replaceAll("/etc/default/aegisbpf", `${this.dir}/etc/default/aegisbpf`)
      .replaceAll("/etc/aegisbpf", `${this.dir}/etc/aegisbpf`)
      .replaceAll("/var/lib/aegisbpf", `${this.dir}/var/lib/aegisbpf`)
      .replaceAll("/sys/fs/bpf", this.bpffs.path)
      .replaceAll("/root/", `${this.dir}/root/`)
      .replace(/--canary \S+/g, `--canary ${CANARY_HERE}`);
  }

  /** A path of the page (absolute, or relative to the working directory) as it is here. */
  path(path: string): string {
    return path.startsWith("/") ? this.rewrite(path) : `${this.dir}/work/${path}`;
  }

  env(): Record<string, string> {
    return {
      PATH: `${this.dir}/bin:${Deno.env.get("PATH")}`,
      AEGISBPF_CONFIG_DIR: `${this.dir}/etc/aegisbpf`,
      AEGISBPF_STATE_DIR: `${this.dir}/var/lib/aegisbpf`,
      AEGISBPF_BPFFS: this.bpffs.path,
      ...this.#vars,
    };
  }

  /**
   * Runs one command line of the page with bash in the working directory. A shell variable a line sets
   * (`KEYID=$(...)`) is kept for the lines after it, as in the reader's shell.
   */
  async run(command: string, options: { stopAfterMs?: number } = {}): Promise<Outcome> {
    const unit = /^systemctl (enable --now|start|stop|restart|reload) aegisbpf$/.exec(command);
    if (unit) return await this.#systemctl(unit[1]!);
    const assignment = /^([A-Z_][A-Z0-9_]*)=\S/.exec(command);
    if (assignment) {
      const name = assignment[1]!;
      const set = await this.#bash(`${this.rewrite(command)}; printf '%s' "$${name}"`);
      if (set.code === 0) this.#vars[name] = set.stdout;
      return set;
    }
    // A command that runs until stopped gets SIGTERM after its time, as Ctrl-C or systemd would stop it.
    const script = options.stopAfterMs === undefined
      ? this.rewrite(command)
      : `${this.rewrite(command)} & sleep ${options.stopAfterMs / 1000}; kill -TERM $!; wait $!`;
    return await this.#bash(script);
  }

  async #bash(script: string): Promise<Outcome & { stdout: string }> {
    const output = await new Deno.Command("bash", {
      args: ["-c", `set -o pipefail; ${script}`],
      cwd: `${this.dir}/work`,
      env: this.env(),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(COMMAND_TIMEOUT_MS),
    }).output();
    return { ...outcome(output), stdout: new TextDecoder().decode(output.stdout) };
  }

  /** Makes the cgroup v2 `path` (e.g. /canary.slice) and missing parents; what it made goes at dispose. */
  async cgroup(path: string): Promise<void> {
    let full = cgroup2Root();
    for (const part of path.split("/").filter(Boolean)) {
      full += `/${part}`;
      try {
        await Deno.mkdir(full);
        this.#cgroups.push(full);
      } catch (error) {
        if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
      }
    }
  }

  async #systemctl(verb: string): Promise<Outcome> {
    if (verb === "reload") {
      if (!this.#agent) return { code: 1, output: "aegisbpf.service is not active" };
      this.#agent.kill("SIGHUP");
      return { code: 0, output: "" };
    }
    if (verb === "stop" || verb === "restart") await this.#stopAgent();
    if (verb === "stop") return { code: 0, output: "" };
    return await this.#startAgent();
  }

  /** ExecStart, then ExecStartPost's health wait; a failed wait stops the agent, as systemd does. */
  async #startAgent(): Promise<Outcome> {
    if (this.#agent) return { code: 0, output: "" };
    const service = readUnit("aegisbpf.service");
    const start = this.#unitCommand(directive(service, "Service", "ExecStart"));
    const settings = `set -a; . '${this.dir}/etc/default/aegisbpf'; set +a;`;
    this.#agent = new Deno.Command("bash", {
      args: ["-c", `${settings} exec ${start} --api 'unix:${this.dir}/run/api.sock'`],
      cwd: "/",
      env: this.env(),
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const post = this.#unitCommand(directive(service, "Service", "ExecStartPost"));
    const wait = await this.run(`${settings} ${post}`);
    if (wait.code !== 0) {
      const stderr = await this.#stopAgent();
      return { code: 1, output: `${wait.output}\nthe agent said: ${stderr}` };
    }
    return wait;
  }

  /** A command line of the unit with its own $$ escapes undone and /usr/bin/aegisbpf found on PATH. */
  #unitCommand(line: string): string {
    return line.replaceAll("$$", "$").replaceAll(BINARY, "aegisbpf").replace(/^\/bin\/sh -c /, "sh -c ");
  }

  async #stopAgent(): Promise<string> {
    const agent = this.#agent;
    if (!agent) return "";
    this.#agent = undefined;
    try {
      agent.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    const { stderr } = await agent.output();
    return new TextDecoder().decode(stderr).trim().split("\n").slice(-3).join("\n");
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      await this.#stopAgent();
      DataPlane.detach(this.bpffs.path);
    } finally {
      for (const path of this.#cgroups.reverse()) await Deno.remove(path).catch(() => {});
      await this.bpffs.unmount();
      await Deno.remove(this.dir, { recursive: true });
    }
  }
}

function outcome(output: Deno.CommandOutput): Outcome {
  const decoder = new TextDecoder();
  return { code: output.code, output: decoder.decode(output.stdout) + decoder.decode(output.stderr) };
}
