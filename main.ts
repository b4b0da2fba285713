/** The aegisbpf command line: the registry of commands, and dispatch to the one the arguments name. */

import type { Registry } from "./lib/cli/command.ts";
import { processIo, runCli } from "./lib/cli/run.ts";
import { completions } from "./lib/commands/completions.ts";
import { help } from "./lib/commands/help.ts";
import { version } from "./lib/commands/version.ts";

/** Every command, in the order `aegisbpf --help` lists them. A new command is a file and one line here. */
const REGISTRY: Registry = [
  version,
  completions,
  help,
];

if (import.meta.main) Deno.exit(await runCli(Deno.args, REGISTRY, processIo()));
