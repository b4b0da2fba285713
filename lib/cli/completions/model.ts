/** What every shell's completion script needs to know, read once from the registry. */

import { allCommands, isGroup, type Registry } from "../command.ts";
import type { ArgSpec, Completion, OptionSpecs } from "../specs.ts";
import { GLOBAL_OPTIONS, HELP_OPTION } from "../globals.ts";

export type Flag = {
  name: string;
  short: string | undefined;
  description: string;
  takesValue: boolean;
  choices: readonly string[] | undefined;
  complete: Completion;
};

export type Word = { name: string; summary: string };

export type CommandModel = {
  path: readonly string[];
  summary: string;
  flags: Flag[];
  args: readonly ArgSpec[];
};

export type Model = {
  /** Commands and groups at the top level. */
  top: Word[];
  groups: { name: string; commands: Word[] }[];
  commands: CommandModel[];
  /** Accepted everywhere, `--help` included. */
  globals: Flag[];
};

export function completionModel(registry: Registry): Model {
  return {
    top: registry.map(({ name, summary }) => ({ name, summary })),
    groups: registry.filter(isGroup).map(({ name, commands }) => ({
      name,
      commands: commands.map(({ name, summary }) => ({ name, summary })),
    })),
    commands: allCommands(registry).map(({ path, command }) => ({
      path,
      summary: command.summary,
      flags: flags(command.options),
      args: command.args,
    })),
    globals: flags({ ...GLOBAL_OPTIONS, ...HELP_OPTION }),
  };
}

function flags(options: OptionSpecs): Flag[] {
  return Object.entries(options).map(([name, spec]) => ({
    name,
    short: spec.short,
    description: spec.description,
    takesValue: spec.type === "string" && !spec.optionalValue,
    choices: spec.choices,
    complete: spec.complete ?? "none",
  }));
}

/** Every flag that takes a value, anywhere: a completer skips the word after it. */
export function valueFlags(model: Model): string[] {
  const all = [...model.globals, ...model.commands.flatMap((command) => command.flags)];
  return [...new Set(all.filter((flag) => flag.takesValue).map((flag) => `--${flag.name}`))];
}

/** Single-quoted the way bash, zsh and fish all read back unchanged. */
export function singleQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}
