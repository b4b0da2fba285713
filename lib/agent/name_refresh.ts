/**
 * Keeps the addresses of the policy's names learned: each exact name is resolved again at half the time its
 * addresses are kept (their TTL, at least the policy's floor), so that an entry is renewed before the kernel
 * stops deciding by it. A name that fails is tried again at the next tick and reported once per failure run.
 */
import type { Answer } from "../kernel/learned.ts";
import { DEFAULT_TTL_FLOOR } from "../kernel/learned.ts";
import { exactNames } from "../ops/learn_names.ts";
import type { HostRule, RuleSetPlan } from "../policy/plan.ts";

export type NameLearner = {
  learn(rules: readonly HostRule[], answers: readonly Answer[], floor?: number): void;
};

/** Resolves a plan's exact names (resolvePlanNames), reporting each that fails through `warn`. */
export type PlanResolver = (plan: RuleSetPlan, warn: (message: string) => void) => Promise<Answer[]>;

export class NameRefresher {
  readonly #plane: NameLearner;
  readonly #warn: (message: string) => void;
  readonly #resolve: PlanResolver;
  #plan: RuleSetPlan | undefined;
  /** Name → when (Date.now() ms) it is resolved next. */
  readonly #due = new Map<string, number>();
  readonly #failing = new Set<string>();
  #busy = false;

  constructor(plane: NameLearner, warn: (message: string) => void, resolve: PlanResolver) {
    this.#plane = plane;
    this.#warn = warn;
    this.#resolve = resolve;
  }

  /** The policy now in force: its names are due at once (an agent that adopts a policy renews them). */
  use(plan: RuleSetPlan, now = Date.now()): void {
    this.#plan = plan;
    this.#due.clear();
    for (const name of exactNames(plan)) this.#due.set(name, now);
  }

  /** Resolves the names that are due, unless a round is still running; resolves when it is done. */
  async tick(now = Date.now()): Promise<void> {
    const plan = this.#plan;
    if (this.#busy || !plan) return;
    const due = [...this.#due].filter(([, at]) => at <= now).map(([name]) => name);
    if (due.length === 0) return;
    this.#busy = true;
    try {
      const floor = plan.nameTtlFloor ?? DEFAULT_TTL_FLOOR;
      const only = {
        ...plan,
        egressHosts: (plan.egressHosts ?? []).filter((rule) => due.includes(rule.host)),
      };
      const failed: string[] = [];
      const answers = await this.#resolve(only, (message) => failed.push(message));
      if (plan !== this.#plan) return; // another policy came meanwhile: its own round follows
      if (answers.length > 0) this.#plane.learn(plan.egressHosts ?? [], answers, floor);
      for (const name of due) {
        const kept = answers.filter((answer) => answer.name === name).map((a) => Math.max(a.ttl, floor));
        // Renewed at half the time kept; a name with no address is asked again after the floor.
        this.#due.set(name, now + (kept.length ? Math.min(...kept) : floor) * 500);
        if (!failed.some((message) => message.startsWith(name))) this.#failing.delete(name);
      }
      for (const message of failed) {
        const name = due.find((candidate) => message.startsWith(candidate));
        if (name && !this.#failing.has(name)) this.#warn(message);
        if (name) this.#failing.add(name);
      }
    } finally {
      this.#busy = false;
    }
  }
}
