/** Runs the real aegisbpf (`deno run --allow-all main.ts`) in a scratch directory, as a user would. */

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** The parent's variables a child Deno needs; everything else is what a test sets. */
const PASSED_ENV = ["PATH", "HOME", "DENO_DIR", "XDG_CACHE_HOME", "DENO_NO_UPDATE_CHECK"];

export type Result = { code: number; stdout: string; stderr: string };

export type Scratch = AsyncDisposable & {
  dir: string;
  configDir: string;
  stateDir: string;
  /** Runs aegisbpf with this scratch's directories in AEGISBPF_* and with `env` added. */
  run(
    args: string[],
    options?: { env?: Record<string, string>; stdin?: string; prefix?: string[] },
  ): Promise<Result>;
};

/** A temporary directory with `etc/`, `state/` and `bpffs/`, removed when disposed. */
export async function scratch(): Promise<Scratch> {
  const dir = await Deno.makeTempDir({ prefix: "aegisbpf-cli-" });
  const configDir = `${dir}/etc`;
  const stateDir = `${dir}/state`;
  // The state and config directories as aegisbpf makes them (0700): anything wider is warned about.
  for (const path of [configDir, stateDir]) await Deno.mkdir(path, { mode: 0o700 });
  await Deno.mkdir(`${dir}/bpffs`);
  const dirs = {
    AEGISBPF_CONFIG_DIR: configDir,
    AEGISBPF_STATE_DIR: stateDir,
    AEGISBPF_BPFFS: `${dir}/bpffs`,
  };
  return {
    dir,
    configDir,
    stateDir,
    run: (args, options = {}) => aegisbpf(args, { ...options, env: { ...dirs, ...options.env }, cwd: dir }),
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

export async function aegisbpf(
  args: string[],
  options: { env?: Record<string, string>; stdin?: string; cwd?: string; prefix?: string[] } = {},
): Promise<Result> {
  const child = spawnAegisbpf(args, options);
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  const { code, stdout, stderr } = await child.output();
  const decoder = new TextDecoder();
  return { code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr) };
}

/** The aegisbpf process itself, for a test that signals it (kill -9 mid-apply); stdout and stderr piped. */
export function spawnAegisbpf(
  args: string[],
  options: { env?: Record<string, string>; stdin?: string; cwd?: string; prefix?: string[] } = {},
): Deno.ChildProcess {
  const inherited = Object.fromEntries(
    PASSED_ENV.flatMap((name) => {
      const value = Deno.env.get(name);
      return value === undefined ? [] : [[name, value]];
    }),
  );
  // `prefix` runs it under another program, such as /usr/bin/time.
  const [program = Deno.execPath(), ...before] = [...options.prefix ?? [], Deno.execPath()];
  return new Deno.Command(program, {
    args: [...before, "run", "--allow-all", MAIN, ...args],
    env: { ...inherited, ...options.env },
    clearEnv: true,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    ...(options.cwd ? { cwd: options.cwd } : {}),
  }).spawn();
}

/** True when `text` holds no ANSI colour sequence. */
export function isPlain(text: string): boolean {
  return !text.includes("\x1b[");
}
