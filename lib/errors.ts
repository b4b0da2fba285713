/**
 * The error classes that choose an exit code (SPEC section 2). Every module throws one of these, or a
 * subclass, for a failure a person should read; anything else is a runtime failure (exit 1).
 */

/** Where in an input file a problem is. */
export type Position = { file: string; line?: number; column?: number };

/** Bad input: a flag, a policy, a bundle, a key. Exit 2. */
export class InputError extends Error {
  override name = "InputError";
  readonly position: Position | undefined;
  constructor(message: string, options: ErrorOptions & { position?: Position } = {}) {
    super(message, options);
    this.position = options.position;
  }
}

/** Refused for safety: enforcement impossible, a replayed or expired bundle, a lock-out risk. Exit 3. */
export class RefusedError extends Error {
  override name = "RefusedError";
}

/** An error's message, or what was thrown as text when it is not an Error. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
