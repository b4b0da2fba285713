import { defineCommand } from "../../cli/command.ts";
import { diffPolicies } from "../../policy/apply_diff.ts";
import { checkInput, readRawInput } from "../../ops/apply_source.ts";
import { appliedPolicy } from "../../state/apply_state.ts";
import { parsePolicy } from "../../policy/parse.ts";
import { diffLines } from "./_apply.ts";

export const policyDiff = defineCommand({
  name: "diff",
  summary: "what applying FILE would change, per rule list and rule, against the applied policy",
  description: "Compares FILE (a policy or a signed bundle) with the policy in force as history records it " +
    "and prints one line per change: + added, - removed, ~ changed, grouped by rule list (one kind of " +
    "kernel map entry each), then settings such as mode and scope. Rules are matched by id; a rule without " +
    "an id by what it says. Exits 0 whether or not there are changes; touches nothing.",
  options: {
    json: { type: "boolean", description: "print one JSON object: against, rules, settings" },
  },
  args: [{ name: "FILE", description: "the candidate policy or bundle", complete: "file" }],
  examples: ["aegisbpf policy diff policy.yaml", "aegisbpf policy diff policy.bundle.json --json"],
  async run(ctx, { flags, args }) {
    const { stateDir, configDir } = ctx.globals;
    const input = checkInput(await readRawInput(args.FILE), {
      configDir,
      stateDir,
      requireSignature: false,
      rollback: true, // a comparison: a bundle below the counter is still worth comparing
    });
    const applied = appliedPolicy(stateDir);
    const before = applied && parsePolicy(applied.policyText, `history entry ${applied.entry.seq}`);
    const diff = diffPolicies(before, input.parsed.policy);
    const against = applied
      ? `history entry ${applied.entry.seq}: policy ${applied.entry.name} version ${applied.entry.version} ` +
        `(sha256 ${applied.entry.sha256.slice(0, 12)})`
      : "no policy applied";
    if (flags.json) {
      ctx.stdout.line(JSON.stringify({ against: applied?.entry ?? null, ...diff }));
      return 0;
    }
    const lines = diffLines(diff);
    ctx.stdout.line(
      `${args.FILE} against ${against}: ${lines.length === 0 ? "no changes" : `${lines.length} changes`}`,
    );
    for (const line of lines) ctx.stdout.line(`  ${line}`);
    return 0;
  },
});
