import { isLeftover as isProcessLeftover } from "../../lib/kernel/leftover.ts";

/**
 * Registration for tests that need root and a real kernel. Outside CI they are skipped for a non-root
 * user, naming what they wait for; in CI (env CI set) a skip is a failure, so they fail instead.
 */
export function rootTest(name: string, fn: () => void | Promise<void>): void {
  const missing = Deno.uid() === 0 ? undefined : "root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN)";
  if (missing && Deno.env.get("CI")) {
    Deno.test(name, () => {
      throw new Error(`Kernel test cannot run without ${missing}: in CI a skipped kernel test is a failure`);
    });
    return;
  }
  Deno.test({ name, ignore: missing !== undefined, fn });
}

/**
 * A name unique to this test process, for cgroups, namespaces, interfaces and pin directories:
 * PREFIX + pid + "-" + this module instance's token + counter (base 36), so that leftovers can be told from
 * live objects. Each test file loads its own instance of this module in the one test process: the token
 * keeps a name one file failed to remove from colliding with the next file's first.
 */
export function uniqueName(prefix: string): string {
  counter += 1;
  return `${prefix}${Deno.pid.toString(36)}-${TOKEN}${counter.toString(36)}`;
}
let counter = 0;
const TOKEN = Array.from(crypto.getRandomValues(new Uint8Array(2)), (byte) => (byte % 36).toString(36)).join(
  "",
);

/**
 * Whether `name` (made by uniqueName with `prefix`) is a leftover: its process is gone. Objects of
 * test processes still running, this one included, are never taken for leftovers.
 */
export function isLeftover(name: string, prefix: string): boolean {
  return isProcessLeftover(name, prefix, 36);
}

/** Runs a command and returns its exit code and output; never throws for a non-zero exit. */
export async function run(
  command: string,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command(command, { args, stdout: "piped", stderr: "piped" }).output();
  const decoder = new TextDecoder();
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
}

/** Runs a command that must succeed; throws with its stderr otherwise. */
export async function must(command: string, args: string[]): Promise<string> {
  const result = await run(command, args);
  if (result.code !== 0) {
    throw new Error(`${command} ${args.join(" ")} failed (exit ${result.code}): ${result.stderr.trim()}`);
  }
  return result.stdout;
}
