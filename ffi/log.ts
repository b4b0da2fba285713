import { libbpf, libc } from "./libbpf.ts";

/*
 * libbpf's print callback, captured: messages printed during an operation are collected and handed to
 * that operation, so a failure surfaces in a BpfError instead of as text on stderr. Messages printed
 * outside any operation are dropped.
 */

const LIBBPF_INFO = 1;
const LIBBPF_DEBUG = 2;

const PRINT_FN = { parameters: ["i32", "pointer", "pointer"], result: "i32" } as const;
let callback: Deno.UnsafeCallback<typeof PRINT_FN> | undefined;
let collecting: string[] | undefined;
let maxLevel = LIBBPF_INFO;
const scratch = new Uint8Array(16384);
const decoder = new TextDecoder();

function install(): void {
  if (callback) return;
  callback = new Deno.UnsafeCallback(
    PRINT_FN,
    (level, format, args) => {
      if (!collecting || level > maxLevel || format === null) return 0;
      const length = libc().vsnprintf(scratch, BigInt(scratch.length), format, args);
      const end = Math.max(0, Math.min(length, scratch.length - 1));
      collecting.push(decoder.decode(scratch.subarray(0, end)));
      return 0;
    },
  );
  libbpf().libbpf_set_print(callback.pointer);
}

/** Also keep libbpf's debug messages (off by default: they are long). */
export function setLibbpfDebug(enabled: boolean): void {
  maxLevel = enabled ? LIBBPF_DEBUG : LIBBPF_INFO;
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
