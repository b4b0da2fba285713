import { defineCommand } from "../../cli/command.ts";
import { reportJson, reportLines } from "../../ops/self_check.ts";
import { sayFailedChecks } from "./apply.ts";
import { rollbackLocked } from "../../ops/apply_text.ts";
import {
  checkLockout,
  connectionLines,
  connectionsJson,
  logPhases,
  startPhases,
  summaryLine,
  summaryOf,
} from "./_apply.ts";

export const policyRollback = defineCommand({
  name: "rollback",
  summary: "re-apply the previous policy, or a chosen one, from history",
  description: "Re-applies, through the same path as policy apply, the policy in force before the current " +
    "one, or the history entry --to names (a seq, or 8 to 64 hex digits of its sha256). The rollback is " +
    "recorded as a new history entry with outcome rolled-back. A stored bundle's signature is verified " +
    "again against the keys trusted now; the anti-rollback counter does not apply to this explicit operator " +
    "action. An unsigned policy is refused where signatures are required. When the entry's policy has " +
    "spec.checks, its probes run once it is back in force; a failed one puts the policy in force before " +
    "back and exits 3.",
  options: {
    to: { type: "string", valueName: "SEQ|SHA256", description: "the history entry to re-apply" },
    force: { type: "boolean", description: "re-apply despite lock-out risks" },
    "allow-partial": {
      type: "boolean",
      description: "enforce where this kernel can, audit the areas it cannot enforce",
    },
    "no-wait": { type: "boolean", description: "fail at once when another command holds the state lock" },
    json: { type: "boolean", description: "print the summary as one JSON object" },
  },
  args: [],
  examples: [
    "aegisbpf policy rollback",
    "aegisbpf policy rollback --to 3",
    "aegisbpf policy rollback --to 9f2c41d0",
  ],
  async run(ctx, { flags }) {
    startPhases(ctx);
    try {
      const { input, plan, entry, generation, connections, target, checks } = await sayFailedChecks(
        ctx,
        rollbackLocked(
          ctx.globals,
          flags.to,
          {
            holder: "policy rollback",
            wait: flags["no-wait"] !== true,
            onWait: (message) => ctx.log.info(message),
            timeoutMs: ctx.globals.lockTimeoutMs,
            allowPartial: flags["allow-partial"] === true,
            lockout: (checked, plan) => checkLockout(ctx, checked, flags.force === true, plan),
            warn: (message) => ctx.log.warn(message),
            hint: "; see aegisbpf policy history",
          },
        ),
      );
      const done = { ...summaryOf(input, plan), generation, seq: entry.seq, outcome: entry.outcome };
      if (flags.json) {
        ctx.stdout.line(
          JSON.stringify({
            ...done,
            restoredSeq: target.seq,
            ...connectionsJson(connections),
            ...reportJson(checks),
          }),
        );
      } else {
        ctx.stdout.line(summaryLine(`rolled back to entry ${target.seq}:`, done));
        for (const line of connectionLines(connections, plan)) ctx.stdout.line(line);
        for (const line of checks ? reportLines(checks) : []) ctx.stdout.line(`self-check: ${line}`);
      }
      return 0;
    } finally {
      logPhases(ctx);
    }
  },
});
