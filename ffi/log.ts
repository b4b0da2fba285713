import { libbpf, libc } from "./libbpf.ts";

/*
 * libbpf's print callback, captured: messages printed during an operation are collected and handed to
 * that operation, so a failure surfaces in a BpfError instead of as text on stderr. Messages printed
 * outside any operation are dropped.
 */

// Warnings and info only (levels 0 and 1): debug messages are long and say nothing about failures.
const LIBBPF_INFO = 1;

const PRINT_FN = { parameters: ["i32", "pointer", "pointer"], result: "i32" } as const;
let callback: Deno.UnsafeCallback<typeof PRINT_FN> | undefined;
let collecting: string[] | undefined;
const scratch = new Uint8Array(16384);
const decoder = new TextDecoder();

function install(): void {
  if (callback) return;
  callback = new Deno.UnsafeCallback(
    PRINT_FN,
    (level, format, args) => {
      if (!collecting || level > LIBBPF_INFO || format === null || args === null) return 0;
      collecting.push(format_(format, args));
      return 0;
    },
  );
  libbpf().libbpf_set_print(callback.pointer);
}

// x86-64 va_list is one 24-byte __va_list_tag that vsnprintf advances: saved to format a second time.
const VA_LIST_BYTES = 24;

/** Formats one message; verifier logs can be megabytes long, so a short buffer is retried at full size. */
function format_(format: Deno.PointerObject, args: Deno.PointerObject): string {
  const state = new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(args, VA_LIST_BYTES));
  const saved = state.slice();
  const length = libc().vsnprintf(scratch, BigInt(scratch.length), format, args);
  if (length < scratch.length || Deno.build.arch !== "x86_64") {
    // Elsewhere va_list has another layout: keep the truncated text rather than guess.
    return decoder.decode(scratch.subarray(0, Math.max(0, Math.min(length, scratch.length - 1))));
  }
  state.set(saved);
  const full = new Uint8Array(length + 1);
  const written = libc().vsnprintf(full, BigInt(full.length), format, args);
  return decoder.decode(full.subarray(0, Math.max(0, Math.min(written, length))));
}

/** Runs `operation` with libbpf's messages captured; returns its result and what libbpf printed. */
export function withLibbpfLog<T>(operation: () => T): { result: T; log: string } {
  install();
  const outer = collecting;
  const lines: string[] = [];
  collecting = lines;
  try {
    const result = operation();
    return { result, log: lines.join("") };
  } finally {
    collecting = outer;
    outer?.push(...lines);
  }
}
