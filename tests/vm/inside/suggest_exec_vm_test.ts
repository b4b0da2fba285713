import assert from "node:assert/strict";
import { DataPlane } from "../../../lib/kernel/dataplane.ts";
import { aegisbpf } from "../../cli/cli.ts";
import { AgentRun, type Event } from "../../support/agent_run.ts";
import { TestCgroup } from "../../support/cgroup.ts";

/** Runs a busybox shell script inside `cgroup` (the shell moves itself in first); the guest has no bash. */
async function inCgroup(cgroup: TestCgroup, script: string): Promise<{ code: number; stderr: string }> {
  const output = await new Deno.Command("/bin/sh", {
    args: ["-c", `echo $$ > '${cgroup.path}/cgroup.procs' && ${script}`],
    stdout: "null",
    stderr: "piped",
  }).output();
  return { code: output.code, stderr: new TextDecoder().decode(output.stderr) };
}

// `policy suggest` from a real run, inside the qemu guest where the exec allowlist is enforced: the agent runs
// an exec allowlist (exec.default: deny, nothing allowed) in audit, scoped to a test cgroup, and records a
// workload there; the policy suggest writes from its log, applied in enforce, lets the same workload run
// with zero denials, and a binary new to the host (a fresh copy: a new inode) is denied.
const inVm = Deno.env.get("AEGIS_IN_VM") === "1";

Deno.test({
  name:
    "[vm] policy suggest from an exec allowlist's audit log: in enforce the workload runs with no denial, a new binary is denied",
  ignore: !inVm,
  async fn() {
    const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-vm-suggest-" });
    Deno.chmodSync(dir, 0o755);
    const bpffs = "/sys/fs/bpf/suggest-exec";
    Deno.mkdirSync(bpffs, { recursive: true });
    const dirs = { bpffs, stateDir: `${dir}/state`, configDir: `${dir}/etc` };
    Deno.mkdirSync(dirs.configDir, { mode: 0o700 });
    const env = {
      AEGISBPF_BPFFS: bpffs,
      AEGISBPF_STATE_DIR: dirs.stateDir,
      AEGISBPF_CONFIG_DIR: dirs.configDir,
      AEGISBPF_PROC_CMDLINE: `${dir}/cmdline`,
    };
    Deno.writeTextFileSync(`${dir}/cmdline`, "ro\n");
    const cgroup = TestCgroup.create();
    // The workload: the shell, and a tool of its own (a copy of the guest's busybox, its own inode) where
    // programs are installed (suggest finds a file by name and inode in the usual program directories);
    // named busybox..., so that it takes the applet to run as its first argument.
    const tool = "/usr/local/bin/busybox-aegisbpf-suggest";
    Deno.mkdirSync("/usr/local/bin", { recursive: true });
    Deno.copyFileSync("/bin/sh", tool);
    Deno.chmodSync(tool, 0o755);
    const workload = `/bin/true && ${tool} sh -c 'exit 0' && ${tool} sh -c 'exit 0'`;
    try {
      const file = `${dir}/learn.yaml`;
      Deno.writeTextFileSync(
        file,
        `apiVersion: aegisbpf.io/v1
kind: Policy
metadata: { name: learn-exec, version: 1 }
spec:
  mode: audit
  scope: { cgroups: ["${cgroup.relativePath}"] }
  exec:
    default: deny
`,
      );
      // An allowlist that allows nothing yet: the lock-out check refuses it unless forced (it only audits);
      // the agent then runs the policy in force.
      const learning = await aegisbpf(["policy", "apply", file, "--force"], { env });
      assert.equal(learning.code, 0, learning.stderr);
      {
        await using agent = AgentRun.spawn(dirs, [], { env });
        await agent.ready(120_000);
        const ran = await inCgroup(cgroup, workload);
        assert.equal(ran.code, 0, `audit lets the workload run: ${ran.stderr}`);
        // An untrusted exec's event names the file by name and inode.
        const toolIno = Deno.statSync(tool).ino;
        const isTool = (event: Event) =>
          event.type === "exec" && event.decision === "audit" &&
          (event as { file?: { ino?: number } }).file?.ino === toolIno;
        await agent.waitFor(isTool, 30_000);
        agent.kill("SIGTERM");
        assert.equal((await agent.exit()).code, 0);
      }
      const suggested = await aegisbpf(["policy", "suggest", "--from", file, "--output", `${dir}/c.yaml`], {
        env,
      });
      assert.equal(suggested.code, 0, suggested.stderr);
      const candidate = Deno.readTextFileSync(`${dir}/c.yaml`);
      assert.ok(candidate.includes(tool), `the tool is allowed by the candidate:\n${candidate}`);
      Deno.writeTextFileSync(`${dir}/c.yaml`, candidate.replace("mode: audit", "mode: enforce"));
      // --force: the lock-out check asks for the survival set (the guest's deno and its libraries among it)
      // in the allowed set, whatever the scope; this one is a test cgroup that runs only the workload.
      const applied = await aegisbpf(["policy", "apply", `${dir}/c.yaml`, "--force"], { env });
      assert.equal(applied.code, 0, applied.stdout + applied.stderr);
      const denials = () => {
        using plane = DataPlane.open({ bpffs, areas: [] });
        return plane.counters().decisions.exec.deny;
      };
      const before = denials();
      const again = await inCgroup(cgroup, workload);
      assert.equal(again.code, 0, `what ran still runs: ${again.stderr}`);
      assert.equal(denials(), before, "zero denials for the recorded workload");
      Deno.mkdirSync(`${dir}/new`, { mode: 0o755 });
      const fresh = `${dir}/new/sh`; // a new inode, never seen
      Deno.copyFileSync("/bin/sh", fresh);
      Deno.chmodSync(fresh, 0o755);
      const refused = await inCgroup(cgroup, `${fresh} -c 'exit 0'`);
      assert.notEqual(refused.code, 0);
      assert.match(refused.stderr, /Operation not permitted|Permission denied/);
      assert.ok(denials() > before, "the new binary is denied");
    } finally {
      DataPlane.detach(bpffs);
      cgroup.remove();
      Deno.removeSync(tool);
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
