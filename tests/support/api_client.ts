/** The agent's local API over its Unix socket, driven with curl as an operator would. */
import { run } from "./privileged.ts";

/** curl ARGS over `socket`: the HTTP status and the body. */
export async function curl(socket: string, args: string[]): Promise<{ status: number; body: string }> {
  const result = await run("curl", [
    "-sS",
    "--max-time",
    // An apply runs a helper process that loads the programs to adopt the pins: seconds on a loaded machine.
    "30",
    "--unix-socket",
    socket,
    "-w",
    "\n%{http_code}",
    ...args,
  ]);
  const lines = result.stdout.split("\n");
  return { status: Number(lines.pop()), body: lines.join("\n") };
}

export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Waits up to 10 s for the agent to serve its socket (it starts once the policy is applied). */
export async function waitForSocket(socket: string): Promise<boolean> {
  for (let i = 0; i < 200 && !(await exists(socket)); i++) await new Promise((r) => setTimeout(r, 50));
  return await exists(socket);
}
