/**
 * What `health` says of time windows: each rule of the policy in force with a `when:`, whether its window
 * is open now, and when it next opens or closes; and a warning when a boundary passed since the apply while
 * no agent ran (the kernel holds the rules as they were at the apply until an agent starts or an apply).
 */
import { storedInput } from "../ops/policy_source.ts";
import { compilePolicy } from "../policy/compile.ts";
import { nextBoundary, type RuleWindow, windowClock, windowClockOffsetMs } from "../policy/windows.ts";
import { yamlLoaded } from "../policy/yaml.ts";
import { appliedPolicy } from "../state/apply_state.ts";

export type WindowReport = RuleWindow & { rule: string; open: boolean; next: string | null };

/** A policy text that may hold a window: the others are not parsed at all. */
const MAY_HAVE_WINDOW = /["']?\bwhen["']?\s*:/;

/** Whether listing the windows of the policy in force needs the YAML parser (a YAML policy that may have some). */
export function windowsNeedYaml(stateDir: string): boolean {
  let stored: ReturnType<typeof appliedPolicy>;
  try {
    stored = appliedPolicy(stateDir);
  } catch {
    return false;
  }
  return stored !== undefined && MAY_HAVE_WINDOW.test(stored.policyText) && !/^\s*\{/.test(stored.policyText);
}

export function windowsReport(
  stateDir: string,
  options: { agentRunning: boolean; appliedAt: string | undefined },
): { windows: WindowReport[]; warnings: string[] } {
  let stored: ReturnType<typeof appliedPolicy>;
  try {
    stored = appliedPolicy(stateDir);
  } catch {
    return { windows: [], warnings: [] }; // history problems are health's own findings elsewhere
  }
  if (!stored || !MAY_HAVE_WINDOW.test(stored.policyText)) return { windows: [], warnings: [] };
  const isJson = /^\s*\{/.test(stored.policyText);
  if (!isJson && !yamlLoaded()) {
    return { windows: [], warnings: ["time windows not listed here (no YAML parser)"] };
  }
  let windows: ReturnType<typeof compilePolicy>["windows"];
  const now = windowClock();
  try {
    windows = compilePolicy(storedInput(stored).parsed.policy, { now }).windows;
  } catch (error) {
    return { windows: [], warnings: [`time windows could not be read: ${(error as Error).message}`] };
  }
  if (!windows) return { windows: [], warnings: [] };
  const report = windows.map(({ rule, when, open }) => {
    const next = nextBoundary([{ when }], now);
    return { rule, ...when, open, next: next === undefined ? null : new Date(next).toISOString() };
  });
  const warnings: string[] = [];
  // applied.json's time is the real clock's; windows read the window clock (shifted in tests).
  const appliedMs = options.appliedAt === undefined
    ? NaN
    : Date.parse(options.appliedAt) + windowClockOffsetMs();
  const missed = Number.isNaN(appliedMs) ? undefined : nextBoundary(windows, appliedMs);
  if (!options.agentRunning && missed !== undefined && missed <= now) {
    warnings.push(
      `a time window opened or closed at ${new Date(missed).toISOString()}, after the apply, and no agent ` +
        "runs: the kernel holds the rules as they were at the apply; start the agent (it catches up at " +
        "start) or apply the policy again",
    );
  }
  return { windows: report, warnings };
}
