/** Problems found in an input file, printed the way compilers print them: `FILE:LINE:COL: error: what`. */

import type { Position } from "../errors.ts";
import type { Palette } from "./palette.ts";

export type Diagnostic = {
  severity: "error" | "warning";
  position: Position;
  /** What is wrong, with or without the `FILE:LINE:COL: ` prefix. */
  message: string;
  code?: string;
};

export function diagnosticLine(diagnostic: Diagnostic, style: Palette): string {
  const where = positionText(diagnostic.position);
  const what = detail(diagnostic);
  const label = diagnostic.severity === "error" ? style.red("error") : style.yellow("warning");
  const code = diagnostic.code ? style.dim(` [${diagnostic.code}]`) : "";
  return `${style.bold(where)}: ${label}: ${what}${code}`;
}

/** A diagnostic for `--json`: the position as fields, the message without it. */
export function diagnosticJson(diagnostic: Diagnostic & { ruleId?: string }): Record<string, unknown> {
  const { severity, position, code, ruleId } = diagnostic;
  return { severity, ...position, message: detail(diagnostic), ...code && { code }, ...ruleId && { ruleId } };
}

function detail(diagnostic: Diagnostic): string {
  const where = positionText(diagnostic.position);
  return diagnostic.message.startsWith(`${where}: `)
    ? diagnostic.message.slice(where.length + 2)
    : diagnostic.message;
}

/** `FILE:LINE:COL`, or as much of it as is known. */
export function positionText(position: Position): string {
  return [position.file, position.line, position.column].filter((part) => part !== undefined).join(":");
}

/** "1 error", "2 warnings". */
export function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}
