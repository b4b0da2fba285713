import { defineCommand } from "../../cli/command.ts";
import { RefusedError } from "../../errors.ts";
import { applyPolicy, lockState, settleInterruptedApply } from "../../agent/apply.ts";
import { diffPolicies } from "../../policy/apply_diff.ts";
import { checkInput, checkSha256, readApplyConfig, readRawInput } from "../../policy/apply_source.ts";
import { appliedPolicy } from "../../policy/apply_state.ts";
import { compilePolicy } from "../../policy/compile.ts";
import { readVersionCounter } from "../../policy/history.ts";
import { parsePolicy } from "../../policy/parse.ts";
import {
  checkLockout,
  connectionLines,
  connectionsJson,
  diffLines,
  summaryLine,
  summaryOf,
} from "./_apply.ts";

export const policyApply = defineCommand({
  name: "apply",
  summary: "apply a policy, a signed bundle or an https URL, all or nothing",
  description:
    "Reads SOURCE (a policy file, a signed bundle, or an https URL fetched with a 10 s timeout), " +
    "checks --sha256 against its exact bytes, verifies a bundle against <config-dir>/keys/ and the " +
    "anti-rollback counter, validates and compiles the policy, refuses lock-out risks, then writes the rules " +
    "into the kernel's inactive generation and flips it: all or nothing. Loads the programs or adopts the " +
    "pinned ones; a running agent picks the change up. Every attempt is recorded in history. Exits 2 for " +
    "bad input, 3 when refused for safety (unsigned where signatures are required, a replayed bundle, a " +
    "lock-out risk without --force, an enforce policy using an area this kernel can only audit without " +
    "--allow-partial).",
  options: {
    "dry-run": {
      type: "boolean",
      description: "check everything and print what would change; touch nothing",
    },
    sha256: { type: "string", valueName: "HEX", description: "the SHA-256 the bytes read must have" },
    "require-signature": { type: "boolean", description: "refuse a policy that is not a signed bundle" },
    force: { type: "boolean", description: "apply despite lock-out risks" },
    "allow-partial": {
      type: "boolean",
      description: "enforce where this kernel can, audit the areas it cannot enforce",
    },
    "no-wait": { type: "boolean", description: "fail at once when another command holds the state lock" },
    json: { type: "boolean", description: "print the summary as one JSON object" },
  },
  args: [{ name: "SOURCE", description: "policy file, bundle, or https URL", complete: "file" }],
  examples: [
    "aegisbpf policy apply /etc/aegisbpf/policy.yaml",
    "aegisbpf policy apply policy.bundle.json --require-signature",
    "aegisbpf policy apply https://example.com/policy.bundle.json --sha256 <hex>",
    "aegisbpf policy apply policy.yaml --dry-run",
  ],
  async run(ctx, { flags, args }) {
    const { stateDir, configDir, bpffs } = ctx.globals;
    const raw = await readRawInput(args.SOURCE);
    if (flags.sha256 !== undefined) checkSha256(raw, flags.sha256);
    const requireSignature = flags["require-signature"] === true ||
      readApplyConfig(configDir).requireSignature;
    const input = checkInput(raw, { configDir, stateDir, requireSignature });
    const plan = compilePolicy(input.parsed.policy);
    await checkLockout(ctx, input, flags.force === true);
    const summary = summaryOf(input, plan);
    if (flags["dry-run"]) {
      const applied = appliedPolicy(stateDir);
      const before = applied && parsePolicy(applied.policyText, `history entry ${applied.entry.seq}`);
      const lines = diffLines(diffPolicies(before, input.parsed.policy));
      if (flags.json) ctx.stdout.line(JSON.stringify({ dryRun: true, ...summary, changes: lines }));
      else {
        ctx.stdout.line(summaryLine("would apply", summary));
        for (const line of lines.length > 0 ? lines : ["(no rule changes)"]) ctx.stdout.line(`  ${line}`);
      }
      return 0;
    }
    using _lock = await lockState(stateDir, "policy apply", {
      wait: flags["no-wait"] !== true,
      onWait: (message) => ctx.log.info(message),
    });
    settleInterruptedApply({ bpffs, stateDir });
    // Another apply may have raised the counter while this one waited for the lock.
    const { version } = input.parsed.policy.metadata;
    const counter = readVersionCounter(stateDir);
    if (input.kind === "bundle" && version <= counter) {
      throw new RefusedError(
        `Refused bundle ${input.source}: policy version ${version} is not greater than the anti-rollback ` +
          `counter ${counter} (a newer bundle was applied meanwhile)`,
      );
    }
    const { entry, generation, connections } = await applyPolicy({
      bpffs,
      stateDir,
      input,
      plan,
      outcome: "applied",
      allowPartial: flags["allow-partial"] === true,
      warn: (message) => ctx.log.warn(message),
    });
    const done = { ...summary, generation, seq: entry.seq, outcome: entry.outcome };
    if (flags.json) ctx.stdout.line(JSON.stringify({ ...done, ...connectionsJson(connections) }));
    else {
      ctx.stdout.line(summaryLine("applied", done));
      for (const line of connectionLines(connections, plan)) ctx.stdout.line(line);
    }
    return 0;
  },
});
