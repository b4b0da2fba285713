import { defineCommand } from "../../cli/command.ts";
import { count } from "../../text/diagnostics.ts";
import { readInputText } from "../../cli/input.ts";
import { table } from "../../cli/output.ts";
import { checkInput, readRawInput } from "../../ops/apply_source.ts";
import { withYaml } from "../../policy/yaml.ts";
import { compilePolicy } from "../../policy/compile.ts";
import { simulate } from "../../policy/simulate.ts";
import { parseLearnedTable } from "../../policy/learned_table.ts";
import { localInodeRules } from "../../ops/inode_rules.ts";
import { predictProbes } from "../../policy/checks_report.ts";
import { gatherProbeFacts } from "../../ops/probe_facts.ts";

export const policySimulate = defineCommand({
  name: "simulate",
  summary: "replay recorded events against a policy: per rule, how many it would deny",
  description: "Reads LOG (event lines in JSON, as run and events --json write them; - for stdin) and " +
    "decides every recorded action under FILE, as the kernel would, without touching it. Prints, per rule " +
    "of FILE, how many actions it would deny (or audit, for an audit policy), weighted by each line's " +
    "count, how many of those the log shows were not decided by that rule, and how many recorded denials " +
    "FILE would let through. File and exec rules are matched by path; events that name no path (an exec the " +
    "allowlist refused: a file name and an inode) are matched by inode, against FILE's rules resolved on " +
    "this host, when they come from this host. Agent events are " +
    "skipped and counted (events.dropped adds up the events the log lacks); rate-limit summaries and file " +
    "events without a path, which hold too little to decide, are counted as not replayed. So " +
    "`aegisbpf events --json | aegisbpf policy simulate FILE --events -` works on the agent's log as it is. " +
    "A malformed line is an error naming LOG:LINE, except a torn last line, which is reported. Rules by name " +
    "(host) decide the addresses of --learned TABLE (and of events a rule by name decided, which carry " +
    "hostName); without it, only those. The other direction, the rules that would let recorded audit " +
    "events through, is written by policy suggest. For a policy with self-check probes (spec.checks), it also " +
    "says what each probe will get under FILE (decided the same way: worked, denied, audited) and whether " +
    "it will pass.",
  options: {
    events: {
      type: "string",
      valueName: "LOG",
      required: true,
      complete: "file",
      description: "the recorded event lines (JSON), or - for stdin",
    },
    learned: {
      type: "string",
      valueName: "TABLE",
      complete: "file",
      description: "the learned-address table rules by name decide by: lines ADDRESS NAME, as in /etc/hosts",
    },
    json: { type: "boolean", description: "print the report as one JSON object" },
  },
  args: [{ name: "FILE", description: "the candidate policy, or a signed bundle", complete: "file" }],
  examples: [
    "aegisbpf policy simulate candidate.yaml --events /var/lib/aegisbpf/events.jsonl",
    "aegisbpf policy simulate candidate.json --events - --json",
  ],
  async run(ctx, { flags, args }) {
    const raw = await readRawInput(args.FILE);
    const input = await withYaml(() =>
      checkInput(raw, { ...ctx.globals, requireSignature: false, rollback: true })
    );
    const plan = compilePolicy(input.parsed.policy);
    const source = flags.events === "-" ? "stdin" : flags.events;
    const text = flags.events === "-"
      ? await new Response(Deno.stdin.readable).text()
      : await readInputText(flags.events, "event log");
    // Pathless file and exec events of this host (untrusted execs) are replayed by inode.
    const inodeRules = localInodeRules(plan, (message) => ctx.log.warn(message), ctx.globals.stateDir);
    const learned = flags.learned === undefined
      ? []
      : parseLearnedTable(await readInputText(flags.learned, "learned-address table"), flags.learned);
    const report = simulate(plan, text, source, inodeRules, learned);
    if (report.tornLastLine !== undefined) {
      ctx.log.warn(`${report.tornLastLine}: ignored a torn last line (the log was cut while written)`);
    }
    const { name, version } = input.parsed.policy.metadata;
    const probes = input.parsed.policy.spec.checks
      ? predictProbes(input.parsed.policy, plan, await gatherProbeFacts(input.parsed.policy))
      : undefined;
    if (flags.json) {
      ctx.stdout.line(
        JSON.stringify({ policy: { file: args.FILE, name, version }, ...report, ...probes && { probes } }),
      );
      return 0;
    }
    ctx.stdout.line(
      `${count(report.events, "action event")} (${count(report.actions, "action")}) from ${source} under ` +
        `${args.FILE} (policy ${name} version ${version}, mode ${plan.mode}); ` +
        `${count(report.skipped, "other event")} skipped`,
    );
    if (report.unreplayable.events > 0) {
      ctx.stdout.line(
        `not replayed: ${count(report.unreplayable.events, "event")} ` +
          `(${count(report.unreplayable.actions, "action")}) recorded without an address or path ` +
          `(rate-limit summaries, file and exec events of other hosts without a path)`,
      );
    }
    if (report.dropped > 0) {
      ctx.stdout.line(`the log misses ${count(report.dropped, "event")} the agent lost (events.dropped)`);
    }
    if (report.rules.length === 0) ctx.stdout.line("no rule of this policy matches any of them");
    else {
      const rows = [["RULE", "DECISION", "ACTIONS", "EVENTS", "NOT BY THIS RULE BEFORE"]];
      for (const rule of report.rules) {
        rows.push([rule.rule, rule.decision, `${rule.actions}`, `${rule.events}`, `${rule.newlyMatched}`]);
      }
      for (const line of table(rows)) ctx.stdout.line(line);
    }
    ctx.stdout.line(
      `allowed: ${
        count(report.allowed, "action")
      }, of which ${report.newlyAllowed} denied or audited when recorded`,
    );
    for (const probe of probes ?? []) {
      const verdict = probe.passes === undefined ? "?" : probe.passes ? "pass" : "FAIL";
      ctx.stdout.line(`self-check ${verdict} ${probe.probe}: ${probe.why}`);
    }
    return 0;
  },
});
