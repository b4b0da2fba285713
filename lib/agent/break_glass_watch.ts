/**
 * The running agent's side of break-glass (SPEC section 5): at start it honours the marker and the kernel
 * command line flag `aegisbpf.break_glass=1`; then, looked at when the marker's directory changes (inotify)
 * and at the agent's tick, it notices the marker created or removed by hand (`touch` / `rm` from a rescue shell) and flips the kernel word to match, and
 * reports every change of the kernel word, whoever made it (`break-glass on|off`, a TTL running out).
 */

import { readModeWords, writeBreakGlass } from "../kernel/mode_words.ts";
import { type BreakGlassMarker, CMDLINE_FLAG, markerPath, readMarker } from "../state/break_glass_marker.ts";
import { removeIfPresent } from "../state/files.ts";

export { CMDLINE_ENV, CMDLINE_FLAG, cmdlineBreakGlass } from "../state/break_glass_marker.ts";

/** What changed, for the agent to report as `break_glass.on` / `break_glass.off`. */
export type BreakGlassChange = { on: boolean; fields: Record<string, unknown> };

type Paths = { configDir: string; bpffs: string };

function activeMarker(configDir: string, nowMs: number): { marker?: BreakGlassMarker; expired: boolean } {
  const marker = readMarker(configDir);
  if (marker === undefined) return { expired: false };
  if (marker.untilMs !== undefined && marker.untilMs <= nowMs) return { marker, expired: true };
  return { marker, expired: false };
}

function markerFields(marker: BreakGlassMarker): Record<string, unknown> {
  return {
    reason: marker.reason ?? (marker.problem === undefined ? "marker created by hand" : "marker unreadable"),
    ...(marker.until === undefined ? {} : { until: marker.until }),
    ...(marker.problem === undefined ? {} : { problem: marker.problem }),
  };
}

export class BreakGlassWatch {
  readonly #paths: Paths;
  readonly #cmdline: boolean;
  readonly #warn: (message: string) => void;
  #markerActive = false;
  #kernelOn = false;
  /** The marker's problem last warned about: each is said once, not every poll. */
  #problem: string | undefined;

  constructor(paths: Paths, cmdline: boolean, warn: (message: string) => void) {
    this.#paths = paths;
    this.#cmdline = cmdline;
    this.#warn = warn;
  }

  /**
   * Makes the kernel word what the marker and command line say: on if either asks, off otherwise (the
   * `break-glass` command writes the marker before the word, so a word on with no marker was turned off by
   * hand while no agent ran). Returns the change to report, if the word ends up on.
   */
  start(): BreakGlassChange | undefined {
    const now = Date.now();
    const { marker, expired } = this.#read(now);
    if (expired) removeIfPresent(markerPath(this.#paths.configDir));
    this.#markerActive = marker !== undefined && !expired;
    const on = this.#markerActive || this.#cmdline;
    const ttlMs = this.#markerActive && marker?.untilMs !== undefined ? marker.untilMs - now : undefined;
    writeBreakGlass(this.#paths.bpffs, on ? (ttlMs === undefined ? { on } : { on, ttlMs }) : { on });
    this.#kernelOn = on;
    if (!on) return undefined;
    return {
      on,
      fields: this.#markerActive && marker
        ? { source: "marker", ...markerFields(marker) }
        : { source: "cmdline", reason: `kernel command line has ${CMDLINE_FLAG}` },
    };
  }

  /** One poll: follows the marker, then reports what the kernel word did. */
  poll(): BreakGlassChange | undefined {
    const now = Date.now();
    const { marker, expired } = this.#read(now);
    const active = marker !== undefined && !expired;
    let change: BreakGlassChange | undefined;
    if (active !== this.#markerActive) {
      this.#markerActive = active;
      if (active && marker) {
        const ttlMs = marker.untilMs === undefined ? undefined : marker.untilMs - now;
        if (!this.#kernelWordOn()) {
          writeBreakGlass(this.#paths.bpffs, ttlMs === undefined ? { on: true } : { on: true, ttlMs });
        }
        change = { on: true, fields: { source: "marker", ...markerFields(marker) } };
      } else {
        if (expired) removeIfPresent(markerPath(this.#paths.configDir));
        if (!this.#cmdline) writeBreakGlass(this.#paths.bpffs, { on: false });
        change = {
          on: false,
          fields: { source: "marker", reason: expired ? "ttl expired" : "marker removed" },
        };
      }
    }
    const kernelOn = this.#kernelWordOn();
    if (kernelOn !== this.#kernelOn && (change === undefined || change.on !== kernelOn)) {
      change = { on: kernelOn, fields: { source: "kernel", reason: kernelOn ? "word set" : "word cleared" } };
      if (!kernelOn && marker && expired) change.fields.reason = "ttl expired";
    }
    this.#kernelOn = kernelOn;
    return change;
  }

  /**
   * Whether break-glass is asked for now: a marker in force (read again, not the last poll's: `break-glass
   * on` writes it just before the word), or the kernel command line. Else a word on was set behind its back.
   */
  asked(): boolean {
    if (this.#cmdline) return true;
    const { marker, expired } = activeMarker(this.#paths.configDir, Date.now());
    return marker !== undefined && !expired;
  }

  get on(): boolean {
    return this.#kernelOn;
  }

  /** The marker, with a warning when what it holds is wrong (it still turns break-glass on). */
  #read(nowMs: number): ReturnType<typeof activeMarker> {
    const found = activeMarker(this.#paths.configDir, nowMs);
    const problem = found.marker?.problem;
    if (problem !== undefined && problem !== this.#problem) {
      this.#warn(`break-glass marker ${markerPath(this.#paths.configDir)}: ${problem}: break-glass is on`);
    }
    this.#problem = problem;
    return found;
  }

  #kernelWordOn(): boolean {
    return readModeWords(this.#paths.bpffs)?.breakGlass.on ?? false;
  }
}
