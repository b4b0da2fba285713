/**
 * The one place that turns a thrown error into what the user sees and the exit code (SPEC section 2):
 * 0 success, 1 runtime failure, 2 usage error or invalid input, 3 refused for safety.
 */

import { InputError, messageOf, type Position, RefusedError } from "../errors.ts";
import type { LogFormat } from "./globals.ts";
import { OutputClosedError, type Writer } from "./output.ts";
import type { Palette } from "../text/palette.ts";
import { jsonText } from "../text/printable.ts";

export const EXIT = { ok: 0, failure: 1, input: 2, refused: 3 } as const;

export function exitCodeFor(error: unknown): number {
  if (error instanceof InputError) return EXIT.input;
  if (error instanceof RefusedError) return EXIT.refused;
  return EXIT.failure;
}

export type ReportOptions = { format: LogFormat; debug: boolean; writer: Writer; palette: Palette };

/** Prints the error as one line (text) or one JSON object (json, ocsf); the stack only when `debug`. */
export function reportError(error: unknown, { format, debug, writer, palette }: ReportOptions): number {
  if (error instanceof OutputClosedError) return EXIT.ok;
  const exitCode = exitCodeFor(error);
  const message = messageOf(error);
  const position = error instanceof InputError ? error.position : undefined;
  if (format !== "text") {
    const stack = debug ? { stack: stackOf(error) } : {};
    writer.line(jsonText({ level: "error", error: message, exitCode, ...position, ...stack }));
    return exitCode;
  }
  const [first = "", ...more] = withPosition(message, position).split("\n");
  const hint = more.length > 0 && !debug ? " (the full message with --log-level debug)" : "";
  writer.line(`aegisbpf: ${palette.red("error")}: ${first}${hint}`);
  if (debug) writer.line(stackOf(error));
  return exitCode;
}

/** `FILE:LINE:COL: message`, unless the message already says where. */
function withPosition(message: string, position: Position | undefined): string {
  if (position === undefined) return message;
  const at = [position.file, position.line, position.column].filter((part) => part !== undefined).join(":");
  const said = position.line === undefined ? position.file : `${position.file}:${position.line}`;
  return message.includes(said) ? message : `${at}: ${message}`;
}

/** The stack of the error and of each cause, or the message where there is no stack. */
function stackOf(error: unknown): string {
  const parts: string[] = [];
  for (let current = error, depth = 0; current !== undefined && depth < 8; depth++) {
    parts.push(current instanceof Error ? current.stack ?? current.message : String(current));
    current = current instanceof Error ? current.cause : undefined;
  }
  return parts.join("\nCaused by: ");
}
