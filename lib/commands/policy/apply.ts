import {
  canaryCounts,
  canaryProgress,
  type CanaryVerdict,
  parseDenyRate,
  watchCanary,
} from "../../ops/canary.ts";
import { type Context, defineCommand } from "../../cli/command.ts";
import { parseDuration } from "../../text/duration.ts";
import { InputError } from "../../errors.ts";
import { pinnedGenerationDenies } from "../../kernel/inspect.ts";
import { NetRulesAhead } from "../../kernel/generations.ts";
import { alreadyInForce } from "../../ops/apply.ts";
import { applyChecked, refuseReplay } from "../../ops/apply_text.ts";
import { preflightApply } from "../../ops/apply_preflight.ts";
import { diffPolicies } from "../../policy/apply_diff.ts";
import { checkInput, checkSha256, readApplyConfig, readRawInput } from "../../ops/apply_source.ts";
import { appliedPolicy } from "../../state/apply_state.ts";
import { compileForNow, compilePolicy } from "../../policy/compile.ts";
import { compileEncodedForNow } from "../../kernel/entries.ts";
import { currentEntry, type HistoryEntry, listHistory, setOutcome } from "../../state/history.ts";
import { parsePolicy } from "../../policy/parse_text.ts";
import { withYaml } from "../../policy/yaml.ts";
import { phase, phaseAsync } from "../../phases.ts";
import { reportJson, reportLines, SelfCheckFailedError } from "../../ops/self_check.ts";
import { predictProbes } from "../../policy/checks_report.ts";
import { gatherProbeFacts } from "../../ops/probe_facts.ts";
import {
  checkLockout,
  connectionLines,
  connectionsJson,
  diffLines,
  logPhases,
  reapplyEntry,
  startPhases,
  type Summary,
  summaryLine,
  summaryOf,
  trustJson,
  trustLines,
} from "./_apply.ts";

