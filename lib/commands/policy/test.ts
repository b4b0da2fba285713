import { defineCommand } from "../../cli/command.ts";
import { count } from "../../text/diagnostics.ts";
import { checkInput, readRawInput } from "../../ops/apply_source.ts";
import { runPolicyTest } from "../../ops/policy_test.ts";
import { readPolicyFile } from "../../policy/parse_text.ts";
import { parsePolicyTest } from "../../policy/test_file.ts";
import { loadYaml, withYaml } from "../../policy/yaml.ts";

export const policyTest = defineCommand({
  name: "test",
  summary: "run a policy's test cases in a throw-away data plane; exit 1 with a diff when one fails",
  description: "Reads the test FILE (YAML: policy: the policy or signed bundle to test, relative to FILE; " +
    "optional mode: audit or enforce, to test it as if its spec.mode were that; cases: each one probe, " +
    "exec: PATH with args:, open: PATH with write: true, connect: ADDRESS:PORT or bind: PORT with " +
    "protocol: tcp or udp, optionally as: { uid, gid }, the verdict it must get, expect: allow, deny or " +
    "audit, and event: fields its event must carry, such as rule, tags or reason). Loads the policy into a " +
    "second, throw-away data plane (its own bpffs mounted under TMPDIR, its own programs, attached only to " +
    "a temporary cgroup it makes, which is the candidate's scope whatever the policy says), runs each probe " +
    "as a child moved into that cgroup, and compares what the kernel did and the event it wrote with the " +
    "case. The live policy, its pins, generation and counters are not touched. Exit 0 when every case " +
    "passes, 1 when one fails (each with expected and got), 2 for a bad FILE (FILE:LINE:COL). A probe of " +
    "files or exec on a kernel where BPF-LSM does not load is skipped and the exit is 1, unless " +
    "--allow-skip. Everything is detached and removed at the end, on Ctrl-C or SIGTERM too, and what a " +
    "killed run left is removed at the start. The probes run on this host: a live policy whose scope covers " +
    "every cgroup decides them too, and a probe it refuses is reported as refused by something else. " +
    "Needs root.",
  options: {
    json: { type: "boolean", description: "print the report as one JSON object" },
    "allow-skip": {
      type: "boolean",
      description: "exit 0 when the only cases not passed were skipped (no BPF-LSM here)",
    },
  },
  args: [{ name: "FILE", description: "the test file (YAML)", complete: "file" }],
  examples: [
    "aegisbpf policy test web-server.test.yaml",
    "aegisbpf policy test policy.test.yaml --json --allow-skip",
  ],
  async run(ctx, { flags, args }) {
    const file = await readPolicyFile(args.FILE);
    await loadYaml();
    const test = parsePolicyTest(file.text, file.path);
    const raw = await readRawInput(test.policy);
    const input = await withYaml(() =>
      checkInput(raw, { ...ctx.globals, requireSignature: false, rollback: true })
    );
    const report = await runPolicyTest(test, input.parsed.policy, test.policy, (m) => ctx.log.warn(m));
    const skippedFails = report.skipped > 0 && !flags["allow-skip"];
    const code = report.failed > 0 || skippedFails ? 1 : 0;
    if (flags.json) {
      ctx.stdout.line(JSON.stringify({ ok: code === 0, ...report }));
      return code;
    }
    for (const result of report.cases) {
      const mark = { pass: "PASS", fail: "FAIL", skipped: "SKIP" }[result.status];
      const why = result.reason === undefined ? "" : `: ${result.reason}`;
      const probe = result.name === result.probe ? "" : ` (${result.probe})`;
      ctx.stdout.line(`${mark} ${result.name}${probe}${why}`);
      for (const line of result.diff ?? []) ctx.stdout.line(`  ${line}`);
    }
    const { name, version, mode } = report.policy;
    ctx.stdout.line(
      `${args.FILE}: policy ${name} version ${version} (${mode}): ${count(report.passed, "case")} passed, ` +
        `${report.failed} failed, ${report.skipped} skipped` +
        (skippedFails ? " (skipped cases fail the run; --allow-skip accepts them)" : ""),
    );
    return code;
  },
});
