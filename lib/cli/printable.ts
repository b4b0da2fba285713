/** Text from outside (event fields, file names) made safe for a terminal. */

/**
 * Text safe to print on a terminal: control characters (C0, DEL, C1) as `\xNN`. A process chooses its own
 * `comm` and file names, and must not be able to move the cursor or rewrite the operator's screen.
 */
export function printable(value: string): string {
  // deno-lint-ignore no-control-regex
  return value.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}