export const policyApply = defineCommand({
  name: "apply",
  summary: "apply a policy, a signed bundle or an https URL, all or nothing",
  description: "Reads SOURCE (a policy file, a signed bundle, or an https URL fetched with a 10 s timeout, " +
    "following at most 5 redirects, each to https only), " +
    "checks --sha256 against its exact bytes, verifies a bundle against <config-dir>/keys/ and the " +
    "anti-rollback counter, validates and compiles the policy, refuses lock-out risks, then writes the rules " +
    "into the kernel's inactive generation and flips it: all or nothing. Loads the programs or adopts the " +
    "pinned ones; a running agent picks the change up. The names of egress rules by name (host) are " +
    "resolved first with the resolvers of /etc/resolv.conf and their addresses learned for their TTL (a name " +
    "that does not resolve is a warning; the agent resolves them again before they expire). Every attempt " +
    "is recorded in history. With " +
    "--log-level debug it prints where its time went, one line per phase. Exits 2 for " +
    "bad input, 3 when refused for safety (unsigned where signatures are required, a replayed bundle, a " +
    "lock-out risk without --force, an enforce policy using an area this kernel can only audit without " +
    "--allow-partial, a self-check that failed). A policy with spec.checks runs its probes once it is in " +
    "force (with --canary too, before the watch); when one fails, the policy in force before is put back " +
    "at once, the entry is recorded check-failed with the probe named, and the command exits 3.",
  options: {
    "dry-run": {
      type: "boolean",
      description: "run every check the apply runs (same exit code) and print what would change and what " +
        "each self-check probe will get; record, load and attach nothing",
    },
    sha256: { type: "string", valueName: "HEX", description: "the SHA-256 the bytes read must have" },
    "require-signature": { type: "boolean", description: "refuse a policy that is not a signed bundle" },
    force: { type: "boolean", description: "apply despite lock-out risks" },
    "allow-partial": {
      type: "boolean",
      description: "enforce where this kernel can, audit the areas it cannot enforce",
    },
    "no-wait": { type: "boolean", description: "fail at once when another command holds the state lock" },
    canary: {
      type: "string",
      valueName: "DUR",
      description: "watch the new policy's deny rate for DUR after applying (its own rules, in its scope, " +
        "ingress drops left out); roll back by itself when it is exceeded",
    },
    "max-deny-rate": {
      type: "string",
      valueName: "N",
      description: "with --canary: denies per second (or N/min) that trigger the rollback",
    },
    json: { type: "boolean", description: "print the summary as one JSON object" },
  },
  args: [{ name: "SOURCE", description: "policy file, bundle, or https URL", complete: "file" }],
  examples: [
    "aegisbpf policy apply /etc/aegisbpf/policy.yaml",
    "aegisbpf policy apply policy.bundle.json --require-signature",
    "aegisbpf policy apply https://example.com/policy.bundle.json --sha256 <hex>",
    "aegisbpf policy apply policy.yaml --dry-run",
    "aegisbpf policy apply enforce.yaml --canary 10m --max-deny-rate 5",
  ],
  async run(ctx, { flags, args }) {
    startPhases(ctx);
    try {
      const { stateDir, configDir, bpffs } = ctx.globals;
      const canary = canaryOf(flags.canary, flags["max-deny-rate"], flags["dry-run"] === true);
      const raw = await phaseAsync("read", () => readRawInput(args.SOURCE));
      if (flags.sha256 !== undefined) checkSha256(raw, flags.sha256);
      const input = await phaseAsync("parse", () =>
        withYaml(() => {
          const requireSignature = flags["require-signature"] === true ||
            readApplyConfig(configDir).requireSignature;
          return checkInput(raw, { configDir, stateDir, requireSignature, counterEqualDecidedLater: true });
        }));
      // The real apply takes the CIDR rules straight into the kernel's encoding; a dry run decides on them.
      const plan = phase(
        "compile",
        () =>
          flags["dry-run"] ? compileForNow(input.parsed.policy) : compileEncodedForNow(input.parsed.policy),
      );
      // Every rule, whatever its time window: a rule closed now may lock the operator out when it opens.
      const everyRule = plan.windows ? compilePolicy(input.parsed.policy) : plan;
      await phaseAsync("lockout check", () => checkLockout(ctx, input, flags.force === true, everyRule));
      // The kernel's copy of the CIDR rules is written while the apply takes its locks and makes its checks,
      // into a map installed nowhere until the apply stages the new generation (a refused apply drops it).
      // After the lock-out check: a write beside that check's collection of the parse's garbage slowed both.
      using ahead = flags["dry-run"] ? undefined : phase("write ahead", () => NetRulesAhead.start(plan));
      const summary = summaryOf(input, plan);
      if (flags["dry-run"]) {
        // What the real apply decides under the lock: the policy in force already, or a replayed bundle.
        const same = alreadyInForce({ bpffs, stateDir }, plan, input.sha256);
        if (same) {
          const unchanged = { dryRun: true, ...summary, seq: same.seq, outcome: "unchanged", changes: [] };
          if (flags.json) ctx.stdout.line(JSON.stringify(unchanged));
          else {
            ctx.stdout.line(
              `would change nothing: policy ${summary.name} version ${summary.version} (sha256 ` +
                `${summary.sha256}) is already in force as history entry ${same.seq}, mode ${summary.mode}`,
            );
          }
          return 0;
        }
        refuseReplay(input, stateDir);
        const { trust } = preflightApply(plan, {
          allowPartial: flags["allow-partial"] === true,
          warn: (m) => ctx.log.warn(m),
          bpffs,
          stateDir,
        });
        const applied = appliedPolicy(stateDir);
        const before = applied &&
          await withYaml(() => parsePolicy(applied.policyText, `history entry ${applied.entry.seq}`));
        const lines = diffLines(diffPolicies(before, input.parsed.policy));
        // What each self-check probe will get once it is in force, decided as the kernel would.
        const probes = input.parsed.policy.spec.checks
          ? predictProbes(input.parsed.policy, plan, await gatherProbeFacts(input.parsed.policy))
          : undefined;
        if (flags.json) {
          ctx.stdout.line(
            JSON.stringify({
              dryRun: true,
              ...summary,
              changes: lines,
              ...trustJson(trust),
              ...probes && { probes },
            }),
          );
        } else {
          ctx.stdout.line(summaryLine("would apply", summary));
          for (const line of lines.length > 0 ? lines : ["(no rule changes)"]) ctx.stdout.line(`  ${line}`);
          for (const line of trustLines(trust)) ctx.stdout.line(line);
          for (const probe of probes ?? []) {
            const verdict = probe.passes === undefined ? "?" : probe.passes ? "pass" : "FAIL";
            ctx.stdout.line(`self-check (predicted) ${verdict} ${probe.probe}: ${probe.why}`);
          }
        }
        return 0;
      }
      // With a canary, what a failed canary goes back to: the policy in force when the apply starts.
      let fallback: HistoryEntry | undefined;
      let baseline: { denies: bigint; at: number } | undefined;
      const result = await sayFailedChecks(
        ctx,
        applyChecked(ctx.globals, input, plan, {
          holder: "policy apply",
          wait: flags["no-wait"] !== true,
          onWait: (message) => ctx.log.info(message),
          timeoutMs: ctx.globals.lockTimeoutMs,
          outcome: canary ? "canary" : "applied",
          allowPartial: flags["allow-partial"] === true,
          ...ahead && { ahead },
          warn: (message) => ctx.log.warn(message),
          beforeApply: () => {
            if (!canary) return;
            fallback = currentEntry(listHistory(stateDir));
            if (fallback === undefined) {
              throw new InputError(
                "--canary needs a policy in force to roll back to, and history holds none; apply one first " +
                  "(an audit policy is the safe start)",
              );
            }
            // The canary counts the new generation's own denies; its counters are cleared when it is staged,
            // so each one comes after this moment.
            baseline = { denies: 0n, at: performance.now() };
          },
        }),
      );
      using _lock = result.lock;
      // The policy in force already (configuration management re-running its apply): nothing to do.
      if ("unchanged" in result) {
        const same = result.unchanged;
        const unchanged = { ...summary, seq: same.seq, outcome: "unchanged" };
        if (flags.json) ctx.stdout.line(JSON.stringify(unchanged));
        else {
          ctx.stdout.line(
            `unchanged: policy ${summary.name} version ${summary.version} (sha256 ${summary.sha256}) is ` +
              `already in force as history entry ${same.seq}, mode ${summary.mode}` +
              (canary ? "; no canary to watch" : ""),
          );
        }
        return 0;
      }
      const { entry, generation, connections, trust, checks } = result.applied;
      const done = { ...summary, generation, seq: entry.seq, outcome: entry.outcome };
      const checkLines = checks ? reportLines(checks).map((line) => `self-check: ${line}`) : [];
      if (!canary || !fallback || !baseline) {
        if (flags.json) {
          ctx.stdout.line(
            JSON.stringify({
              ...done,
              ...connectionsJson(connections),
              ...trustJson(trust),
              ...reportJson(checks),
            }),
          );
        } else {
          ctx.stdout.line(summaryLine("applied", done));
          for (const line of connectionLines(connections, plan)) ctx.stdout.line(line);
          for (const line of trustLines(trust)) ctx.stdout.line(line);
          for (const line of checkLines) ctx.stdout.line(line);
        }
        return 0;
      }
      if (!flags.json) {
        ctx.stdout.line(summaryLine("applied (canary)", done));
        for (const line of connectionLines(connections, plan)) ctx.stdout.line(line);
        for (const line of trustLines(trust)) ctx.stdout.line(line);
        for (const line of checkLines) ctx.stdout.line(line);
      }
      return await runCanary(ctx, {
        ...canary,
        entry,
        fallback,
        json: flags.json === true,
        done,
        baseline,
        readDenies: () => pinnedGenerationDenies(bpffs, generation, canaryCounts(plan.rules)),
      });
    } finally {
      logPhases(ctx);
    }
  },
});

