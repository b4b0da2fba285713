/**
 * The kernel's numeric rule ids to the rules a policy names, held compactly: a fleet policy's 100,000
 * CIDR rules are mostly named after their place (`network.egress.deny[0]`, `[1]`, ...), and such a run of
 * rules is kept as one entry, not 100,000 strings. What a long-running agent keeps to name the rule of
 * every event and counter.
 */
import type { Area, RuleInfo } from "./plan.ts";

/** Rules `first`..`first + count - 1` named `${prefix}[${index}]`, `index` counting up from `firstIndex`. */
type Run = [
  prefix: string,
  area: Area,
  action: RuleInfo["action"],
  first: number,
  firstIndex: number,
  count: number,
];

/** A RuleTable as JSON carries it. */
export type RuleTableData = { size: number; runs: Run[]; single: [number, RuleInfo][] };

const PLACED = /^(.*)\[(\d+)\]$/;

export class RuleTable {
  readonly size: number;
  readonly #runs: readonly Run[];
  readonly #single: ReadonlyMap<number, RuleInfo>;

  private constructor(data: RuleTableData) {
    this.size = data.size;
    this.#runs = data.runs;
    this.#single = new Map(data.single);
  }

  /** The table of `rules` (index = rule id). */
  static of(rules: readonly RuleInfo[]): RuleTable {
    const runs: Run[] = [];
    const single: [number, RuleInfo][] = [];
    rules.forEach((rule, ruleId) => {
      const placed = rule.path === undefined && rule.exe === undefined && rule.host === undefined
        ? PLACED.exec(rule.id)
        : null;
      const index = placed ? Number(placed[2]) : NaN;
      // Only a name that reads back the same (no leading zeros, a safe integer) joins a run.
      if (!placed || String(index) !== placed[2]) {
        single.push([ruleId, rule]);
        return;
      }
      const last = runs.at(-1);
      if (
        last && last[0] === placed[1] && last[1] === rule.area && last[2] === rule.action &&
        last[3] + last[5] === ruleId && last[4] + last[5] === index
      ) {
        last[5]++;
      } else {
        runs.push([placed[1]!, rule.area, rule.action, ruleId, index, 1]);
      }
    });
    return new RuleTable({ size: rules.length, runs, single });
  }

  static fromJSON(data: RuleTableData): RuleTable {
    return new RuleTable(data);
  }

  toJSON(): RuleTableData {
    return { size: this.size, runs: this.#runs.map((run) => [...run]), single: [...this.#single] };
  }

  /** The rule with kernel id `ruleId`, or undefined when the policy has none by that id. */
  get(ruleId: number): RuleInfo | undefined {
    const found = this.#single.get(ruleId);
    if (found) return found;
    const run = this.#runOf(ruleId);
    if (!run) return undefined;
    const [prefix, area, action, first, firstIndex] = run;
    return { id: `${prefix}[${firstIndex + ruleId - first}]`, area, action };
  }

  /** The rule's id as the policy names it, or `#N` for an id the policy does not have. */
  name(ruleId: number): string {
    return this.get(ruleId)?.id ?? `#${ruleId}`;
  }

  #runOf(ruleId: number): Run | undefined {
    const runs = this.#runs;
    let low = 0;
    let high = runs.length - 1;
    while (low <= high) {
      const middle = (low + high) >> 1;
      const run = runs[middle]!;
      if (ruleId < run[3]) high = middle - 1;
      else if (ruleId >= run[3] + run[5]) low = middle + 1;
      else return run;
    }
    return undefined;
  }
}
