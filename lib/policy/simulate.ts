/**
 * `policy simulate`: replays recorded event lines (SPEC section 6, as `run` and `events --json` write them)
 * against a candidate plan and counts, per rule, what the candidate would decide. Pure: the caller reads
 * the lines.
 *
 * An event line weighs its `count`. Agent events (`agent.*`, `policy.*`, `break_glass.*`, …) carry no
 * action to decide and are skipped, as are `net.socket` and `scope.escape`, which no rule list decides (a
 * policy switch and the scope do); `events.dropped` lines are added up, since the log misses those events.
 * What the agent writes without the facts a decision needs is counted apart as not replayable: rate-limit
 * summaries (`summary: true`: the kernel kept only the pid and the rule) and file or exec events whose
 * rule had no path to name (an untrusted exec names only its file's name and inode: replayed by inode when
 * the caller resolved the candidate's rules on the host the event comes from). So the agent's own log, as `events --json` prints it, always replays. A line
 * that is not a JSON object, or any other action event without the fields its type needs, is an
 * InputError naming SOURCE:LINE; only a torn last line (no final newline: a log cut while written) is
 * tolerated, and reported.
 */

import { InputError } from "../errors.ts";
import { type InodeRules, parseEventLine } from "./apply_explain.ts";
import { decide, type LearnedAddress } from "./decide.ts";
import type { RuleSetPlan } from "./plan.ts";

/** Event types that record an action the kernel decided. */
const ACTION_TYPES: ReadonlySet<string> = new Set([
  "file.open",
  "exec",
  "net.connect",
  "net.sendmsg",
  "net.packet",
  "net.bind",
  "net.ingress",
  "net.forward",
  "file.write",
]);

export type RuleCount = {
  /** The rule's id in the candidate policy. */
  rule: string;
  /** What the candidate decides for these events: deny (enforce) or audit. */
  decision: "deny" | "audit";
  /** Actions the rule would decide, weighted by each line's `count`. */
  actions: number;
  /** Event lines behind `actions`. */
  events: number;
  /** Of `actions`, those whose recorded event named another rule, or no rule. */
  newlyMatched: number;
};

export type SimulationReport = {
  /** Action event lines decided. */
  events: number;
  /** Actions (weighted by `count`). */
  actions: number;
  /** Actions the candidate lets through. */
  allowed: number;
  /** Of `allowed`, actions the recorded event says were denied or audited by a rule. */
  newlyAllowed: number;
  /** Agent and other non-action lines skipped. */
  skipped: number;
  /** Action lines the log holds without the facts to decide them (rate-limit summaries, pathless files). */
  unreplayable: { events: number; actions: number };
  /** Events the agent lost before it could log them, from its `events.dropped` lines. */
  dropped: number;
  /** A torn last line that was ignored, as `SOURCE:LINE`. */
  tornLastLine?: string;
  /** Per rule of the candidate that matched at least once, most actions first. */
  rules: RuleCount[];
};

/**
 * Decides every action line of `text` under `plan`; `source` names the log in errors. With `inodeRules`
 * (the candidate's file and exec targets resolved on this host), a file or exec event without a path (an
 * exec the allowlist refused: it has a name and an inode) is replayed by its inode.
 */
export function simulate(
  plan: RuleSetPlan,
  text: string,
  source: string,
  inodeRules?: InodeRules,
  /** The learned-address table rules by name decide by (with what each line decided by name implies). */
  learned: readonly LearnedAddress[] = [],
): SimulationReport {
  const lines = text.split("\n");
  const torn = !text.endsWith("\n") && text !== "";
  const counts = new Map<string, RuleCount>();
  const report: SimulationReport = {
    events: 0,
    actions: 0,
    allowed: 0,
    newlyAllowed: 0,
    skipped: 0,
    unreplayable: { events: 0, actions: 0 },
    dropped: 0,
    rules: [],
  };
  lines.forEach((raw, index) => {
    const line = raw.trim();
    if (line === "") return;
    const where = `${source}:${index + 1}`;
    const isLast = index === lines.length - 1;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (error) {
      if (isLast && torn) {
        report.tornLastLine = where;
        return;
      }
      throw new InputError(`${where}: not a JSON event line: ${(error as Error).message}`, { cause: error });
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new InputError(`${where}: not a JSON event object`);
    }
    const type = (value as { type?: unknown }).type;
    if (typeof type !== "string") throw new InputError(`${where}: type: the event has no type`);
    if (!ACTION_TYPES.has(type)) {
      report.skipped++;
      if (type === "events.dropped") report.dropped += weightOf((value as { count?: unknown }).count, where);
      return;
    }
    const weight = weightOf((value as { count?: unknown }).count, where);
    if (!replayable(value as RecordedFacts, type, inodeRules)) {
      report.unreplayable.events++;
      report.unreplayable.actions += weight;
      return;
    }
    const { event, rule: recorded, learned: implied } = parseEventLine(line, where, inodeRules);
    const decision = decide(plan, event, { learned: implied ? [...implied, ...learned] : learned });
    report.events++;
    report.actions += weight;
    if (decision.decision === "allow" || decision.ruleName === undefined) {
      report.allowed += weight;
      if (recorded !== undefined && recorded !== "") report.newlyAllowed += weight;
      return;
    }
    const rule = decision.ruleName;
    const count = counts.get(rule) ??
      { rule, decision: decision.decision, actions: 0, events: 0, newlyMatched: 0 };
    count.actions += weight;
    count.events++;
    if (recorded !== rule) count.newlyMatched += weight;
    counts.set(rule, count);
  });
  report.rules = [...counts.values()].sort((a, b) => b.actions - a.actions || a.rule.localeCompare(b.rule));
  return report;
}

type RecordedFacts = {
  summary?: unknown;
  host?: unknown;
  file?: { path?: unknown; dev?: unknown; ino?: unknown };
};

/** Whether the agent recorded what deciding this event needs (see the top of this file). */
function replayable(value: RecordedFacts, type: string, inodeRules: InodeRules | undefined): boolean {
  if (value.summary === true) return false;
  if (type === "file.open" || type === "exec" || type === "file.write") {
    const { file } = value;
    if (file === undefined || file.path !== undefined) return true;
    const host = typeof value.host === "string" ? value.host : undefined;
    return typeof file.dev === "number" && typeof file.ino === "number" &&
      inodeRules?.(file.dev, file.ino, host) !== undefined;
  }
  return true;
}

function weightOf(count: unknown, where: string): number {
  if (count === undefined) return 1;
  if (typeof count !== "number" || !Number.isSafeInteger(count) || count < 1) {
    throw new InputError(`${where}: count: expected a whole number of at least 1`);
  }
  return count;
}
