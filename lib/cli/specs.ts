/** Flags and positional arguments declared as data: what parsing, help, errors and completions read. */

/** How a shell completes a value: a path, a directory, a command name, or not at all. */
export type Completion = "file" | "directory" | "command" | "none";

/** A flag. `type`, `short`, `multiple` and `default` are passed to `node:util` `parseArgs` as they are. */
export type OptionSpec = {
  type: "string" | "boolean";
  short?: string;
  multiple?: boolean;
  default?: string | boolean | string[] | boolean[];
  description: string;
  /** Shown after the flag in help: `--key KEY`. */
  valueName?: string;
  /**
   * A string flag whose value may be left out (`--require-enforce` or `--require-enforce egress,bind`):
   * it takes the next word when that is not a flag, and is "" when given alone. Only for commands without
   * positional arguments, where the next word cannot be meant otherwise.
   */
  optionalValue?: true;
  /** The only values accepted; anything else is a usage error. */
  choices?: readonly string[];
  required?: boolean;
  complete?: Completion;
};

export type OptionSpecs = Readonly<Record<string, OptionSpec>>;

/** A positional argument. Optional and variadic (zero or more) arguments come after required ones. */
export type ArgSpec = {
  name: string;
  description: string;
  optional?: boolean;
  variadic?: boolean;
  choices?: readonly string[];
  complete?: Completion;
};
