/** The lock-out check the apply command, the API and the agent each refuse on, in their own words. */

import { gatherLintFacts } from "../policy/facts.ts";
import { lockoutCheck, type Warning } from "../policy/lint.ts";
import type { PolicyInput } from "./apply_source.ts";

/**
 * The policy's lock-out check on this host: `risks` (the operator locked out, the survival set denied) and
 * what could not be checked. Callers decide how to refuse; the command also has `--force`.
 */
export async function checkLockoutRisks(
  input: PolicyInput,
  stateDir: string,
): Promise<{ risks: Warning[]; unchecked: Warning[] }> {
  const { policy, locate } = input.parsed;
  return lockoutCheck(policy, locate, await gatherLintFacts(policy, { stateDir }));
}
