/** Leveled logging to stderr: one readable line (text) or one JSON object per line (json). */

import type { LogFormat, LogLevel } from "./globals.ts";
import { type AsyncSink, LineQueue } from "./line_queue.ts";
import type { Writer } from "./output.ts";
import type { Palette } from "../text/palette.ts";
import { jsonText, printable } from "../text/printable.ts";

export type Fields = Readonly<Record<string, unknown>>;
export type LogMethod = (message: string, fields?: Fields) => void;
export type Logger = Record<LogLevel, LogMethod> & { enabled(level: LogLevel): boolean };

const RANK: Readonly<Record<LogLevel, number>> = { debug: 0, info: 1, warn: 2, error: 3 };

export type LoggerOptions = {
  format: LogFormat;
  level: LogLevel;
  writer: Writer;
  palette: Palette;
  now?: () => Date;
};

export function createLogger(
  { format, level, writer, palette, now = () => new Date() }: LoggerOptions,
): Logger {
  const enabled = (at: LogLevel) => RANK[at] >= RANK[level];
  const method = (at: LogLevel): LogMethod => (message, fields = {}) => {
    if (!enabled(at)) return;
    writer.line(
      format !== "text"
        ? jsonText({ ts: now().toISOString(), level: at, msg: message, ...fields })
        : textLine(at, message, fields, palette),
    );
  };
  return {
    debug: method("debug"),
    info: method("info"),
    warn: method("warn"),
    error: method("error"),
    enabled,
  };
}

/**
 * A logger whose lines go through a LineQueue onto `sink`: logging never waits for a stalled reader (the
 * agent's stderr is the same journald stream as its stdout). Lines it had no room for are counted and
 * reported by one more line once the reader caught up; `flush` waits for the rest, at most `ms`.
 */
export function queuedLogger(
  options: Omit<LoggerOptions, "writer">,
  sink: AsyncSink,
): Logger & { flush(ms: number): Promise<boolean> } {
  const queue: LineQueue = new LineQueue(sink, {
    onDropped: (count) => logger.warn(`stderr: ${count} log lines not written: its reader was too slow`),
    onClosed: () => {},
  });
  const writer: Writer = {
    write: (text) => void queue.line(text.replace(/\n$/, "")),
    line: (text = "") => void queue.line(text),
    sink,
  };
  const logger = createLogger({ ...options, writer });
  return Object.assign(logger, { flush: (ms: number) => queue.flush(ms) });
}

function textLine(level: LogLevel, message: string, fields: Fields, palette: Palette): string {
  const label = { debug: palette.dim, info: palette.cyan, warn: palette.yellow, error: palette.red }[level];
  const pairs = Object.entries(fields).map(([key, value]) =>
    ` ${palette.dim(`${key}=`)}${formatValue(value)}`
  );
  // One line per message: a newline in a quoted path must not forge a second line.
  return `aegisbpf: ${label(level)}: ${printable(message)}${pairs.join("")}`;
}

/** Plain words stay bare; anything with spaces, quotes or structure is JSON, so a line stays one line. */
function formatValue(value: unknown): string {
  if (typeof value === "string" && /^[^\s"=]+$/.test(value)) return printable(value);
  return jsonText(value);
}
