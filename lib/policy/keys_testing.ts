/** Test support for keys and bundles: openssl as the independent implementation to agree with. */

/** Runs `fn` in a new temporary directory, removed afterwards. */
export async function withTempDir(fn: (dir: string) => Promise<void> | void) {
  const dir = await Deno.makeTempDir({ prefix: "aegisbpf-keys-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Runs openssl in `cwd`; its stdout as text. A non-zero exit throws with openssl's stderr. */
export async function openssl(cwd: string, ...args: string[]): Promise<string> {
  const output = await new Deno.Command("openssl", { args, cwd, stdout: "piped", stderr: "piped" }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  if (!output.success) throw new Error(`openssl ${args.join(" ")} failed: ${decode(output.stderr)}`);
  return decode(output.stdout);
}

/** Whether openssl exits 0, for checks that expect a refusal. */
export async function opensslSucceeds(cwd: string, ...args: string[]): Promise<boolean> {
  const output = await new Deno.Command("openssl", { args, cwd, stdout: "null", stderr: "null" }).output();
  return output.success;
}
