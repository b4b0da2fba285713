/**
 * Reads the command line in two passes with `node:util` `parseArgs`: the first finds the command's words
 * (only global flags may come before them), the second reads every other word against the global flags and
 * the command's own. Every mistake is an `InputError` naming the flag and the help to read.
 */

import { parseArgs } from "node:util";
import { InputError } from "../errors.ts";
import { type Command, type CommandGroup, isGroup, type Registry } from "./command.ts";
import type { ArgSpec, OptionSpecs } from "./specs.ts";
import { GLOBAL_OPTIONS, type GlobalFlags, HELP_OPTION } from "./globals.ts";

export type FlagValue = string | boolean | string[] | boolean[];
export type ArgValue = string | string[] | undefined;

/** What the command line asks for: a command to run, or help for the top level, a group or a command. */
export type Invocation = {
  /** The words that named the command or group; empty for `aegisbpf` alone. */
  path: string[];
  /** The command or group named; undefined for the top level. */
  target: Command | CommandGroup | undefined;
  help: boolean;
  globals: GlobalFlags;
  flags: Record<string, FlagValue>;
  args: Record<string, ArgValue>;
};

type Token = ReturnType<typeof tokenize>[number];

export function parseInvocation(argv: readonly string[], registry: Registry): Invocation {
  const { path, target, pathIndices } = findTarget(argv, registry);
  const rest = argv.filter((_, i) => !pathIndices.has(i));
  const own = target !== undefined && !isGroup(target) ? target.options : {};
  const specs: OptionSpecs = { ...GLOBAL_OPTIONS, ...HELP_OPTION, ...own };
  const where = new Where(path);
  const { flags, positionals } = readFlags(tokenize(rest, specs), specs, where);
  const help = flags.help === true;
  delete flags.help;
  const globals = takeGlobals(flags);
  if (help || target === undefined || isGroup(target)) {
    const [extra] = positionals;
    if (extra !== undefined) throw where.error(`unexpected argument "${extra}"`);
    return { path, target, help, globals, flags: {}, args: {} };
  }
  checkRequired(target.options, flags, where);
  applyDefaults(target.options, flags);
  return { path, target, help, globals, flags, args: readArgs(target.args, positionals, where) };
}

/**
 * Global flags as given, leniently: used to choose the error format before the command line is known to
 * be valid.
 */
export function peekGlobals(argv: readonly string[]): GlobalFlags {
  const { values } = parseArgs({
    args: [...argv],
    options: GLOBAL_OPTIONS,
    strict: false,
    allowPositionals: true,
  });
  const pick = (name: "log-format" | "log-level") => {
    const value = values[name];
    return typeof value === "string" && GLOBAL_OPTIONS[name].choices.some((c) => c === value)
      ? value
      : undefined;
  };
  const format = pick("log-format");
  const level = pick("log-level");
  return { ...(format && { "log-format": format }), ...(level && { "log-level": level }) };
}

/** Says which command a message is about and which help to read. */
class Where {
  constructor(readonly path: readonly string[]) {}
  get name(): string {
    return this.path.join(" ");
  }
  /** The message, the command it is about (unless `about` is false) and the help to read. */
  error(message: string, about = true): InputError {
    const of = about && this.path.length > 0 ? ` for "${this.name}"` : "";
    const help = ["aegisbpf", ...this.path, "--help"].join(" ");
    return new InputError(`${message}${of}; see ${help}`);
  }
}

function tokenize(args: readonly string[], specs: OptionSpecs) {
  const options = Object.fromEntries(
    Object.entries(specs).map(([name, { type: declared, short, optionalValue }]) => {
      // Tokenized as a switch, so that a flag after it is never taken for its value.
      const type = optionalValue ? "boolean" : declared;
      return [name, short ? { type, short } : { type }];
    }),
  );
  return parseArgs({ args: [...args], options, strict: false, allowPositionals: true, tokens: true }).tokens;
}

