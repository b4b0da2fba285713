import { parseArgs } from "node:util";
import { version, VERSION_HELP } from "./lib/commands/version.ts";
import { EXIT, exitCodeFor, formatError, UsageError } from "./lib/errors.ts";

const HELP = `Usage: aegisbpf <command> [flags]

A host security agent: BPF-LSM, cgroup socket and XDP enforcement of a host policy.

Commands:
  version     print the aegisbpf, libbpf and kernel versions

Global flags:
  --log-format text|json   how errors and logs are printed (default text)
  --log-level LEVEL        debug|info|warn|error (debug adds stack traces)
  -h, --help               help for aegisbpf or a command`;

type Command = { help: string; run: (args: string[]) => number | Promise<number> };

const COMMANDS: Record<string, Command> = {
  version: { help: VERSION_HELP, run: () => version() },
};

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      "log-format": { type: "string", default: "text" },
      "log-level": { type: "string", default: "info" },
      help: { type: "boolean", short: "h", default: false },
    },
    allowPositionals: true,
    strict: false,
  });
  const format = values["log-format"] === "json" ? "json" : "text";
  try {
    const [name, ...rest] = positionals;
    if (name === undefined) {
      console.log(HELP);
      return values.help ? EXIT.ok : EXIT.usage;
    }
    const command = COMMANDS[name];
    if (!command) throw new UsageError(`Unknown command: ${name} (see aegisbpf --help)`);
    if (values.help) {
      console.log(command.help);
      return EXIT.ok;
    }
    return await command.run(rest);
  } catch (error) {
    console.error(formatError(error, format));
    if (values["log-level"] === "debug" && error instanceof Error) console.error(error.stack);
    return exitCodeFor(error);
  }
}

Deno.exit(await main(Deno.args));
