/** From argv to an exit code: parse, give help or run the command, and report whatever it throws. */

import { InputError } from "../errors.ts";
import { type Context, isGroup, type Registry } from "./command.ts";
import { reportError, type ReportOptions } from "./exit.ts";
import { type GlobalFlags, type Globals, resolveGlobals } from "./globals.ts";
import { commandHelp, groupHelp, topHelp } from "./help.ts";
import { createLogger } from "./log.ts";
import { fileWriter, printableWriter, useColor, type Writer } from "./output.ts";
import { palette } from "../text/palette.ts";
import { type Invocation, parseInvocation, peekGlobals } from "./parse.ts";

/** The process's streams and environment, replaceable in tests. */
export type Io = {
  stdout: Writer;
  stderr: Writer;
  stdoutIsTTY: boolean;
  stderrIsTTY: boolean;
  env: (name: string) => string | undefined;
};

export function processIo(): Io {
  return {
    stdout: fileWriter(Deno.stdout),
    stderr: fileWriter(Deno.stderr),
    stdoutIsTTY: Deno.stdout.isTerminal(),
    stderrIsTTY: Deno.stderr.isTerminal(),
    env: (name) => Deno.env.get(name),
  };
}

export async function runCli(argv: readonly string[], registry: Registry, raw: Io): Promise<number> {
  const io = printableIo(raw);
  let report = reportOptions(peekGlobals(argv), io);
  try {
    const invocation = parseInvocation(argv, registry);
    const globals = resolveGlobals(invocation.globals, io.env);
    report = reportOptions(invocation.globals, io);
    return await dispatch(invocation, makeContext(globals, registry, io), io);
  } catch (error) {
    return reportError(error, report);
  }
}

async function dispatch(invocation: Invocation, ctx: Context, io: Io): Promise<number> {
  const { target, path, help } = invocation;
  if (target !== undefined && !isGroup(target) && !help) {
    return await target.run(ctx, { flags: invocation.flags, args: invocation.args });
  }
  if (!help && ctx.globals.logFormat !== "text") {
    throw new InputError(`missing command; see ${["aegisbpf", ...path, "--help"].join(" ")}`);
  }
  // Help asked for goes to stdout; help instead of a missing command goes to stderr with exit 2.
  const writer = help ? ctx.stdout : io.stderr;
  const style = palette(help ? ctx.color : useColor(io.stderrIsTTY, io.env));
  if (target === undefined) writer.line(topHelp(ctx.registry, style));
  else if (isGroup(target)) writer.line(groupHelp(target, style));
  else writer.line(commandHelp(path, target, style));
  return help ? 0 : 2;
}

/** Every line the CLI writes passes one escaping sink; colour codes only where colour is on. */
function printableIo(io: Io): Io {
  return {
    ...io,
    stdout: printableWriter(io.stdout, useColor(io.stdoutIsTTY, io.env)),
    stderr: printableWriter(io.stderr, useColor(io.stderrIsTTY, io.env)),
  };
}

function makeContext(globals: Globals, registry: Registry, io: Io): Context {
  const color = useColor(io.stdoutIsTTY, io.env);
  const log = createLogger({
    format: globals.logFormat,
    level: globals.logLevel,
    writer: io.stderr,
    palette: palette(useColor(io.stderrIsTTY, io.env)),
  });
  return { globals, stdout: io.stdout, stderr: io.stderr, isTTY: io.stdoutIsTTY, color, log, registry };
}

function reportOptions(flags: GlobalFlags, io: Io): ReportOptions {
  return {
    format: flags["log-format"] === "json" || flags["log-format"] === "ocsf" ? "json" : "text",
    debug: flags["log-level"] === "debug",
    writer: io.stderr,
    palette: palette(useColor(io.stderrIsTTY, io.env)),
  };
}
