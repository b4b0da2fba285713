/**
 * What a rule's `when:` may say (the schema checks it with these), and the clock windows are decided by.
 * Kept apart from windows.ts, which walks policies, so that the schema can import it.
 */

export const DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"] as const;
export type Day = (typeof DAYS)[number];

export type RuleWindow = { days?: Day[] | undefined; from: string; to: string; tz?: string | undefined };

/** Whether `tz` is a time zone Intl knows (Area/City, or UTC). */
export function isTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

/** "HH:MM" (and, in tests only, "HH:MM:SS") to seconds of the day; undefined when malformed. */
export function secondsOfDay(text: string, allowSeconds: boolean): number | undefined {
  const match = /^([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$/.exec(text);
  if (!match || (match[3] !== undefined && !allowSeconds)) return undefined;
  return Number(match[1]) * 3600 + Number(match[2]) * 60 + Number(match[3] ?? 0);
}

/** The environment variable of the test clock: seconds added to the real clock (tests only). */
export const TEST_CLOCK_ENV = "AEGISBPF_TEST_CLOCK_OFFSET";
/** Set to 1, windows may be written to the second ("HH:MM:SS"): tests only. */
export const TEST_SECONDS_ENV = "AEGISBPF_TEST_WINDOW_SECONDS";

/** What time windows are decided by: the real clock, shifted by the test clock offset when one is set. */
export function windowClock(): number {
  return Date.now() + windowClockOffsetMs();
}

/** The test clock's offset from the real clock in milliseconds: 0 outside tests. */
export function windowClockOffsetMs(): number {
  const offset = Number(envOf(TEST_CLOCK_ENV) ?? 0);
  return Number.isFinite(offset) ? offset * 1000 : 0;
}

export function testSecondsAllowed(): boolean {
  return envOf(TEST_SECONDS_ENV) === "1";
}

function envOf(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined; // no env permission: no test clock
  }
}
