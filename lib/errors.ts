/** Exit codes, the same for every command (SPEC section 2). */
export const EXIT = { ok: 0, failure: 1, usage: 2, refused: 3 } as const;
export type ExitCode = typeof EXIT[keyof typeof EXIT];

/** Bad flags, arguments or input: exit 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** Refused for safety: exit 3. */
export class RefusedError extends Error {
  override name = "RefusedError";
}

/** The exit code for an error that reached the top of a command. */
export function exitCodeFor(error: unknown): ExitCode {
  if (error instanceof UsageError) return EXIT.usage;
  if (error instanceof RefusedError) return EXIT.refused;
  return EXIT.failure;
}

/** The one line printed for an error: `aegisbpf: error: …` (text) or a JSON object. */
export function formatError(error: unknown, format: "text" | "json"): string {
  const message = error instanceof Error ? error.message : String(error);
  if (format === "json") {
    const kind = error instanceof Error ? error.name : "Error";
    return JSON.stringify({ level: "error", error: kind, message, exitCode: exitCodeFor(error) });
  }
  return `aegisbpf: error: ${message.replaceAll("\n", "\n  ")}`;
}