/** The command or group the leading words name, and where those words are in argv. */
function findTarget(argv: readonly string[], registry: Registry) {
  const specs: OptionSpecs = { ...GLOBAL_OPTIONS, ...HELP_OPTION };
  const path: string[] = [];
  const pathIndices = new Set<number>();
  let target: Command | CommandGroup | undefined;
  for (const token of tokenize(argv, specs)) {
    if (target !== undefined && !isGroup(target)) break;
    if (token.kind === "option-terminator") break;
    if (token.kind === "option") {
      if (!(token.name in specs)) throw new Where(path).error(`unknown flag ${token.rawName}`);
      continue;
    }
    const entries: Registry = target === undefined ? registry : target.commands;
    const found = entries.find((entry) => entry.name === token.value);
    if (found === undefined) {
      throw new Where(path).error(`unknown command "${[...path, token.value].join(" ")}"`, false);
    }
    target = found;
    path.push(token.value);
    pathIndices.add(token.index);
  }
  return { path, target, pathIndices };
}

function readFlags(tokens: Token[], specs: OptionSpecs, where: Where) {
  const flags: Record<string, FlagValue> = {};
  const positionals: string[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    if (token.kind === "positional") positionals.push(token.value);
    if (token.kind !== "option") continue;
    const spec = specs[token.name];
    if (spec === undefined) throw where.error(`unknown flag ${token.rawName}`);
    const next = tokens[i + 1];
    const taken = spec.optionalValue && token.value === undefined && next?.kind === "positional"
      ? (i++, next.value)
      : undefined;
    const value = spec.optionalValue
      ? optionalFlagValue(token, taken ?? token.value ?? "", spec)
      : flagValue(token, spec, where);
    const previous = flags[token.name];
    if (spec.multiple) flags[token.name] = [...(previous as unknown[] ?? []), value] as FlagValue;
    else if (previous !== undefined) throw where.error(`flag --${token.name} given twice`);
    else flags[token.name] = value;
  }
  return { flags, positionals };
}

function flagValue(
  token: Token & { kind: "option" },
  spec: OptionSpecs[string],
  where: Where,
): string | boolean {
  if (spec.type === "boolean") {
    if (token.value !== undefined) throw where.error(`flag ${token.rawName} takes no value`);
    return true;
  }
  if (token.value === undefined) throw where.error(`flag ${token.rawName} needs a value`);
  checkChoice(token.value, `--${token.name}`, spec.choices);
  return token.value;
}

function optionalFlagValue(
  token: Token & { kind: "option" },
  value: string,
  spec: OptionSpecs[string],
): string {
  if (value !== "") checkChoice(value, `--${token.name}`, spec.choices);
  return value;
}

function checkChoice(value: string, what: string, choices: readonly string[] | undefined): void {
  if (choices === undefined || choices.includes(value)) return;
  throw new InputError(`bad value "${value}" for ${what}; use ${orList(choices)}`);
}

/** "a", "a or b", "a, b or c". */
export function orList(words: readonly string[]): string {
  return words.length <= 1 ? words.join("") : `${words.slice(0, -1).join(", ")} or ${words.at(-1)}`;
}

function takeGlobals(flags: Record<string, FlagValue>): GlobalFlags {
  const globals: GlobalFlags = {};
  for (const name of Object.keys(GLOBAL_OPTIONS) as (keyof typeof GLOBAL_OPTIONS)[]) {
    const value = flags[name];
    if (typeof value === "string") globals[name] = value;
    delete flags[name];
  }
  return globals;
}

function checkRequired(options: OptionSpecs, flags: Record<string, FlagValue>, where: Where): void {
  for (const [name, spec] of Object.entries(options)) {
    if (spec.required && flags[name] === undefined) throw where.error(`missing --${name}`);
  }
}

function applyDefaults(options: OptionSpecs, flags: Record<string, FlagValue>): void {
  for (const [name, spec] of Object.entries(options)) {
    if (flags[name] === undefined && spec.default !== undefined) flags[name] = spec.default;
  }
}

function readArgs(specs: readonly ArgSpec[], positionals: string[], where: Where): Record<string, ArgValue> {
  const args: Record<string, ArgValue> = {};
  let next = 0;
  for (const spec of specs) {
    const values = spec.variadic ? positionals.slice(next) : positionals.slice(next, next + 1);
    next += values.length;
    if (values.length === 0 && !spec.optional && !spec.variadic) throw where.error(`missing ${spec.name}`);
    for (const value of values) checkChoice(value, spec.name, spec.choices);
    args[spec.name] = spec.variadic ? values : values[0];
  }
  const extra = positionals[next];
  if (extra !== undefined) throw where.error(`unexpected argument "${extra}"`);
  return args;
}
