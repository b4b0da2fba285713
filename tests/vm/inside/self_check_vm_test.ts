import assert from "node:assert/strict";
import { cgroup2Root } from "../../../lib/kernel/cgroup.ts";
import { DataPlane } from "../../../lib/kernel/dataplane.ts";
import { listHistory } from "../../../lib/state/history.ts";
import { aegisbpf } from "../../cli/cli.ts";

// Self-checking policies (spec.checks) with exec probes inside the qemu guest (tests/vm/harness.ts), where
// BPF-LSM loads: through the real `policy apply`, an enforce policy whose mustDeny exec probe is refused
// and whose mustWork exec probe runs is kept; one that denies its own mustWork program is put back at once
// (exit 3, check-failed), and the old rules deny again; in audit mode the mustDeny probes are skipped with a
// note (nothing is denied) and the mustWork probe passes. The probes run in cgroups of their own under the
// policy's scope, a cgroup of this test. The programs are copies of the guest's busybox, run as `true`.
const inVm = Deno.env.get("AEGIS_IN_VM") === "1";

/** Runs `program true` in `cgroup` from a shell moved there first: "ok", "EPERM" or what it said. */
async function runIn(cgroup: string, program: string): Promise<string> {
  const output = await new Deno.Command("sh", {
    args: ["-c", `echo $$ > '${cgroup}/cgroup.procs' && exec '${program}' true`],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (output.success) return "ok";
  const said = new TextDecoder().decode(output.stderr);
  return /Operation not permitted/.test(said) ? "EPERM" : said.trim() || `exit ${output.code}`;
}

Deno.test({
  name:
    "[vm] exec self-checks: a passing mustDeny/mustWork pair keeps the policy, a failing mustWork rolls back",
  ignore: !inVm,
  async fn() {
    const root = cgroup2Root();
    const scope = `${root}/aegisbpf-self-check-vm`;
    Deno.mkdirSync(scope, { recursive: true });
    const bpffs = "/sys/fs/bpf/self-check";
    Deno.mkdirSync(bpffs, { recursive: true });
    const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-self-check-" });
    // Named busybox (in directories of their own): busybox runs its first argument as the applet then.
    const denied = `${dir}/denied/busybox`;
    const allowed = `${dir}/allowed/busybox`;
    for (const copy of [denied, allowed]) {
      Deno.mkdirSync(copy.slice(0, copy.lastIndexOf("/")));
      Deno.copyFileSync("/usr/bin/busybox", copy);
      Deno.chmodSync(copy, 0o755);
    }
    const env = {
      AEGISBPF_BPFFS: bpffs,
      AEGISBPF_STATE_DIR: `${dir}/state`,
      AEGISBPF_CONFIG_DIR: `${dir}/etc`,
      AEGISBPF_PROC_CMDLINE: `${dir}/cmdline`,
    };
    Deno.mkdirSync(env.AEGISBPF_CONFIG_DIR, { mode: 0o700 });
    Deno.mkdirSync(env.AEGISBPF_STATE_DIR, { mode: 0o700 });
    Deno.writeTextFileSync(env.AEGISBPF_PROC_CMDLINE, "ro\n");
    const policy = (version: number, mode: string, deny: string[]) =>
      `apiVersion: aegisbpf.io/v1\nkind: Policy\nmetadata: { name: vm-check, version: ${version} }\n` +
      `spec:\n  mode: ${mode}\n  scope: { cgroups: ["${scope.slice(root.length)}"] }\n` +
      `  exec:\n    deny:\n${deny.map((path, i) => `      - { id: deny-${i}, path: ${path} }\n`).join("")}` +
      `  checks:\n    implicit: false\n` +
      `    mustWork:\n      - { exec: ${allowed}, args: ["true"], timeout: 20s }\n` +
      `    mustDeny:\n      - { exec: ${denied}, args: ["true"], timeout: 20s }\n`;
    const apply = async (name: string, text: string) => {
      Deno.writeTextFileSync(`${dir}/${name}`, text);
      return await aegisbpf(["policy", "apply", `${dir}/${name}`], { env, cwd: dir });
    };
    const outcomes = () =>
      listHistory(env.AEGISBPF_STATE_DIR).map((entry) => `${entry.seq}:${entry.outcome}`);
    try {
      const good = await apply("good.yaml", policy(1, "enforce", [denied]));
      assert.equal(good.code, 0, good.stderr);
      assert.match(
        good.stdout,
        /^self-check: pass mustWork exec .*allowed\/busybox true: worked \(ran, exit 0\)$/m,
      );
      assert.match(
        good.stdout,
        /^self-check: pass mustDeny exec .*denied\/busybox true: denied \(exec refused: .*Operation not permitted\)$/m,
      );
      assert.equal(await runIn(scope, denied), "EPERM");
      assert.equal(await runIn(scope, allowed), "ok");

      // Denying its own mustWork program: put back at once.
      const bad = await apply("bad.yaml", policy(2, "enforce", [denied, allowed]));
      assert.equal(bad.code, 3, bad.stderr);
      assert.match(
        bad.stderr,
        /self-check failed: mustWork exec .*allowed\/busybox true: expected it to work, got denied .*; rolled back to history entry 1/,
      );
      assert.deepEqual(outcomes(), ["1:applied", "2:check-failed", "3:rolled-back"]);
      assert.equal(await runIn(scope, denied), "EPERM", "the old rules deny again");
      assert.equal(await runIn(scope, allowed), "ok", "the bad policy's deny is gone");

      // Audit: nothing is denied, so the mustDeny probe is skipped (said so); the mustWork one passes.
      const audit = await apply("audit.yaml", policy(4, "audit", [denied]));
      assert.equal(audit.code, 0, audit.stderr);
      assert.match(audit.stdout, /^self-check: 1 mustDeny probes skipped: the policy's mode is audit/m);
      assert.match(audit.stdout, /^self-check: pass mustWork exec/m);
      assert.equal(await runIn(scope, denied), "ok", "audit lets it run");
    } finally {
      DataPlane.detach(bpffs);
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
