/**
 * `policy apply` for a body that arrives through the local API (`POST /v1/policy`): the same checks and the
 * same all-or-nothing apply as the command, with nothing printed. Lock-out risks refuse (there is no
 * `--force` over the API: an operator who means it uses the command on the host).
 */

import { RefusedError } from "../errors.ts";
import { checkInput, type RawInput, readApplyConfig } from "./apply_source.ts";
import { compilePolicy } from "../policy/compile.ts";
import { gatherLintFacts } from "../policy/facts.ts";
import {
  findEntry,
  type HistoryEntry,
  listHistory,
  previousEntry,
  readEntryContent,
  readVersionCounter,
  wasInForce,
} from "../state/history.ts";
import type { RuleSetPlan } from "../policy/plan.ts";
import { InputError } from "../errors.ts";
import type { ApplyResult } from "./apply.ts";
import { lockoutRisks } from "../policy/lint.ts";
import type { PolicyInput } from "./apply_source.ts";
import { positionText } from "../text/diagnostics.ts";
import {
  alreadyInForce,
  applyInputOf,
  applyPolicy,
  lockState,
  ruleCounts,
  settleInterruptedApply,
} from "./apply.ts";
import { readApplied } from "../state/apply_state.ts";

export type Where = { bpffs: string; stateDir: string; configDir: string };

export type AppliedSummary = {
  name: string;
  version: number;
  sha256: string;
  mode: string;
  rules: Record<string, number>;
  seq: number;
  /** `unchanged`: the policy was already in force; nothing was written (the seq is the entry in force). */
  outcome: HistoryEntry["outcome"] | "unchanged";
  generation: number;
};

/** What a checked policy is: its name, version, sha256, mode and rules per area. */
export function policySummary(input: PolicyInput, plan: RuleSetPlan) {
  const { name, version } = input.parsed.policy.metadata;
  return { name, version, sha256: input.sha256, mode: plan.mode, rules: ruleCounts(plan) };
}

/** Refuses (RefusedError, exit 3 / HTTP 409) a policy whose lock-out check finds a risk. */
export async function refuseLockout(input: PolicyInput, stateDir: string): Promise<void> {
  const { policy, locate } = input.parsed;
  const risks = lockoutRisks(policy, locate, await gatherLintFacts(policy, { stateDir }));
  if (risks.length === 0) return;
  const listed = risks.map((risk) => `${positionText(risk.position)}: ${risk.message}`).join("; ");
  throw new RefusedError(`Refused ${input.source}: lock-out risk: ${listed}`);
}

/**
 * Refuses a bundle not newer than the anti-rollback counter (read under the state lock). The bundle that
 * raised the counter to its version is not a replay: one whose version equals the counter and whose policy
 * digest is the one history recorded in force at that version may come back (after a `detach`, or a
 * rollback away from it).
 */
export function refuseReplay(input: PolicyInput, stateDir: string): void {
  const { version } = input.parsed.policy.metadata;
  const counter = readVersionCounter(stateDir);
  if (input.kind === "bundle" && version === counter && sameBundleAsCounter(input, stateDir)) return;
  if (input.kind === "bundle" && version <= counter) {
    throw new RefusedError(
      `Refused bundle ${input.source}: policy version ${version} is not greater than the anti-rollback ` +
        `counter ${counter}`,
    );
  }
}

function sameBundleAsCounter(input: PolicyInput, stateDir: string): boolean {
  const { version } = input.parsed.policy.metadata;
  return listHistory(stateDir).some((entry) =>
    entry.kind === "bundle" && entry.version === version && entry.sha256 === input.sha256 &&
    wasInForce(entry) && entry.restoredSeq === undefined
  );
}

/** Checks and applies `raw` as `policy apply` would; waits for the state lock. */
export async function applyRawInput(where: Where, raw: RawInput): Promise<AppliedSummary> {
  const { bpffs, stateDir, configDir } = where;
  const input = checkInput(raw, {
    configDir,
    stateDir,
    requireSignature: readApplyConfig(configDir).requireSignature,
    counterEqualDecidedLater: true,
  });
  const plan = compilePolicy(input.parsed.policy);
  await refuseLockout(input, stateDir);
  using _lock = await lockState(stateDir, "api policy apply", { wait: true, onWait: () => {} });
  settleInterruptedApply({ bpffs, stateDir });
  const same = alreadyInForce(where, input.sha256, plan.mode);
  if (same) {
    const generation = readApplied(stateDir)!.generation;
    return { ...policySummary(input, plan), seq: same.seq, outcome: "unchanged", generation };
  }
  refuseReplay(input, stateDir);
  const { entry, generation } = await applyPolicy({
    bpffs,
    stateDir,
    input: applyInputOf(input),
    plan,
    outcome: "applied",
    allowPartial: false,
    warn: () => {},
  });
  return { ...policySummary(input, plan), seq: entry.seq, outcome: entry.outcome, generation };
}

/**
 * Re-applies the policy of history entry `target` through the same path as apply, recorded as a new entry
 * with outcome `rolled-back`. A stored bundle is verified again against the keys trusted now; the
 * anti-rollback counter does not apply. `lockout` decides on lock-out risks. The caller holds the lock.
 */
export async function reapplyHistoryEntry(
  where: Where,
  target: HistoryEntry,
  options: {
    allowPartial: boolean;
    lockout: (input: PolicyInput) => Promise<void>;
    warn: (m: string) => void;
  },
): Promise<ApplyResult & { input: PolicyInput; plan: RuleSetPlan }> {
  const { stateDir, configDir, bpffs } = where;
  const content = readEntryContent(stateDir, target);
  const checked = checkInput(
    { source: `history entry ${target.seq}`, text: content, bytes: new TextEncoder().encode(content) },
    { configDir, stateDir, requireSignature: readApplyConfig(configDir).requireSignature, rollback: true },
  );
  const input = { ...checked, source: target.source };
  const plan = compilePolicy(input.parsed.policy);
  await options.lockout(input);
  const result = await applyPolicy({
    bpffs,
    stateDir,
    input: applyInputOf(input),
    plan,
    outcome: "rolled-back",
    restoredSeq: target.seq,
    allowPartial: options.allowPartial,
    warn: options.warn,
  });
  return { ...result, input, plan };
}

/** `policy rollback [--to REF]` for the API: waits for the lock; lock-out risks refuse. */
export async function rollbackTo(
  where: Where,
  to: string | undefined,
): Promise<AppliedSummary & { restoredSeq: number }> {
  const { bpffs, stateDir } = where;
  using _lock = await lockState(stateDir, "api policy rollback", { wait: true, onWait: () => {} });
  settleInterruptedApply({ bpffs, stateDir });
  const entries = listHistory(stateDir);
  const target = to === undefined ? previousEntry(entries) : findEntry(entries, to);
  if (target === undefined) {
    throw new InputError("Nothing to roll back to: history holds no earlier policy in force");
  }
  const { input, plan, entry, generation } = await reapplyHistoryEntry(where, target, {
    allowPartial: false,
    lockout: (checked) => refuseLockout(checked, stateDir),
    warn: () => {},
  });
  return {
    ...policySummary(input, plan),
    seq: entry.seq,
    outcome: entry.outcome,
    generation,
    restoredSeq: target.seq,
  };
}
