/**
 * The shape every command module exports, and what it is given when it runs. A command declares its flags
 * and arguments as data, so that parsing, `--help`, errors and shell completions all come from one place.
 */

import type { Globals } from "./globals.ts";
import type { Logger } from "./log.ts";
import type { Writer } from "./output.ts";
import type { ArgSpec, OptionSpec, OptionSpecs } from "./specs.ts";

/** A string, or the union of the declared choices. */
type Text<S> = S extends { choices: readonly (infer C extends string)[] } ? C : string;
type Scalar<T extends OptionSpec["type"], O> = T extends "boolean" ? boolean : Text<O>;
type Many<M extends boolean, S> = M extends true ? S[] : S;
/**
 * Whether a spec says `key: true`, `key: false` or absent (false), or only that it may (boolean). Absence is
 * tested through `keyof`: `extends { key?: false }` fails for a spec without the key (a weak type).
 */
type Setting<S, K extends string> = S extends Record<K, true> ? true
  : K extends keyof S ? (S extends Record<K, false> ? false : boolean)
  : false;
/** The value of one flag; for a spec known only as `OptionSpec`, every value it could have. */
type OptionValue<O extends OptionSpec> = Many<Setting<O, "multiple">, Scalar<O["type"], O>>;

/** A flag that is required or has a default always has a value by the time `run` sees it. */
type Present<O> = O extends Record<"required", true> | Record<"default", NonNullable<OptionSpec["default"]>>
  ? true
  : false;

/** Flag values by name; a flag that was not given and has no default is absent. */
export type OptionValues<O extends OptionSpecs> =
  & { -readonly [K in keyof O as Present<O[K]> extends true ? K : never]: OptionValue<O[K]> }
  & { -readonly [K in keyof O as Present<O[K]> extends true ? never : K]?: OptionValue<O[K]> };

/** The value of one argument; for a spec known only as `ArgSpec`, every value it could have. */
type ArgValue<A extends ArgSpec> = Setting<A, "variadic"> extends true ? Text<A>[]
  : Setting<A, "variadic"> extends false
    ? (Setting<A, "optional"> extends false ? Text<A> : Text<A> | undefined)
  : string | string[] | undefined;

/** Positional arguments by their declared name. */
export type ArgValues<A extends readonly ArgSpec[]> = { [S in A[number] as S["name"]]: ArgValue<S> };

export type Input<O extends OptionSpecs, A extends readonly ArgSpec[]> = {
  flags: OptionValues<O>;
  args: ArgValues<A>;
};

/** What a running command may use; it never writes to `Deno.stdout` or `console` itself. */
export type Context = {
  globals: Globals;
  stdout: Writer;
  stderr: Writer;
  /** Whether stdout is a terminal. */
  isTTY: boolean;
  /** Whether stdout may carry colour: a terminal, and NO_COLOR unset. */
  color: boolean;
  log: Logger;
  /** Every command, for `help` and `completions`. */
  registry: Registry;
};

export type Command<O extends OptionSpecs = OptionSpecs, A extends readonly ArgSpec[] = readonly ArgSpec[]> =
  {
    /** One word; a subcommand is named inside its group (`lint` in the group `policy`). */
    name: string;
    /** One line, lower case, no final period: shown in command lists. */
    summary: string;
    /** Paragraphs for `--help`, after the usage line. */
    description?: string;
    options: O;
    args: A;
    examples?: readonly string[];
    run(ctx: Context, input: Input<O, A>): Promise<number>;
  };

/** A word that only groups subcommands: `policy`, `keys`. */
export type CommandGroup = { name: string; summary: string; commands: readonly Command[] };

export type Registry = readonly (Command | CommandGroup)[];

export function isGroup(entry: Command | CommandGroup): entry is CommandGroup {
  return "commands" in entry;
}

/** Identity, so that the flag and argument types of `run` are inferred from the declarations. */
export function defineCommand<const O extends OptionSpecs, const A extends readonly ArgSpec[]>(
  command: Command<O, A>,
): Command<O, A> {
  return command;
}

/** A command with the words that name it, for messages and help: `["policy", "lint"]`. */
export type Resolved = { path: readonly string[]; command: Command };

/** Every runnable command of the registry with its full path, in registry order. */
export function allCommands(registry: Registry): Resolved[] {
  return registry.flatMap((entry) =>
    isGroup(entry)
      ? entry.commands.map((command) => ({ path: [entry.name, command.name], command }))
      : [{ path: [entry.name], command: entry }]
  );
}
