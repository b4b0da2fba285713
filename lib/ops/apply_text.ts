/**
 * `policy apply` for a body that arrives through the local API (`POST /v1/policy`): the same checks and the
 * same all-or-nothing apply as the command, with nothing printed. Lock-out risks refuse (there is no
 * `--force` over the API: an operator who means it uses the command on the host).
 */

import { RefusedError } from "../errors.ts";
import { checkInput, type RawInput, readApplyConfig } from "./apply_source.ts";
import { compilePolicy } from "../policy/compile.ts";
import { compileEncodedForNow } from "../kernel/entries.ts";
import { withYaml } from "../policy/yaml.ts";
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
import { checkLockoutRisks } from "./lockout.ts";
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
import { phase, phaseAsync } from "../phases.ts";
import type { StateLock } from "../state/files.ts";
import { NetRulesAhead } from "../kernel/generations.ts";
import {
  checkedFlip,
  type CheckReport,
  type Emit,
  resolvePendingCheck,
  type RollBack,
} from "./self_check.ts";
import { storedPolicy } from "../state/apply_state.ts";
import { parsePolicy, policySha256 } from "../policy/parse_text.ts";
import type { Policy } from "../policy/schema.ts";

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
export async function refuseLockout(
  input: PolicyInput,
  stateDir: string,
  plan?: RuleSetPlan,
  configDir?: string,
): Promise<void> {
  const { risks } = await checkLockoutRisks(input, stateDir, plan, configDir);
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

/** How a caller takes the state lock: who it is (the holder named to others), and whether and how it waits. */
export type LockRequest = {
  holder: string;
  wait: boolean;
  onWait: (message: string) => void;
  timeoutMs?: number;
};

/** What `applyChecked` did: nothing (`unchanged`, the policy in force already), or the apply. */
export type CheckedApply =
  & { lock: StateLock }
  & (
    | { unchanged: HistoryEntry }
    | { applied: ApplyResult & { checks?: CheckReport } }
  );

/**
 * The apply `policy apply` and the API share once the input is checked and compiled: takes the state lock,
 * settles an interrupted apply, answers `unchanged` for the policy in force already, refuses a replayed
 * bundle (another apply may have raised the counter while this one waited for the lock), runs
 * `beforeApply`, then applies. Returns with the lock held: the caller releases it (`policy apply --canary`
 * watches under it). On an error the lock is released here.
 */
export async function applyChecked(
  where: Where,
  input: PolicyInput,
  plan: RuleSetPlan,
  options: LockRequest & {
    outcome: "applied" | "canary";
    allowPartial: boolean;
    warn: (message: string) => void;
    beforeApply?: () => void;
    /** The plan's CIDR rules written ahead (see ApplyRequest). */
    ahead?: NetRulesAhead;
    /** Where a self-check's `policy.check_failed` event goes (the event log by default). */
    emit?: Emit;
  },
): Promise<CheckedApply> {
  const { bpffs, stateDir } = where;
  const { holder, ...wait } = options;
  const lock = await lockState(stateDir, holder, {
    wait: wait.wait,
    onWait: wait.onWait,
    ...wait.timeoutMs !== undefined && { timeoutMs: wait.timeoutMs },
  });
  try {
    settleInterruptedApply({ bpffs, stateDir });
    await settlePendingCheck(where, options.warn, options.emit);
    const same = alreadyInForce({ bpffs, stateDir }, plan, input.sha256);
    if (same) return { lock, unchanged: same };
    refuseReplay(input, stateDir);
    options.beforeApply?.();
    const { policy } = input.parsed;
    const applied = await checkedFlip(
      where,
      policy,
      { sha256: input.sha256, ...policy.metadata },
      { holder, rollBack: rollBackTo(where, options.warn), ...options.emit && { emit: options.emit } },
      () =>
        applyPolicy({
          bpffs,
          stateDir,
          input: applyInputOf(input),
          plan,
          outcome: options.outcome,
          allowPartial: options.allowPartial,
          warn: options.warn,
          ...options.ahead && { ahead: options.ahead },
        }),
    );
    return { lock, applied };
  } catch (error) {
    lock[Symbol.dispose]();
    throw error;
  }
}

/** Checks and applies `raw` as `policy apply` would; waits for the state lock. */
export async function applyRawInput(where: Where, raw: RawInput): Promise<AppliedSummary> {
  const { stateDir, configDir } = where;
  const input = await withYaml(() =>
    checkInput(raw, {
      configDir,
      stateDir,
      requireSignature: readApplyConfig(configDir).requireSignature,
      counterEqualDecidedLater: true,
    })
  );
  const plan = compileEncodedForNow(input.parsed.policy);
  // Every rule, whatever its time window: a rule closed now may lock the operator out when it opens.
  await refuseLockout(input, stateDir, plan.windows ? compilePolicy(input.parsed.policy) : plan, configDir);
  const done = await applyChecked(where, input, plan, {
    holder: "api policy apply",
    wait: true,
    onWait: () => {},
    outcome: "applied",
    allowPartial: false,
    warn: () => {},
  });
  using _lock = done.lock;
  if ("unchanged" in done) {
    const generation = readApplied(stateDir)!.generation;
    return { ...policySummary(input, plan), seq: done.unchanged.seq, outcome: "unchanged", generation };
  }
  const { entry, generation } = done.applied;
  return { ...policySummary(input, plan), seq: entry.seq, outcome: entry.outcome, generation };
}

/**
 * Re-applies the policy of history entry `target` through the same path as apply, recorded as a new entry
 * with outcome `rolled-back`. A stored bundle is verified again against the keys trusted now; the
 * anti-rollback counter does not apply. `lockout` decides on lock-out risks. The caller holds the lock.
 * `checked`: the entry's policy read and checked already (entryInput), which is then not read again.
 */
export async function reapplyHistoryEntry(
  where: Where,
  target: HistoryEntry,
  options: {
    allowPartial: boolean;
    lockout: (input: PolicyInput, plan: RuleSetPlan) => Promise<void>;
    warn: (m: string) => void;
  },
  checked?: PolicyInput,
): Promise<ApplyResult & { input: PolicyInput; plan: RuleSetPlan }> {
  const { stateDir, bpffs } = where;
  const input = checked ?? await entryInput(where, target);
  const plan = phase("compile", () => compileEncodedForNow(input.parsed.policy));
  const everyRule = plan.windows ? compilePolicy(input.parsed.policy) : plan;
  await phaseAsync("lockout check", () => options.lockout(input, everyRule));
  // The kernel's copy of the CIDR rules is written while the re-apply makes its checks, as `policy apply`
  // does (NetRulesAhead): a refused re-apply drops it.
  using ahead = phase("write ahead", () => NetRulesAhead.start(plan));
  const result = await applyPolicy({
    bpffs,
    stateDir,
    input: applyInputOf(input),
    plan,
    outcome: "rolled-back",
    restoredSeq: target.seq,
    allowPartial: options.allowPartial,
    warn: options.warn,
    ahead,
  });
  return { ...result, input, plan };
}

/**
 * The policy of history entry `target` read and checked as a re-apply takes it: a stored bundle verified
 * again against the keys trusted now, the anti-rollback counter aside.
 */
async function entryInput(where: Where, target: HistoryEntry): Promise<PolicyInput> {
  const { stateDir, configDir } = where;
  const content = phase("read", () => readEntryContent(stateDir, target));
  const checked = await phaseAsync("parse", () =>
    withYaml(() =>
      checkInput(
        { source: `history entry ${target.seq}`, text: content, bytes: new TextEncoder().encode(content) },
        {
          configDir,
          stateDir,
          requireSignature: readApplyConfig(configDir).requireSignature,
          rollback: true,
        },
      )
    ));
  return { ...checked, source: target.source };
}

/**
 * The rollback `policy rollback` and the API share: takes the state lock, settles an interrupted apply,
 * finds the entry `to` names (the previous policy in force when undefined) and re-applies it. `hint` ends
 * the message when there is nothing to roll back to.
 */
export async function rollbackLocked(
  where: Where,
  to: string | undefined,
  options: LockRequest & {
    allowPartial: boolean;
    lockout: (input: PolicyInput, plan: RuleSetPlan) => Promise<void>;
    warn: (message: string) => void;
    hint?: string;
    emit?: Emit;
  },
): Promise<
  ApplyResult & { input: PolicyInput; plan: RuleSetPlan; target: HistoryEntry; checks?: CheckReport }
> {
  const { bpffs, stateDir } = where;
  using _lock = await lockState(stateDir, options.holder, {
    wait: options.wait,
    onWait: options.onWait,
    ...options.timeoutMs !== undefined && { timeoutMs: options.timeoutMs },
  });
  settleInterruptedApply({ bpffs, stateDir });
  await settlePendingCheck(where, options.warn, options.emit);
  const entries = listHistory(stateDir);
  const target = to === undefined ? previousEntry(entries) : findEntry(entries, to);
  if (target === undefined) {
    throw new InputError(
      `Nothing to roll back to: history holds no earlier policy in force${options.hint ?? ""}`,
    );
  }
  // Read and checked once: the entry's own checks run once it is back in force, and the re-apply applies it.
  const input = await entryInput(where, target);
  const result = await checkedFlip(
    where,
    input.parsed.policy,
    { sha256: target.sha256, name: target.name, version: target.version },
    {
      holder: options.holder,
      rollBack: rollBackTo(where, options.warn),
      ...options.emit && { emit: options.emit },
    },
    () => reapplyHistoryEntry(where, target, options, input),
  );
  return { ...result, target };
}

/** `policy rollback [--to REF]` for the API: waits for the lock; lock-out risks refuse. */
export async function rollbackTo(
  where: Where,
  to: string | undefined,
): Promise<AppliedSummary & { restoredSeq: number }> {
  const { stateDir, configDir } = where;
  const { input, plan, entry, generation, target } = await rollbackLocked(where, to, {
    holder: "api policy rollback",
    wait: true,
    onWait: () => {},
    allowPartial: false,
    lockout: (checked, plan) => refuseLockout(checked, stateDir, plan, configDir),
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

/** The policy of a history entry, parsed (a bundle's payload; its signature was checked when applied). */
export async function policyOfEntry(where: Pick<Where, "stateDir">, entry: HistoryEntry): Promise<Policy> {
  const { policyText } = storedPolicy(where.stateDir, entry);
  return await withYaml(() => parsePolicy(policyText, `history entry ${entry.seq}`));
}

/**
 * What a failed self-check puts back: the entry in force before, re-applied as `policy rollback` does
 * (lock-out risks and areas this kernel only audits do not stop it: it is the way back); with none, an
 * empty audit policy. The caller holds the state lock. The entry put back runs no probes of its own.
 */
export function rollBackTo(where: Where, warn: (message: string) => void): RollBack {
  return async (previous) => {
    if (previous) {
      const restored = await reapplyHistoryEntry(where, previous, {
        allowPartial: true,
        lockout: () => Promise.resolve(),
        warn,
      });
      return restored.entry;
    }
    const text = JSON.stringify({
      apiVersion: "aegisbpf.io/v1",
      kind: "Policy",
      metadata: { name: NO_POLICY_NAME, version: 1 },
      spec: { mode: "audit" },
    }) + "\n";
    const policy = parsePolicy(text, "self-check rollback");
    const sha256 = policySha256(text);
    const result = await applyPolicy({
      bpffs: where.bpffs,
      stateDir: where.stateDir,
      input: {
        source: "self-check rollback",
        kind: "policy",
        content: text,
        sha256,
        contentSha256: sha256,
        name: NO_POLICY_NAME,
        version: 1,
        policy,
        policyText: text,
      },
      plan: compilePolicy(policy),
      outcome: "rolled-back",
      allowPartial: true,
      warn,
    });
    return result.entry;
  };
}

/** The empty audit policy a failed self-check puts in force when no policy was in force before. */
export const NO_POLICY_NAME = "no-policy";

/**
 * Finishes a self-check a killed command left pending (see self_check.ts), saying what it did through
 * `warn`. The caller holds the state lock and has settled an interrupted apply.
 */
export async function settlePendingCheck(
  where: Where,
  warn: (message: string) => void,
  emit?: Emit,
): Promise<void> {
  const said = await resolvePendingCheck(where, {
    policyOf: (entry) => policyOfEntry(where, entry),
    rollBack: rollBackTo(where, warn),
    ...emit && { emit },
  });
  if (said !== undefined) warn(said);
}
