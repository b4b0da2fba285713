/**
 * What `policy apply`, `rollback`, `diff` and `show` share: the lock-out check, re-applying a history entry,
 * the summary, diff lines.
 */

import type { Context } from "../../cli/command.ts";
import { count, diagnosticLine } from "../../text/diagnostics.ts";
import { palette } from "../../text/palette.ts";
import { RefusedError } from "../../errors.ts";
import { policySummary, reapplyHistoryEntry } from "../../ops/apply_text.ts";
import { checkLockoutRisks } from "../../ops/lockout.ts";
import { type ConnectionSweep, describeConnection } from "../../kernel/connections.ts";
import type { PolicyInput } from "../../ops/apply_source.ts";
import type { HistoryEntry } from "../../state/history.ts";
import { canonical, type PolicyDiff } from "../../policy/apply_diff.ts";
import type { RuleSetPlan } from "../../policy/plan.ts";
import type { TrustReport } from "../../kernel/entries.ts";
import { addPhase, recordPhases, takePhases } from "../../phases.ts";

/** Refuses (exit 3) a policy that would lock the operator out or deny the survival set, unless `force`. */
export async function checkLockout(
  ctx: Context,
  input: PolicyInput,
  force: boolean,
  plan?: RuleSetPlan,
): Promise<void> {
  const { risks, unchecked } = await checkLockoutRisks(
    input,
    ctx.globals.stateDir,
    plan,
    ctx.globals.configDir,
  );
  for (const warning of unchecked) ctx.stderr.line(diagnosticLine(warning, palette(false)));
  if (risks.length === 0) return;
  for (const risk of risks) ctx.stderr.line(diagnosticLine(risk, palette(false)));
  if (!force) {
    throw new RefusedError(
      `Refused ${input.source}: ${count(risks.length, "lock-out risk")} (listed above); ` +
        `fix the policy, or pass --force if you are sure`,
    );
  }
  ctx.log.warn(`applying despite ${count(risks.length, "lock-out risk")} (--force)`);
}

/**
 * Re-applies the policy of history entry `target` through the same path as apply, recorded as a new entry
 * with outcome `rolled-back`. A stored bundle is verified again against the keys trusted now; the
 * anti-rollback counter does not apply. The caller holds the state lock.
 */
export function reapplyEntry(
  ctx: Context,
  target: HistoryEntry,
  options: { force: boolean; allowPartial: boolean },
): ReturnType<typeof reapplyHistoryEntry> {
  return reapplyHistoryEntry(ctx.globals, target, {
    allowPartial: options.allowPartial,
    lockout: (input, plan) => checkLockout(ctx, input, options.force, plan),
    warn: (message) => ctx.log.warn(message),
  });
}

export type Summary = {
  name: string;
  version: number;
  sha256: string;
  mode: string;
  rules: Record<string, number>;
  generation?: number;
  seq?: number;
  outcome?: string;
  source: string;
  keyid?: string;
};

export function summaryOf(input: PolicyInput, plan: RuleSetPlan): Summary {
  return {
    ...policySummary(input, plan),
    source: input.source,
    ...(input.keyid === undefined ? {} : { keyid: input.keyid }),
  };
}

/** `policy web-baseline version 7 (sha256 …): mode enforce; rules: egress 3, bind 1`. */
export function summaryLine(verb: string, summary: Summary): string {
  const rules = Object.entries(summary.rules).filter(([, n]) => n > 0).map(([area, n]) => `${area} ${n}`);
  const generation = summary.generation === undefined ? "" : `, generation ${summary.generation}`;
  const seq = summary.seq === undefined ? "" : ` as history entry ${summary.seq}`;
  const signer = summary.keyid === undefined ? "" : `, signed by ${summary.keyid.slice(0, 16)}`;
  return `${verb} policy ${summary.name} version ${summary.version} (sha256 ${summary.sha256})${seq}: ` +
    `mode ${summary.mode}${generation}; rules: ${rules.length > 0 ? rules.join(", ") : "none"}${signer}`;
}

/** One line per change: `+ network.egress.deny imds {"cidr":…}`, `~`, `-`, and settings. */
export function diffLines(diff: PolicyDiff): string[] {
  const rules = diff.rules.map((change) => {
    const mark = { added: "+", removed: "-", changed: "~" }[change.change];
    const what = change.change === "changed"
      ? `${canonical(change.before)} -> ${canonical(change.after)}`
      : canonical(change.change === "added" ? change.after : change.before);
    return `${mark} ${change.list} ${change.id} ${what}`;
  });
  const settings = diff.settings.map((s) => `~ ${s.setting} ${canonical(s.before)} -> ${canonical(s.after)}`);
  return [...settings, ...rules];
}

/**
 * What `policy apply` (and rollback) says about connections made before the apply to what it denies: one
 * line each, closed or still open (in audit). A kernel that cannot close them is not walked: the apply
 * warns instead.
 */
export function connectionLines(sweep: ConnectionSweep | undefined, plan: RuleSetPlan): string[] {
  if (!sweep || sweep.connections.length === 0) return [];
  const open = sweep.connections.filter((c) => !c.closed).length;
  const why = open > 0 && plan.mode !== "enforce" ? " (audit: left open)" : "";
  return [
    `connections made before apply to denied destinations: ${sweep.connections.length - open} closed, ` +
    `${open} still open${why}`,
    ...sweep.connections.map((c) => `  ${describeConnection(c, plan.rules[c.ruleId]?.id ?? `#${c.ruleId}`)}`),
  ];
}

/** The sweep as the JSON summary carries it (cgroup ids as numbers). */
export function connectionsJson(sweep: ConnectionSweep | undefined): object {
  if (!sweep) return {};
  return {
    connections: sweep.connections.map((c) => ({ ...c, cgroupId: Number(c.cgroupId) })),
    canCloseConnections: sweep.canClose,
  };
}

/**
 * What `policy apply` says of a `trust: dpkg` entry: how many files it trusts, then every file that could
 * run but is left untrusted (its content differs from dpkg's MD5, dpkg recorded none, it could not be read).
 */
export function trustLines(trust: TrustReport | undefined): string[] {
  if (!trust) return [];
  const { stats } = trust;
  return [
    `trust: ${trust.source}: ${trust.trusted} files trusted from ${stats.packages} installed packages ` +
    `(${stats.candidates} could run, ${stats.hashed} hashed now, the rest from the cache); ` +
    `${trust.untrusted.length} left untrusted`,
    ...trust.untrusted.map((file) => `  untrusted ${file.path} (${file.package}: ${file.reason})`),
  ];
}

/** The trust report as the JSON summary carries it. */
export function trustJson(trust: TrustReport | undefined): object {
  if (!trust) return {};
  const { source, trusted, untrusted, stats } = trust;
  return { trust: { source, trusted, untrusted, stats } };
}

/**
 * At --log-level debug, records where the command's time goes: start-up (from the runtime's start to the
 * command's first line), then each phase as it runs (lib/phases.ts).
 */
export function startPhases(ctx: Context): void {
  if (!ctx.log.enabled("debug")) return;
  recordPhases();
  addPhase("start-up", performance.now());
}

/** One debug line per recorded phase: `phase kernel/stage/encode: 41.2 ms`. */
export function logPhases(ctx: Context): void {
  for (const { name, ms } of takePhases()) ctx.log.debug(`phase ${name}: ${ms.toFixed(1)} ms`);
}
