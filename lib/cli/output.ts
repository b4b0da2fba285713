/** Writing text for people: a line writer, colour only where it is welcome, aligned tables. */

import type { AsyncSink } from "./line_queue.ts";
import { printableText } from "../text/printable.ts";

export type Writer = {
  /** Writes the text as it is. */
  write(text: string): void;
  /** Writes the text and a newline. */
  line(text?: string): void;
  /** The same output written asynchronously, for a writer that must never wait for its reader (LineQueue). */
  sink: AsyncSink;
};

/** The reader went away (`aegisbpf ... | head`): the command stops, quietly, and nothing failed. */
export class OutputClosedError extends Error {
  override name = "OutputClosedError";
}

/** A writer onto a file such as `Deno.stdout`, writing every byte before it returns. */
export function fileWriter(file: { writeSync(data: Uint8Array): number } & AsyncSink): Writer {
  const encoder = new TextEncoder();
  const write = (text: string) => {
    let bytes = encoder.encode(text);
    try {
      while (bytes.length > 0) bytes = bytes.subarray(file.writeSync(bytes));
    } catch (error) {
      throw closedOr(error);
    }
  };
  const writeAsync = (data: Uint8Array) =>
    file.write(data).catch((error) => {
      throw closedOr(error);
    });
  const sink: AsyncSink = { write: writeAsync, writePrintable: writeAsync };
  return { write, line: (text = "") => write(`${text}\n`), sink };
}

/** A broken pipe is the reader gone (OutputClosedError); any other error stays what it is. */
function closedOr(error: unknown): unknown {
  return error instanceof Deno.errors.BrokenPipe
    ? new OutputClosedError("output closed", { cause: error })
    : error;
}

/**
 * A writer that escapes what a terminal would act on (lib/text/printable.ts) before `writer` sees it: every
 * command's output and log lines go through one, so no value from outside reaches the terminal raw.
 * `keepColor` lets the palette's own colour codes through.
 */
export function printableWriter(writer: Writer, keepColor: boolean): Writer {
  const write = (text: string) => writer.write(printableText(text, keepColor));
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  const sink: AsyncSink = {
    // The queue hands over whole lines: escaped, then written whole, and counted as the bytes it gave.
    // Printable ASCII and newlines (JSON lines, which jsonText made safe, and most text) pass as they are,
    // without a decode, an escape and an encode of a flood's every byte.
    write: async (data) => {
      let bytes = plainAscii(data) ? data : encoder.encode(printableText(decoder.decode(data), keepColor));
      while (bytes.length > 0) bytes = bytes.subarray(await writer.sink.write(bytes));
      return data.length;
    },
    // Printable already (the event writer's JSON lines): not looked at again.
    writePrintable: (data) =>
      writer.sink.writePrintable ? writer.sink.writePrintable(data) : writer.sink.write(data),
  };
  return { write, line: (text = "") => write(`${text}\n`), sink };
}

/**
 * Whether `data` is only printable ASCII and newlines: bytes printableText leaves as they are. Anything
 * else (C0 controls, DEL, and every byte of a multi-byte UTF-8 character, among them C1 controls and the
 * invisible format characters) sends the text through printableText.
 */
export function plainAscii(data: Uint8Array): boolean {
  let i = 0;
  while (i < data.length && ((data.byteOffset + i) & 3) !== 0) if (!plainByte(data[i++]!)) return false;
  if (i === data.length) return true;
  // Four bytes at a time: a word passes when no byte has the high bit, none is below 0x20 and none is DEL
  // (the bit tricks of "Bit Twiddling Hacks", hasless and haszero); a word that fails (a newline among
  // them) is looked at byte by byte.
  const words = new Uint32Array(data.buffer, data.byteOffset + i, (data.length - i) >> 2);
  for (let k = 0; k < words.length; k++) {
    const word = words[k]!;
    const del = word ^ 0x7f7f7f7f;
    if (
      ((word & 0x80808080) | ((word - 0x20202020) & ~word & 0x80808080) |
        ((del - 0x01010101) & ~del & 0x80808080)) === 0
    ) continue;
    const at = i + 4 * k;
    if (
      !plainByte(data[at]!) || !plainByte(data[at + 1]!) || !plainByte(data[at + 2]!) ||
      !plainByte(data[at + 3]!)
    ) {
      return false;
    }
  }
  for (i += 4 * words.length; i < data.length; i++) if (!plainByte(data[i]!)) return false;
  return true;
}

function plainByte(byte: number): boolean {
  return (byte >= 0x20 && byte < 0x7f) || byte === 0x0a;
}

/** A writer that keeps what it is given, for tests. */
export function bufferWriter(): Writer & { text(): string } {
  let buffer = "";
  const write = (text: string) => void (buffer += text);
  const decoder = new TextDecoder();
  const sink: AsyncSink = {
    write: (data) => {
      write(decoder.decode(data));
      return Promise.resolve(data.length);
    },
  };
  return { write, line: (text = "") => write(`${text}\n`), text: () => buffer, sink };
}

/**
 * Colour only on a terminal, never when NO_COLOR is set to anything but the empty string
 * (https://no-color.org); FORCE_COLOR (not "0") asks for colour off a terminal.
 */
export function useColor(isTTY: boolean, env: (name: string) => string | undefined): boolean {
  if (isSet(env("NO_COLOR"))) return false;
  const force = env("FORCE_COLOR");
  return isTTY || (isSet(force) && force !== "0");
}

function isSet(value: string | undefined): value is string {
  return value !== undefined && value !== "";
}

// deno-lint-ignore no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

/** Columns a string takes on a terminal, ignoring colour codes. */
export function visibleWidth(text: string): number {
  return [...text.replace(ANSI, "")].length;
}

/**
 * Rows as lines with every column but the last padded to its widest cell, separated by `gap` spaces.
 * Cells may carry colour; anything else a terminal would act on is escaped (lib/text/printable.ts). The
 * last column is never padded, so no line ends in spaces.
 */
export function table(cellsOf: readonly (readonly string[])[], gap = 2): string[] {
  // Escaped before measuring, so that columns stay aligned once the sink has escaped nothing more.
  const rows = cellsOf.map((row) => row.map((cell) => printableText(cell, true)));
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => widths[i] = Math.max(widths[i] ?? 0, visibleWidth(cell)));
  }
  return rows.map((row) =>
    row.map((cell, i) =>
      i === row.length - 1 ? cell : cell + " ".repeat((widths[i] ?? 0) - visibleWidth(cell))
    )
      .join(" ".repeat(gap))
  );
}