/**
 * A self-check that failed (the previous policy is back in force): each probe's answer on stderr, then
 * the error (exit 3) naming the probe that failed.
 */
export async function sayFailedChecks<T>(ctx: Context, work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (error) {
    if (error instanceof SelfCheckFailedError) {
      for (const line of reportLines(error.report)) ctx.stderr.line(`self-check: ${line}`);
    }
    throw error;
  }
}

type Canary = { durationMs: number; maxDenyRate: number; rateText: string; durationText: string };

function canaryOf(
  duration: string | undefined,
  rate: string | undefined,
  dryRun: boolean,
): Canary | undefined {
  if (duration === undefined && rate === undefined) return undefined;
  if (duration === undefined) throw new InputError("--max-deny-rate needs --canary DUR");
  if (rate === undefined) throw new InputError("--canary needs --max-deny-rate N (denies per second)");
  if (dryRun) throw new InputError("--canary and --dry-run do not go together: a dry run applies nothing");
  const durationMs = parseDuration(duration, "--canary");
  if (durationMs < 1000) {
    throw new InputError(`--canary: ${duration} is too short to measure; give 1s or more`);
  }
  return { durationMs, maxDenyRate: parseDenyRate(rate), rateText: rate, durationText: duration };
}

/**
 * Watches the canary with the state lock still held (no other apply lands meanwhile), then records its
 * verdict: `canary-kept`, or an automatic rollback to `fallback` with the canary entry marked
 * `canary-rolled-back`. Ctrl-C or SIGTERM during the watch rolls back too. Exit 0 kept, 1 rolled back.
 */
