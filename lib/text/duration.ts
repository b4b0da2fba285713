import { InputError } from "../errors.ts";

const UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * A duration flag such as `30s`, `5m`, `1h30m` or `1500ms`, in milliseconds. `flag` names it in the error.
 * A bare number, a zero or negative duration and unknown units are refused.
 */
export function parseDuration(text: string, flag: string): number {
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)];
  const consumed = parts.map((part) => part[0]).join("");
  if (parts.length === 0 || consumed !== text) {
    throw new InputError(
      `${flag} ${JSON.stringify(text)} is not a duration: write for example 30s, 5m, 1h30m or 1500ms`,
    );
  }
  const ms = parts.reduce((sum, part) => sum + Number(part[1]) * UNITS[part[2]!]!, 0);
  if (!(ms > 0) || !Number.isFinite(ms)) {
    throw new InputError(`${flag} must be longer than zero: got ${text}`);
  }
  return ms;
}
