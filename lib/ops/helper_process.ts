/**
 * Starting the policy check process (lib/ops/prepare.ts) without importing what it runs: `run` starts one
 * as its very first step, so that the helper's runtime and module graph load while the agent's own load,
 * on another core. A helper started early only waits: it reads nothing of the state until its request
 * comes on stdin, which the agent writes under the state lock, as it would to one started then.
 */

/** The first argument that makes this program the helper. */
export const PREPARE_ARGUMENT = "__prepare";

/** A helper process started ahead of its request; killed when disposed unless its request was sent. */
export class HelperProcess implements Disposable {
  #child: Deno.ChildProcess | undefined;

  constructor(child: Deno.ChildProcess) {
    this.#child = child;
  }

  /** Starts the helper; its request goes to the process `take()` hands over. */
  static spawn(): HelperProcess {
    const [command, ...prefix] = selfCommand();
    return new HelperProcess(
      new Deno.Command(command!, {
        args: [...prefix, PREPARE_ARGUMENT],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn(),
    );
  }

  /** The process, once: whoever takes it writes its request and waits for it. */
  take(): Deno.ChildProcess | undefined {
    const child = this.#child;
    this.#child = undefined;
    return child;
  }

  /** A helper nobody took (the agent stopped before its policy check): killed, and its pipes closed. */
  [Symbol.dispose](): void {
    const child = this.take();
    if (!child) return;
    try {
      child.kill("SIGKILL");
    } catch {
      // It ended meanwhile.
    }
    void child.stdin.close().catch(() => {});
    void child.stdout.cancel().catch(() => {});
    void child.stderr.cancel().catch(() => {});
    void child.status.catch(() => {});
  }
}

/**
 * How to start this program again without its arguments: the compiled binary alone; else `deno`, its flags
 * and main.ts as /proc/self/cmdline has them, so that a packaged launcher's `--config`,
 * `--node-modules-dir` and `--cached-only` carry over; else (main.ts is not the main module: a test) a
 * plain `deno run` of main.ts.
 */
export function selfCommand(): string[] {
  if (Deno.build.standalone) return [Deno.execPath()];
  const main = new URL("../../main.ts", import.meta.url).href;
  if (Deno.mainModule !== main) {
    return [Deno.execPath(), "run", "--allow-all", "--quiet", new URL(main).pathname];
  }
  const argv = Deno.readTextFileSync("/proc/self/cmdline").split("\0");
  if (argv.at(-1) === "") argv.pop();
  const prefix = argv.slice(0, argv.length - Deno.args.length);
  if (prefix.length < 2) throw new Error("cannot tell how this program was started (/proc/self/cmdline)");
  prefix[0] = Deno.execPath();
  return prefix;
}
