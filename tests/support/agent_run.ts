/**
 * The real agent (`aegisbpf run --log-format json`) as a child process, for host and VM tests: its events
 * collected as they arrive, waited for by predicate, and signals sent to it by pid. With `text`, each line
 * of `--log-format text` is an event `{type: "text", line}`; with `format: "ocsf"`, each is an OCSF object.
 */

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

export type Dirs = { bpffs: string; stateDir: string; configDir: string };
// deno-lint-ignore no-explicit-any
export type Event = Record<string, any>;

export class AgentRun {
  readonly events: Event[] = [];
  readonly #child: Deno.ChildProcess;
  readonly #done: Promise<{ code: number; stderr: string }>;
  #stderr = "";
  #waiters: (() => void)[] = [];
  #exited = false;

  private constructor(child: Deno.ChildProcess) {
    this.#child = child;
    const stdout = this.#readLines(child.stdout, (line) => {
      try {
        this.events.push(JSON.parse(line));
      } catch {
        this.events.push({ type: "text", line });
      }
    });
    const stderr = this.#readLines(child.stderr, (line) => (this.#stderr += `${line}\n`));
    this.#done = (async () => {
      const { code } = await child.status;
      await Promise.all([stdout, stderr]);
      this.#exited = true;
      return { code, stderr: this.#stderr };
    })();
  }

  /** Starts `aegisbpf run ARGS` with the test's directories; `prefix` runs it through e.g. `ip netns exec`. */
  static spawn(
    dirs: Dirs,
    args: string[],
    options: { env?: Record<string, string>; prefix?: string[]; text?: boolean; format?: "json" | "ocsf" } =
      {},
  ): AgentRun {
    const deno = [
      Deno.execPath(),
      "run",
      "--allow-all",
      "--quiet",
      MAIN,
      "run",
      "--log-format",
      options.text ? "text" : options.format ?? "json",
      // The default API socket is the host's: a test agent serves none unless the test asks.
      ...(args.some((arg) => arg === "--api" || arg.startsWith("--api=")) ? [] : ["--api", "none"]),
      ...args,
    ];
    const [command, ...rest] = [...(options.prefix ?? []), ...deno];
    const child = new Deno.Command(command!, {
      args: rest,
      env: {
        AEGISBPF_BPFFS: dirs.bpffs,
        AEGISBPF_STATE_DIR: dirs.stateDir,
        AEGISBPF_CONFIG_DIR: dirs.configDir,
        NO_COLOR: "1",
        ...options.env,
      },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    return new AgentRun(child);
  }

  get pid(): number {
    return this.#child.pid;
  }

  get stderr(): string {
    return this.#stderr;
  }

  /** The first event (from index `from`) matching `test`, waiting up to `timeoutMs` for it. */
  async waitFor(test: (event: Event) => boolean, timeoutMs = 15_000, from = 0): Promise<Event> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.events.slice(from).find(test);
      if (found) return found;
      const left = deadline - Date.now();
      if (left <= 0 || this.#exited) {
        const seen = this.events.map((event) => event.type ?? event.metadata?.event_code).join(", ");
        throw new Error(
          `No such event ${
            this.#exited ? "before the agent exited" : `after ${timeoutMs} ms`
          }; seen: ${seen}; stderr: ${this.#stderr.trim()}`,
        );
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 200));
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Waits for the agent to be up: its first policy.applied event. */
  ready(timeoutMs = 30_000): Promise<Event> {
    return this.waitFor((event) => event.type === "policy.applied", timeoutMs);
  }

  kill(signal: Deno.Signal): void {
    Deno.kill(this.#child.pid, signal);
  }

  /** Waits for the exit; the exit code and everything on stderr. */
  exit(): Promise<{ code: number; stderr: string }> {
    return this.#done;
  }

  /** Stops it however it is (SIGKILL if still running) and waits. */
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
    await this.#done;
  }

  async #readLines(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void): Promise<void> {
    let buffer = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      buffer += chunk;
      let newline;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        onLine(buffer.slice(0, newline));
        buffer = buffer.slice(newline + 1);
      }
      const waiters = this.#waiters;
      this.#waiters = [];
      for (const wake of waiters) wake();
    }
    if (buffer !== "") onLine(buffer);
  }
}
