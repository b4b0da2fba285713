/**
 * Commands imported only when they run. Parsing, `--help` and completions read each command's declaration
 * (name, summary, flags, arguments, examples) from lib/commands/declarations.json, which `deno task man`
 * writes from the command modules themselves; the module of the command that runs is imported on dispatch,
 * with its graph (the YAML and schema parsers, libbpf, the API server), so that `aegisbpf --help` or
 * `aegisbpf health` never pays for every other command's. A loaded command whose declaration differs from
 * the file's refuses to run: the file is stale, and would have parsed its flags wrongly.
 */

import type { Command, Registry } from "./command.ts";

/** A command as data: everything but `run`, as JSON carries it. */
export type Declaration = Omit<Command, "run">;

/** Declarations by the words that name the command: `"health"`, `"policy apply"`. */
export type Declarations = Readonly<Record<string, Declaration>>;

/** Where `deno task man` writes the declarations, from the repository's root. */
export const DECLARATIONS_FILE = "lib/commands/declarations.json";

/** A command by its name and how to import it. */
export type CommandLoader = { name: string; load: () => Promise<Command> };

/** A group of commands (`policy`, `keys`): its summary is here, its commands load one by one. */
export type GroupLoader = { name: string; summary: string; commands: readonly CommandLoader[] };

/** Every command, in the order `aegisbpf --help` lists them. */
export type Loaders = readonly (CommandLoader | GroupLoader)[];

/** The registry from the declarations, each command's `run` importing its module first. */
export function lazyRegistry(loaders: Loaders, declarations: Declarations): Registry {
  return loaders.map((entry) =>
    isGroupLoader(entry)
      ? {
        name: entry.name,
        summary: entry.summary,
        commands: entry.commands.map((loader) =>
          lazyCommand([entry.name, loader.name], loader, declarations)
        ),
      }
      : lazyCommand([entry.name], entry, declarations)
  );
}

/** The registry with every command module imported: for `deno task man` and the tests. */
export async function loadRegistry(loaders: Loaders): Promise<Registry> {
  return await Promise.all(loaders.map(async (entry) =>
    isGroupLoader(entry)
      ? {
        name: entry.name,
        summary: entry.summary,
        commands: await Promise.all(entry.commands.map((loader) => loadNamed(loader))),
      }
      : await loadNamed(entry)
  ));
}

/** The declarations of a registry, as `deno task man` writes them. */
export function declarationsOf(registry: Registry): Record<string, Declaration> {
  const entries = registry.flatMap((entry) =>
    "commands" in entry
      ? entry.commands.map((command) => [`${entry.name} ${command.name}`, declarationOf(command)] as const)
      : [[entry.name, declarationOf(entry)] as const]
  );
  return Object.fromEntries(entries);
}

/** A command without `run`, normalized as JSON would carry it. */
export function declarationOf(command: Command): Declaration {
  const { run: _run, ...declaration } = command;
  return JSON.parse(JSON.stringify(declaration));
}

function lazyCommand(path: readonly string[], loader: CommandLoader, declarations: Declarations): Command {
  const key = path.join(" ");
  const declared = declarations[key];
  if (declared === undefined) throw staleError(key, "has no declaration");
  return {
    ...declared,
    async run(ctx, input) {
      const command = await loader.load();
      if (JSON.stringify(declarationOf(command)) !== JSON.stringify(declared)) {
        throw staleError(key, "declares it otherwise than its module");
      }
      return await command.run(ctx, input);
    },
  };
}

async function loadNamed(loader: CommandLoader): Promise<Command> {
  const command = await loader.load();
  if (command.name !== loader.name) {
    throw new Error(`the command loaded as "${loader.name}" is named "${command.name}"`);
  }
  return command;
}

function staleError(key: string, what: string): Error {
  return new Error(`${DECLARATIONS_FILE} ${what} for "${key}": it is stale; run deno task man`);
}

function isGroupLoader(entry: CommandLoader | GroupLoader): entry is GroupLoader {
  return "commands" in entry;
}
