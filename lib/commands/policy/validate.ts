import { defineCommand } from "../../cli/command.ts";
import { count, diagnosticJson, diagnosticLine } from "../../text/diagnostics.ts";
import { palette } from "../../text/palette.ts";
import { InputError } from "../../errors.ts";
import { compilePolicy } from "../../policy/compile.ts";
import { parsePolicySource, PolicyError, policySha256, readPolicyFile } from "../../policy/parse.ts";
import { policyRules } from "../../policy/schema.ts";

export const policyValidate = defineCommand({
  name: "validate",
  summary: "check a policy file; every problem with FILE:LINE:COL",
  description:
    "Parses, validates and compiles FILE (YAML or JSON) without touching the host or the kernel. " +
    "Prints every problem as FILE:LINE:COL and exits 2 when there is one.",
  options: {
    json: { type: "boolean", description: "print one JSON object: valid, problems, name, version, sha256" },
  },
  args: [{ name: "FILE", description: "the policy, YAML or JSON", complete: "file" }],
  examples: [
    "aegisbpf policy validate /etc/aegisbpf/policy.yaml",
    "aegisbpf policy validate policy.json --json",
  ],
  async run(ctx, { flags, args }) {
    const file = await readPolicyFile(args.FILE);
    let source;
    try {
      source = parsePolicySource(file.text, file.path);
    } catch (error) {
      if (!(error instanceof PolicyError)) throw error;
      const problems = error.problems.map((problem) => ({ severity: "error" as const, ...problem }));
      if (flags.json) {
        ctx.stdout.line(
          JSON.stringify({ file: file.path, valid: false, problems: problems.map(diagnosticJson) }),
        );
      } else for (const problem of problems) ctx.stdout.line(diagnosticLine(problem, palette(ctx.color)));
      const them = problems.length === 1 ? "it" : "them";
      throw new InputError(
        `${file.path}: ${count(problems.length, "problem")}; fix ${them} and validate again`,
      );
    }
    const { name, version } = source.policy.metadata;
    compilePolicy(source.policy);
    const summary = {
      file: file.path,
      valid: true,
      name,
      version,
      rules: policyRules(source.policy).length,
      sha256: policySha256(file.bytes),
    };
    if (flags.json) ctx.stdout.line(JSON.stringify(summary));
    else {
      ctx.stdout.line(
        `${file.path}: valid: policy ${name} version ${version}, ${count(summary.rules, "rule")}, ` +
          `sha256 ${summary.sha256}`,
      );
    }
    return 0;
  },
});
