/** `--help` text for the top level, a group and a command, generated from the registry. */

import { InputError } from "../errors.ts";
import { allCommands, type Command, type CommandGroup, isGroup, type Registry } from "./command.ts";
import type { ArgSpec, OptionSpec, OptionSpecs } from "./specs.ts";
import { GLOBAL_OPTIONS, HELP_OPTION } from "./globals.ts";
import { table } from "./output.ts";
import type { Palette } from "../text/palette.ts";

export const ABOUT =
  "A Linux host security agent: a host policy enforced in the kernel by BPF-LSM, cgroup socket hooks " +
  "and XDP.";

/** Help for the command or group that `words` name (`[]` for the top level), as `aegisbpf help` gives it. */
export function helpFor(registry: Registry, words: readonly string[], style: Palette): string {
  const [first, second, ...rest] = words;
  if (first === undefined) return topHelp(registry, style);
  const entry = registry.find((candidate) => candidate.name === first);
  if (entry === undefined) throw unknown(words, []);
  if (!isGroup(entry)) {
    if (second !== undefined) throw unknown(words, [first]);
    return commandHelp([first], entry, style);
  }
  if (second === undefined) return groupHelp(entry, style);
  const command = entry.commands.find((candidate) => candidate.name === second);
  if (command === undefined || rest.length > 0) throw unknown(words, [first]);
  return commandHelp([first, second], command, style);
}

function unknown(words: readonly string[], known: readonly string[]): InputError {
  return new InputError(
    `unknown command "${words.join(" ")}"; see ${["aegisbpf", ...known, "--help"].join(" ")}`,
  );
}

export function topHelp(registry: Registry, style: Palette): string {
  const rows = allCommands(registry).map((
    { path, command },
  ) => [style.bold(synopsis(path, command)), command.summary]);
  return sections([
    `${style.bold("Usage:")} aegisbpf <command> [flags]`,
    ABOUT,
    section("Commands:", rows, style),
    section("Global flags:", optionRows({ ...GLOBAL_OPTIONS, ...HELP_OPTION }), style),
    'Run "aegisbpf <command> --help" for the flags and examples of a command.',
  ]);
}

export function groupHelp(group: CommandGroup, style: Palette): string {
  const rows = group.commands.map((command) => [
    style.bold(synopsis([group.name, command.name], command)),
    command.summary,
  ]);
  return sections([
    `${style.bold("Usage:")} aegisbpf ${group.name} <command> [flags]`,
    capitalize(group.summary),
    section("Commands:", rows, style),
    globalsLine(style),
    `Run "aegisbpf ${group.name} <command> --help" for the flags and examples of a command.`,
  ]);
}

export function commandHelp(path: readonly string[], command: Command, style: Palette): string {
  const own = optionRows(command.options);
  return sections([
    `${style.bold("Usage:")} ${usageLine(path, command)}`,
    command.description ?? capitalize(command.summary),
    command.args.length > 0
      ? section("Arguments:", command.args.map((arg) => [arg.name, argDescription(arg)]), style)
      : undefined,
    section("Flags:", [...own, ...optionRows(HELP_OPTION)], style),
    command.examples && command.examples.length > 0
      ? [style.bold("Examples:"), ...command.examples.map((example) => `  ${example}`)].join("\n")
      : undefined,
    globalsLine(style),
  ]);
}

/** `aegisbpf policy sign FILE --key KEY --out BUNDLE [flags]`: required flags shown, the others summed up. */
export function usageLine(path: readonly string[], command: Command): string {
  const optional = Object.values(command.options).some((spec) => !spec.required) ? ["[flags]"] : [];
  return ["aegisbpf", synopsis(path, command), ...optional].join(" ");
}

/** The words that call a command with everything it requires: `policy sign FILE --key KEY --out BUNDLE`. */
function synopsis(path: readonly string[], command: Command): string {
  const required = Object.entries(command.options).filter(([, spec]) => spec.required)
    .map(([name, spec]) => flagLabel(name, spec));
  return [...path, ...command.args.map(argLabel), ...required].join(" ");
}

function argLabel(arg: ArgSpec): string {
  const name = arg.choices ? arg.choices.join("|") : arg.name;
  const repeated = arg.variadic ? `${name}...` : name;
  return arg.optional || arg.variadic ? `[${repeated}]` : repeated;
}

export function argDescription(arg: ArgSpec): string {
  return arg.choices ? `${arg.description} (${arg.choices.join(", ")})` : arg.description;
}

export function flagLabel(name: string, spec: OptionSpec): string {
  const shown = spec.valueName ?? spec.choices?.join("|") ?? "VALUE";
  const value = spec.type !== "string" ? "" : spec.optionalValue ? ` [${shown}]` : ` ${shown}`;
  return `--${name}${value}`;
}

function optionRows(options: OptionSpecs): string[][] {
  return Object.entries(options).map(([name, spec]) => {
    const short = spec.short ? `-${spec.short}, ` : "    ";
    const repeat = spec.multiple ? " (repeatable)" : "";
    return [`${short}${flagLabel(name, spec)}`, `${spec.description}${repeat}`];
  });
}

/** The global flags by name only: `aegisbpf --help` describes them. */
function globalsLine(style: Palette): string {
  const names = Object.keys(GLOBAL_OPTIONS).map((name) => `--${name}`);
  return `${style.bold("Global flags:")} ${names.join(", ")} (see aegisbpf --help)`;
}

function section(title: string, rows: string[][], style: Palette): string {
  return [style.bold(title), ...table(rows, 3).map((line) => `  ${line}`)].join("\n");
}

function sections(parts: readonly (string | undefined)[]): string {
  return parts.filter((part) => part !== undefined).join("\n\n");
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
