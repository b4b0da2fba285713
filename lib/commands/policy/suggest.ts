import { join } from "node:path";
import { defineCommand } from "../../cli/command.ts";
import { readInputText } from "../../cli/input.ts";
import { count } from "../../text/diagnostics.ts";
import { parseDuration } from "../../text/duration.ts";
import { gatherLintFacts } from "../../policy/facts.ts";
import { lintPolicy } from "../../policy/lint.ts";
import { parsePolicySource, readPolicyFile } from "../../policy/parse.ts";
import type { Policy } from "../../policy/schema.ts";
import { suggestPolicy } from "../../policy/suggest.ts";
import { localSuggestHost } from "../../ops/suggest_host.ts";
import { writePolicyOutput } from "./_output.ts";

/** What lint says of a suggested rule that makes it pointless: it is left out. */
const DROPPED_CODES = new Set(["duplicate", "shadowed", "no-effect", "missing-path"]);

export const policySuggest = defineCommand({
  name: "suggest",
  summary: "write a candidate policy from audit events: the rules that let what ran keep running",
  description:
    "Reads audit events (the agent's log <state-dir>/events.jsonl and its rotated events.jsonl.1 " +
    "by default; --events FILE, or - for stdin, in JSON lines as run and events --json write them) and " +
    "writes a candidate policy that would let what the events show keep running: for every exec the " +
    "allowlist would have refused (rule exec.default), an exec.allow entry for its file (the path the line " +
    "names, or the file its name and inode are on this host); for every egress the default deny would have " +
    "refused, an allow by destination address, with the port and protocol the events agree on and the " +
    "program (exe) when the line names one found here; for every write to a protected file, a " +
    "files.writers entry for the program the line names (process.exe). Only would-deny (audit) events " +
    "count. Each rule carries a comment: how many events, first and last time, one example process. What " +
    "cannot be suggested is listed in a closing comment and on stderr, never made up: a deny rule that " +
    "matched (no allow list lifts it), a bind (there is no bind allow list), an exec whose file is not " +
    "found on this host (another host, or gone), a write whose program the line does not name. When suggest " +
    "turns network.egress.default to deny, it keeps the resolvers of /etc/resolv.conf (port 53) and your " +
    "SSH session's peer reachable, and when it turns exec.default to deny, what lint's survival set needs " +
    "(PID 1, shells, sshd, aegisbpf and the libraries they map) runnable; suggested rules lint would call duplicate, shadowed or without effect " +
    "are left out, so the output validates and lints without errors. --from POLICY adds to that policy (its " +
    "rules are written back in full, its metadata.version raised by one when a rule was added; its comments " +
    "are not kept). The reverse, which recorded events a " +
    "candidate would deny, is policy simulate.",
  options: {
    events: {
      type: "string",
      valueName: "LOG",
      complete: "file",
      description: "the recorded event lines (JSON), or - for stdin (default: the agent's log)",
    },
    since: { type: "string", valueName: "DUR", description: "only events of the last DUR, e.g. 24h or 7d" },
    from: { type: "string", valueName: "POLICY", complete: "file", description: "the policy to add to" },
    output: {
      type: "string",
      short: "o",
      valueName: "FILE",
      complete: "file",
      description: "write the candidate to FILE (default: stdout)",
    },
    force: { type: "boolean", description: "replace FILE when it exists" },
  },
  args: [],
  examples: [
    "aegisbpf policy suggest --since 24h -o candidate.yaml",
    "aegisbpf policy suggest --from /etc/aegisbpf/policy.yaml --events events.jsonl -o candidate.yaml",
    "aegisbpf events --json | aegisbpf policy suggest --events -",
  ],
  async run(ctx, { flags }) {
    const since = flags.since === undefined
      ? undefined
      : new Date(Date.now() - parseDuration(flags.since, "--since"));
    const text = await readLog(flags.events, ctx.globals.stateDir);
    let base: Policy | undefined;
    if (flags.from !== undefined) {
      const file = await readPolicyFile(flags.from);
      base = parsePolicySource(file.text, file.path).policy;
    }
    const host = localSuggestHost();
    const options = { ...base && { base }, ...since && { since } };
    // Three passes: to learn which paths the candidate names, then with what lint's lock-out checks need
    // kept (resolvers, the SSH peer, the survival set), then with lint's facts of all of them.
    const facts = async (policy: Policy) =>
      await gatherLintFacts(policy, { stateDir: ctx.globals.stateDir, configDir: ctx.globals.configDir });
    const first = await facts(suggestPolicy(text, host, options).policy);
    const keep = {
      ...options,
      reachable: { resolvers: first.resolvers, ...first.sshClient && { sshPeer: first.sshClient.addr } },
      runnable: first.survival.filter((needed) => !needed.tree).map(({ realPath, why }) => ({
        path: realPath,
        why,
      })),
    };
    const known = await facts(suggestPolicy(text, host, keep).policy);
    const result = suggestPolicy(text, host, {
      ...keep,
      flagged: (policy) => {
        const source = parsePolicySource(JSON.stringify(policy), "candidate");
        return new Set(
          lintPolicy(source.policy, source.locate, known).filter((w) => DROPPED_CODES.has(w.code))
            .map((w) => w.ruleId ?? ""),
        );
      },
    });
    for (const note of result.notes) ctx.log.warn(`not suggested: ${note}`);
    if (flags.output === undefined) ctx.stdout.write(result.text);
    else writePolicyOutput(flags.output, result.text, flags.force === true);
    const { exec, egress, writers } = result.suggested;
    ctx.log.info(
      `${count(result.used, "audit event")} of ${count(result.lines, "line")}: suggested ` +
        `${count(exec, "exec.allow rule")}, ${count(egress, "egress allow")}, ` +
        `${count(writers, "writer")}; ${count(result.notes.length, "kind")} of event not suggested`,
    );
    return 0;
  },
});

/** The log: `events`, stdin for -, or the agent's log and the one it rotated (older first). */
async function readLog(events: string | undefined, stateDir: string): Promise<string> {
  if (events === "-") return await new Response(Deno.stdin.readable).text();
  if (events !== undefined) return await readInputText(events, "event log");
  const current = join(stateDir, "events.jsonl");
  let rotated = "";
  try {
    rotated = await readInputText(`${current}.1`, "event log");
  } catch {
    // No rotated log yet.
  }
  return `${rotated}\n${await readInputText(current, "event log")}`;
}
