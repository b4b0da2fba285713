import { defineCommand } from "../cli/command.ts";
import { InputError } from "../errors.ts";
import { agentEventLog, findLoggedEvent } from "../agent/event_lookup.ts";
import { checkInput, readRawInput } from "../ops/apply_source.ts";
import { type InodeRules, parseEventLine } from "../policy/apply_explain.ts";
import { localInodeRules } from "../ops/inode_rules.ts";
import { appliedPolicy } from "../state/apply_state.ts";
import { compilePolicy } from "../policy/compile.ts";
import { decide } from "../policy/decide.ts";
import { parseLearnedTable } from "../policy/learned_table.ts";
import { readInputText } from "../cli/input.ts";
import { type Policy, policyRules } from "../policy/schema.ts";
import { parsePolicy } from "../policy/parse.ts";

export const explain = defineCommand({
  name: "explain",
  summary: "which rule decides an event, under the applied policy or FILE",
  description: "Takes an event and prints the decision and the rule that takes it, computed as the kernel " +
    "does, under the policy in force (from history) or under --policy FILE. EVENT is a JSON line " +
    "(docs/events.md, as events --json and run --log-format json print it), a text line as events prints " +
    "it, or only the time that line starts with: a text line or a time is looked up in the agent's event log " +
    "(events.jsonl and events.jsonl.1), where its JSON line holds every field. - reads lines of either kind " +
    "from stdin (one answer per line). When the event names a rule, says whether the policy agrees. File " +
    "and exec rules are matched by path; an event that names no path (an exec the allowlist refused) by its " +
    "inode, against the policy's rules resolved on this host, when it comes from this host. Rules by name " +
    "(host) decide the addresses of --learned TABLE, and the address of an event decided by name (it carries " +
    "hostName).",
  options: {
    policy: { type: "string", valueName: "FILE", complete: "file", description: "decide under FILE instead" },
    learned: {
      type: "string",
      valueName: "TABLE",
      complete: "file",
      description: "the learned-address table rules by name decide by: lines ADDRESS NAME, as in /etc/hosts",
    },
    json: { type: "boolean", description: "one JSON object per event: decision, rule, line" },
  },
  args: [{
    name: "EVENT",
    description: "an event's JSON line, its text line or time as events prints it, or - for stdin",
    complete: "none",
  }],
  examples: [
    `aegisbpf explain '{"type":"net.connect","net":{"protocol":"tcp","daddr":"169.254.169.254","dport":80}}'`,
    "aegisbpf explain 2026-11-23T10:00:00.123Z",
    "aegisbpf explain - --policy candidate.yaml",
  ],
  async run(ctx, { flags, args }) {
    const { policy, label } = await choosePolicy(ctx.globals, flags.policy);
    const plan = compilePolicy(policy);
    const text = args.EVENT === "-" ? await new Response(Deno.stdin.readable).text() : args.EVENT;
    const lines = text.split("\n").map((line) => line.trim()).filter((line) => line !== "");
    if (lines.length === 0) throw new InputError("No event line given: pass one, or - with lines on stdin");
    const ids = new Set(policyRules(policy).map((rule) => rule.id));
    const learned = flags.learned === undefined
      ? []
      : parseLearnedTable(await readInputText(flags.learned, "learned-address table"), flags.learned);
    // An untrusted exec names no path: matched by inode, resolving the policy's inode rules here only then.
    let resolved: InodeRules | null | undefined;
    const inodeRules: InodeRules = (dev, ino, host) =>
      (resolved ??= localInodeRules(plan, (message) => ctx.log.warn(message)) ?? null)?.(dev, ino, host);
    lines.forEach((line, index) => {
      const given = args.EVENT === "-" ? `stdin:${index + 1}` : "EVENT";
      const { raw, where } = line.startsWith("{")
        ? { raw: line, where: given }
        : findLoggedEvent(agentEventLog(ctx.globals.stateDir), line, given);
      const { event, type, rule, learned: implied } = parseEventLine(raw, where, inodeRules);
      const decision = decide(plan, event, { learned: [...implied ?? [], ...learned] });
      const agrees = rule === undefined ? undefined : rule === (decision.ruleName ?? "");
      if (flags.json) {
        ctx.stdout.line(JSON.stringify({
          line: index + 1,
          type,
          ...decision,
          policy: label,
          ...(where === given ? {} : { logged: where }),
          ...(agrees === undefined ? {} : { eventRule: rule, agrees }),
        }));
        return;
      }
      const writer = decision.writer?.ruleName;
      const by = writer !== undefined
        ? `rule ${writer} (a trusted writer)`
        : decision.ruleName === undefined
        ? "no rule matches"
        : `rule ${decision.ruleName}`;
      let note = "";
      if (rule !== undefined && !agrees) {
        note = ids.has(rule)
          ? `; the event says rule ${rule}`
          : `; the event's rule ${rule} is not in this policy`;
      }
      const logged = where === given ? "" : ` (logged at ${where})`;
      ctx.stdout.line(`${type}${logged}: ${decision.decision} by ${by} under ${label}${note}`);
    });
    return 0;
  },
});

async function choosePolicy(
  globals: { stateDir: string; configDir: string },
  file: string | undefined,
): Promise<{ policy: Policy; label: string }> {
  if (file !== undefined) {
    const input = checkInput(await readRawInput(file), {
      ...globals,
      requireSignature: false,
      rollback: true,
    });
    const { name, version } = input.parsed.policy.metadata;
    return { policy: input.parsed.policy, label: `${file} (policy ${name} version ${version})` };
  }
  const applied = appliedPolicy(globals.stateDir);
  if (applied === undefined) {
    throw new InputError("No policy applied to explain against; give --policy FILE");
  }
  const { seq, name, version } = applied.entry;
  return {
    policy: parsePolicy(applied.policyText, `history entry ${seq}`),
    label: `applied policy ${name} version ${version} (history entry ${seq})`,
  };
}
