/**
 * Text from outside (a process's comm, file and cgroup names, a policy author's ids and paths, error
 * messages that quote them) made safe for a terminal and for JSON readers. One escape serves both: C0
 * controls as `\xNN`; DEL, C1 controls (U+0080-U+009F, which terminals also obey: U+009B is CSI) and
 * invisible format characters (bidi overrides and isolates, zero-width characters, line and paragraph
 * separators, the byte order mark) as `\uNNNN`, which is also a valid escape inside a JSON string. C0
 * controls never appear raw in JSON text, so a sink may pass JSON through the same function unchanged.
 */

/** Characters a terminal acts on or hides: C0, DEL, C1, and invisible format characters. */
const UNSAFE_CLASS = "\\x00-\\x1f\\x7f-\\x9f\\u061c\\u200b-\\u200f\\u2028-\\u202e\\u2060-\\u2069\\ufeff";
const UNSAFE = new RegExp(`[${UNSAFE_CLASS}]`, "g");
/** The same, but the newline: what a line writer lets through. */
const UNSAFE_IN_LINES = new RegExp(`[${UNSAFE_CLASS.replace("\\x00-\\x1f", "\\x00-\\x09\\x0b-\\x1f")}]`, "g");
/** Only what JSON.stringify leaves raw: DEL, C1 and the invisible format characters. */
const UNSAFE_IN_JSON = new RegExp(`[${UNSAFE_CLASS.replace("\\x00-\\x1f", "")}]`, "g");
const ANY_UNSAFE_IN_JSON = new RegExp(UNSAFE_IN_JSON.source);
/**
 * The palette's own colour codes (lib/cli/output.ts): the one escape sequence a colour-enabled sink lets
 * through. Anything else that starts with ESC is escaped, so outside text cannot move the cursor, clear the
 * screen, set the title or write the clipboard; at worst it changes the colour of what follows.
 */
// deno-lint-ignore no-control-regex -- the palette's own sequences are the point
const PALETTE_SGR = /^\x1b\[(?:1|2|22|31|32|33|36|39)m/;

function escape(c: string): string {
  const code = c.charCodeAt(0);
  return code < 0x20
    ? `\\x${code.toString(16).padStart(2, "0")}`
    : `\\u${code.toString(16).padStart(4, "0")}`;
}

/** One value on one line: every unsafe character escaped, newlines too. */
export function printable(value: string): string {
  return value.replace(UNSAFE, escape);
}

/**
 * What a line writer sends to a terminal or a pipe: every unsafe character escaped but the newline; with
 * `keepColor`, the palette's colour codes are kept.
 */
export function printableText(text: string, keepColor = false): string {
  return text.replace(UNSAFE_IN_LINES, (c, at: number) => {
    if (keepColor && c === "\x1b" && PALETTE_SGR.test(text.slice(at, at + 5))) return c;
    return escape(c);
  });
}

/**
 * JSON text of `value` that a terminal shows as it is: JSON.stringify, with DEL, C1 controls and invisible
 * format characters (which JSON.stringify leaves raw) escaped as `\uNNNN`. Only strings can hold them, so the
 * value read back is the same. The one JSON serializer of every JSON sink: command output, the log, the
 * event log file and the API's event stream.
 */
export function jsonText(
  value: unknown,
  replacer?: (this: unknown, key: string, value: unknown) => unknown,
  space?: number,
): string {
  const text = JSON.stringify(value, replacer, space) as string | undefined;
  return text === undefined ? String(value) : escapeJson(text);
}

/** JSON text made by another serializer (hono's `c.json`, a line read back) escaped as `jsonText` escapes. */
export function escapeJson(text: string): string {
  // Looked for before replacing: most text holds none, and a test costs about half a replace that finds none.
  return ANY_UNSAFE_IN_JSON.test(text) ? text.replace(UNSAFE_IN_JSON, escape) : text;
}
