import type { TestCgroup } from "./cgroup.ts";

/** What a connect loop or burst reported: attempts made, and how many of them connected. */
export type ConnectTally = { attempts: number; leaks: number };

/**
 * Bash for one TCP connect to `host:port` that prints LEAK when it connects. In this shell (one pid for
 * every attempt; a failed `exec` redirection does not end a non-POSIX bash) or, with `fork`, in a
 * subshell (a new pid per attempt).
 */
export function connectOnce(host: string, port: number, options: { fork?: boolean } = {}): string {
  const open = `exec 3<>/dev/tcp/${host}/${port}`;
  return options.fork
    ? `if (${open}) 2>/dev/null; then echo LEAK; fi`
    : `if { ${open}; } 2>/dev/null; then echo LEAK; exec 3>&-; fi`;
}

/** Bash that makes `count` connect attempts and then prints how many it made. */
export function connectBurst(
  host: string,
  port: number,
  count: number,
  options: { fork?: boolean } = {},
): string {
  return `n=0; while [ $n -lt ${count} ]; do ${connectOnce(host, port, options)}; n=$((n+1)); done; ` +
    `echo "attempts $n"`;
}

/** Reads the attempts line and the LEAK lines of a burst or loop. */
export function tally(stdout: string): ConnectTally {
  const attempts = /^attempts (\d+)$/m.exec(stdout);
  if (!attempts) throw new Error(`Connect loop printed no attempt count: ${stdout.slice(-200)}`);
  return {
    attempts: Number(attempts[1]),
    leaks: stdout.split("\n").filter((line) => line === "LEAK").length,
  };
}

/** A connect loop running inside a test cgroup until stopped. */
export type ConnectLoop = {
  /** Stops the loop and returns what it did. */
  stop(): Promise<ConnectTally>;
};

/**
 * Starts a bash loop in `cgroup` connecting to `host:port` as fast as it can, and resolves once it has
 * made its first attempt. It runs until `stop()`, or `maxSeconds` as a safety bound.
 */
export async function startConnectLoop(
  cgroup: TestCgroup,
  host: string,
  port: number,
  options: { maxSeconds?: number } = {},
): Promise<ConnectLoop> {
  const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-loop-" });
  const ready = `${dir}/ready`;
  const stopFile = `${dir}/stop`;
  const script = `n=0; while [ ! -e '${stopFile}' ] && [ $SECONDS -lt ${options.maxSeconds ?? 20} ]; do ` +
    `${connectOnce(host, port)}; n=$((n+1)); [ $n -eq 1 ] && : > '${ready}'; done; echo "attempts $n"`;
  const done = cgroup.runBash(script);
  const stop = async (): Promise<ConnectTally> => {
    Deno.writeTextFileSync(stopFile, "");
    const result = await done;
    Deno.removeSync(dir, { recursive: true });
    if (result.code !== 0) throw new Error(`Connect loop failed (exit ${result.code}): ${result.stderr}`);
    return tally(result.stdout);
  };
  const started = await Promise.race([
    waitForFile(ready, 5000),
    done.then(() => false),
  ]);
  if (!started) {
    const tallied = await stop();
    throw new Error(`Connect loop ended before it started: ${JSON.stringify(tallied)}`);
  }
  return { stop };
}

async function waitForFile(path: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      Deno.statSync(path);
      return true;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }
  return false;
}
