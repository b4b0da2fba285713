import { ctimeNsOf } from "../../kernel/resolve.ts";
import { defineCommand } from "../../cli/command.ts";
import { count, type Diagnostic, diagnosticJson, diagnosticLine } from "../../text/diagnostics.ts";
import { palette } from "../../text/palette.ts";
import { InputError } from "../../errors.ts";
import { gatherLintFacts } from "../../policy/facts.ts";
import { lintPolicy } from "../../policy/lint.ts";
import { parsePolicySource, PolicyError, readPolicyFile } from "../../policy/parse.ts";
import { lintProbes } from "../../policy/checks_report.ts";
import { gatherProbeFacts } from "../../ops/probe_facts.ts";

export const policyLint = defineCommand({
  name: "lint",
  summary: "validate, and warn about shadowed rules, lock-out risks and missing paths",
  description:
    "Validates FILE like policy validate, then looks for what a valid policy probably gets wrong: " +
    "duplicate and shadowed rules, rules that match nothing, SSH lock-out, denied resolvers, denying what the " +
    "host needs to run (PID 1, aegisbpf, shells, sshd), deny paths that do not exist, and self-check probes " +
    "(spec.checks) that cannot run here: a program missing or not executable, a file missing, a name that " +
    "does not resolve, a cgroup that does not exist. It reads this host's files (and asks its resolver) for " +
    "that, never the kernel. Exits 2 when there is an error; warnings alone exit 0.",
  options: {
    json: { type: "boolean", description: "print one JSON object with every finding" },
  },
  args: [{ name: "FILE", description: "the policy, YAML or JSON", complete: "file" }],
  examples: ["aegisbpf policy lint /etc/aegisbpf/policy.yaml", "aegisbpf policy lint policy.yaml --json"],
  async run(ctx, { flags, args }) {
    const file = await readPolicyFile(args.FILE);
    const findings = await findingsOf(file.text, file.path, ctx.globals);
    if (flags.json) {
      ctx.stdout.line(JSON.stringify({ file: file.path, findings: findings.map(diagnosticJson) }));
    } else for (const finding of findings) ctx.stdout.line(diagnosticLine(finding, palette(ctx.color)));
    const errors = findings.filter((finding) => finding.severity === "error").length;
    const warnings = findings.length - errors;
    if (errors > 0) {
      const also = warnings > 0 ? ` and ${count(warnings, "warning")}` : "";
      throw new InputError(`${file.path}: ${count(errors, "error")}${also}; fix the errors and lint again`);
    }
    if (!flags.json) ctx.log.info(`${file.path}: no errors, ${count(warnings, "warning")}`);
    return 0;
  },
});

/** Every problem of an invalid policy, or every lint finding of a valid one, in file order. */
async function findingsOf(
  text: string,
  path: string,
  dirs: { stateDir: string; configDir: string },
): Promise<Diagnostic[]> {
  let source;
  try {
    source = parsePolicySource(text, path);
  } catch (error) {
    if (!(error instanceof PolicyError)) throw error;
    return error.problems.map((problem) => ({ severity: "error", ...problem }));
  }
  const facts = await gatherLintFacts(source.policy, {
    stateDir: dirs.stateDir,
    configDir: dirs.configDir,
    ctimeNs: ctimeNsOf,
  });
  const probes = lintProbes(source.policy, source.locate, await gatherProbeFacts(source.policy));
  const byPlace = (a: Diagnostic, b: Diagnostic) =>
    (a.position.line ?? 0) - (b.position.line ?? 0) || (a.position.column ?? 0) - (b.position.column ?? 0);
  return [...lintPolicy(source.policy, source.locate, facts), ...probes].sort(byPlace);
}
