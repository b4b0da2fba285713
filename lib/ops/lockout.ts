/** The lock-out check the apply command, the API and the agent each refuse on, in their own words. */

import { ctimeNsOf } from "../kernel/resolve.ts";
import { gatherLintFacts } from "../policy/facts.ts";
import { lockoutCheck, type Warning } from "../policy/lint.ts";
import type { PolicyInput } from "./apply_source.ts";
import type { RuleSetPlan } from "../policy/plan.ts";

/**
 * The policy's lock-out check on this host: `risks` (the operator locked out, the survival set denied) and
 * what could not be checked. Callers decide how to refuse; the command also has `--force`. `plan` is the
 * policy compiled already, when the caller has it (compiling 100,000 rules twice costs about 0.1 s).
 */
export async function checkLockoutRisks(
  input: PolicyInput,
  stateDir: string,
  plan?: RuleSetPlan,
  configDir?: string,
): Promise<{ risks: Warning[]; unchecked: Warning[] }> {
  const { policy, locate } = input.parsed;
  const facts = await gatherLintFacts(policy, {
    stateDir,
    ctimeNs: ctimeNsOf,
    ...configDir !== undefined && { configDir },
  });
  return lockoutCheck(policy, locate, facts, plan);
}
