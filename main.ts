/**
 * The aegisbpf command line: every command by name, and dispatch to the one the arguments name. Only that
 * command's module is imported (lib/cli/lazy.ts): parsing and help read lib/commands/declarations.json.
 */

import "./lib/agent/no_inspector.ts"; // first: SIGUSR1 would open the runtime's inspector to every local user
import { disarmInspector } from "./lib/agent/process_guard.ts";
import type { Registry } from "./lib/cli/command.ts";
import { type Declarations, lazyRegistry } from "./lib/cli/lazy.ts";
import { processIo, runCli } from "./lib/cli/run.ts";
import DECLARATIONS from "./lib/commands/declarations.json" with { type: "json" };
import { COMMANDS } from "./lib/commands/loaders.ts";

/** The registry parsing, help and completions read; generated declarations, checked when a command loads. */
export const REGISTRY: Registry = lazyRegistry(COMMANDS, DECLARATIONS as unknown as Declarations);

/**
 * The argument of the agent's policy check process (lib/ops/prepare.ts), and `__probe` of `policy test`'s
 * probe child (lib/ops/probe_child.ts); no command starts with "__".
 */
const PREPARE_PREFIX = "__";

if (import.meta.main) {
  disarmInspector(); // done already by the first import, unless this entry was renamed (a compiled binary)
  const [first] = Deno.args;
  if (first === "__probe") {
    const { probeChildMain } = await import("./lib/ops/probe_child.ts");
    Deno.exit(await probeChildMain(Deno.args.slice(1)));
  }
  if (Deno.args.length === 1 && first?.startsWith(PREPARE_PREFIX)) {
    const { PREPARE_ARGUMENT, preparePolicyMain } = await import("./lib/ops/prepare.ts");
    if (first === PREPARE_ARGUMENT) Deno.exit(await preparePolicyMain());
  }
  Deno.exit(await runCli(Deno.args, REGISTRY, processIo()));
}
