/**
 * Time windows: a rule with `when: { days, from, to, tz }` is in force only while the local clock of `tz`
 * (UTC by default) reads inside the window. The math is by wall clock, with Intl's time zone data:
 * - `from` > `to` is a window across midnight (22:00-06:00): it belongs to the day it starts on, so
 *   `days: [fri]` is in force from Friday 22:00 to Saturday 06:00;
 * - on the day a clock springs forward, a boundary in the skipped hour takes effect at the jump;
 * - on the day a clock goes back, the repeated hour is read twice: a window covering it is in force both
 *   times, and one whose boundary falls in it changes at each reading (at most the hour itself).
 * compile.ts leaves out the rules whose window is closed at the instant it is given; `nextBoundary` is the
 * next instant anything may change.
 */
import { DAYS, type RuleWindow, secondsOfDay } from "./window_spec.ts";

export { type RuleWindow, windowClock, windowClockOffsetMs } from "./window_spec.ts";

const formatters = new Map<string, Intl.DateTimeFormat>();

/** The wall clock of `tz` at `ms`: the date as a UTC day number, the weekday and the seconds of the day. */
function wallClock(ms: number, tz: string): { dayNumber: number; weekday: number; seconds: number } {
  let format = formatters.get(tz);
  if (!format) {
    format = new Intl.DateTimeFormat("en-US", {
      timeZone: tz,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
    formatters.set(tz, format);
  }
  const parts: Record<string, number> = {};
  for (const part of format.formatToParts(ms)) {
    if (part.type !== "literal") parts[part.type] = Number(part.value);
  }
  const dayNumber = Date.UTC(parts.year!, parts.month! - 1, parts.day!) / 86_400_000;
  return {
    dayNumber,
    weekday: (dayNumber + 4) % 7, // 1970-01-01 was a Thursday
    seconds: parts.hour! * 3600 + parts.minute! * 60 + parts.second!,
  };
}

/** Whether `window` is open at `ms` (milliseconds since the epoch). */
export function windowOpen(window: RuleWindow, ms: number): boolean {
  const { weekday, seconds } = wallClock(ms, window.tz ?? "UTC");
  const from = secondsOfDay(window.from, true)!;
  const to = secondsOfDay(window.to, true)!;
  const on = (day: number) => window.days === undefined || window.days.includes(DAYS[(day + 7) % 7]!);
  if (from < to) return on(weekday) && seconds >= from && seconds < to;
  return (on(weekday) && seconds >= from) || (on(weekday - 1) && seconds < to);
}

/** Offset of `tz` from UTC at `ms`, in milliseconds (whole seconds). */
function offsetMs(ms: number, tz: string): number {
  const wall = wallClock(ms, tz);
  return (wall.dayNumber * 86_400 + wall.seconds) * 1000 - Math.floor(ms / 1000) * 1000;
}

/**
 * The next instant after `ms` at which `window` opens or closes, within the coming eight days (a window
 * that never changes: Infinity). Candidates are each `from` and `to` of those days and each change of the
 * zone's offset (a clock going back re-reads an hour, one springing forward jumps over a boundary); the
 * first at which the window's state differs from the second before is the answer.
 */
export function nextWindowBoundary(window: RuleWindow, ms: number): number {
  const tz = window.tz ?? "UTC";
  const today = wallClock(ms, tz).dayNumber;
  const times = [secondsOfDay(window.from, true)!, secondsOfDay(window.to, true)!];
  const candidates: number[] = [];
  for (let day = today - 1; day <= today + 8; day++) {
    for (const seconds of times) {
      const local = (day * 86_400 + seconds) * 1000;
      // Two passes: the offset at the guess, then at the answer (they differ across a change of offset).
      const first = local - offsetMs(local, tz);
      candidates.push(first, local - offsetMs(first, tz));
    }
    // A change of offset inside this day (DST): found to the second.
    let low = day * 86_400_000 - 14 * 3_600_000;
    let high = low + 86_400_000;
    const before = offsetMs(low, tz);
    if (before !== offsetMs(high, tz)) {
      while (high - low > 1000) {
        const mid = Math.floor((low + high) / 2000) * 1000;
        if (offsetMs(mid, tz) === before) low = mid;
        else high = mid;
      }
      candidates.push(high);
    }
  }
  const changes = candidates.filter((at) => at > ms).sort((a, b) => a - b);
  return changes.find((at) => windowOpen(window, at) !== windowOpen(window, at - 1000)) ?? Infinity;
}

/** The next instant after `ms` at which any of `windows` may open or close; undefined without any. */
export function nextBoundary(windows: readonly { when: RuleWindow }[], ms: number): number | undefined {
  const next = Math.min(...windows.map(({ when }) => nextWindowBoundary(when, ms)));
  return Number.isFinite(next) ? next : undefined;
}