async function runCanary(
  ctx: Context,
  canary: Canary & {
    entry: HistoryEntry;
    fallback: HistoryEntry;
    json: boolean;
    done: Summary;
    baseline: { denies: bigint; at: number };
    readDenies: () => bigint | undefined;
  },
): Promise<number> {
  const { stateDir } = ctx.globals;
  const controller = new AbortController();
  const stop = () => controller.abort();
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  for (const signal of signals) Deno.addSignalListener(signal, stop);
  let verdict: CanaryVerdict;
  const limitText = `${canary.rateText}${/\//.test(canary.rateText) ? "" : "/s"}`;
  try {
    ctx.log.info(
      `canary: watching the deny rate for ${canary.durationText} (rolls back above ${limitText}; Ctrl-C ` +
        `rolls back now)`,
    );
    const progress = canaryProgress({
      durationText: canary.durationText,
      limitText,
      write: (line) => ctx.log.info(line),
    });
    verdict = await watchCanary({
      durationMs: canary.durationMs,
      maxDenyRate: canary.maxDenyRate,
      readDenies: canary.readDenies,
      baseline: canary.baseline,
      signal: controller.signal,
      onSample: (sample) => {
        // Every sample at debug level; a progress line every 10 s at info.
        const { elapsedMs, rate, denies } = sample;
        ctx.log.debug(`canary: ${Math.round(elapsedMs / 1000)}s, ${denies} denies, ${rate.toFixed(2)}/s`);
        progress(sample);
      },
    });
  } finally {
    for (const signal of signals) Deno.removeSignalListener(signal, stop);
  }
  if (verdict.verdict === "kept") {
    const kept = setOutcome(stateDir, canary.entry.seq, "canary-kept");
    const result = { ...canary.done, outcome: kept.outcome, canary: verdict };
    ctx.stdout.line(
      canary.json ? JSON.stringify(result, bigintJson) : `canary passed: ${verdict.denies} denies in ` +
        `${canary.durationText}; history entry ${kept.seq} kept (canary-kept)`,
    );
    return 0;
  }
  const why = verdict.verdict === "exceeded"
    ? `the deny rate reached ${verdict.rate.toFixed(2)}/s over ${Math.round(verdict.windowMs / 1000)}s ` +
      `(limit ${canary.maxDenyRate}/s)`
    : `the canary was ${verdict.reason}`;
  const restored = await reapplyEntry(ctx, canary.fallback, { force: true, allowPartial: true });
  setOutcome(stateDir, canary.entry.seq, "canary-rolled-back");
  if (canary.json) {
    ctx.stdout.line(JSON.stringify({
      ...canary.done,
      outcome: "canary-rolled-back",
      canary: verdict,
      restoredSeq: canary.fallback.seq,
      rollbackSeq: restored.entry.seq,
    }, bigintJson));
  }
  throw new CanaryRolledBackError(
    `canary failed after ${Math.round(verdict.elapsedMs / 1000)}s: ${why}; rolled back to history entry ` +
      `${canary.fallback.seq} (policy ${canary.fallback.name} version ${canary.fallback.version}), recorded ` +
      `as entry ${restored.entry.seq}`,
  );
}

/** A canary that ended in an automatic rollback: exit 1, a failed check. */
class CanaryRolledBackError extends Error {
  override name = "CanaryRolledBackError";
}

function bigintJson(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? Number(value) : value;
}
