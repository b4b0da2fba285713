import assert from "node:assert/strict";
import { DataPlane } from "../../../lib/kernel/dataplane.ts";
import { AgentRun, type Event } from "../../support/agent_run.ts";
import { ocsfProblems } from "../../support/ocsf.ts";

// The agent with `--log-format ocsf` inside the qemu guest, where BPF-LSM programs load: the event types only
// BPF-LSM makes (a refused open, exec, rename and write of a protected file) from a real run, each line
// checked against its OCSF class's required attributes (docs/schema/ocsf-classes.json).
const inVm = Deno.env.get("AEGIS_IN_VM") === "1";

const code = (type: string, rule: string) => (event: Event) =>
  event.metadata?.event_code === type && event.unmapped?.rule?.id === rule;

Deno.test({
  name:
    "[vm] run --log-format ocsf --enforce: BPF-LSM's refused open, exec, rename and protected write are OCSF events with every required attribute",
  ignore: !inVm,
  async fn() {
    const bpffs = "/sys/fs/bpf/ocsf-vm";
    Deno.mkdirSync(bpffs, { recursive: true });
    const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-ocsf-vm-" });
    const dirs = { bpffs, stateDir: `${dir}/state`, configDir: `${dir}/etc` };
    Deno.mkdirSync(dirs.configDir);
    Deno.writeTextFileSync(`${dir}/cmdline`, "ro\n");
    const victim = `${dir}/victim`;
    Deno.writeTextFileSync(victim, "v1\n");
    const guarded = `${dir}/guarded`;
    Deno.writeTextFileSync(guarded, "g1\n");
    const tool = `${dir}/tool`;
    Deno.copyFileSync(Deno.realPathSync("/usr/bin/busybox"), tool);
    Deno.chmodSync(tool, 0o755);
    Deno.writeTextFileSync(
      `${dir}/p.yaml`,
      `apiVersion: aegisbpf.io/v1\nkind: Policy\nmetadata: { name: vm-ocsf, version: 1 }\n` +
        `spec:\n  mode: enforce\n` +
        `  files:\n    deny: [{ id: victim, path: ${victim}, tags: [T1552.001] }]\n` +
        `    protect: [{ id: guarded, path: ${guarded} }]\n` +
        `  exec: { deny: [{ id: tool, path: ${tool} }] }\n`,
    );
    try {
      await using agent = AgentRun.spawn(dirs, ["--enforce", "--policy", `${dir}/p.yaml`], {
        env: { AEGISBPF_PROC_CMDLINE: `${dir}/cmdline` },
        format: "ocsf",
      });
      await agent.waitFor((event) => event.metadata?.event_code === "policy.applied", 120_000);
      assert.throws(() => Deno.openSync(victim).close(), Deno.errors.PermissionDenied);
      assert.throws(() => Deno.renameSync(victim, `${dir}/moved`), Deno.errors.PermissionDenied);
      assert.throws(() => Deno.writeTextFileSync(guarded, "g2\n"), Deno.errors.PermissionDenied);
      assert.throws(
        () => new Deno.Command(tool, { args: ["true"] }).outputSync(),
        Deno.errors.PermissionDenied,
      );

      const opened = await agent.waitFor(code("file.open", "victim"), 30_000);
      assert.deepEqual([opened.class_uid, opened.activity_id, opened.disposition_id], [1001, 14, 2]);
      assert.equal(opened.file.path, victim);
      assert.deepEqual(opened.attacks, [{ technique: { uid: "T1552.001" }, version: "MITRE ATT&CK" }]);
      const renamed = await agent.waitFor(code("file.change", "victim"), 30_000);
      assert.deepEqual([renamed.class_uid, renamed.activity_id], [1001, 5]);
      const written = await agent.waitFor(code("file.write", "guarded"), 30_000);
      assert.deepEqual([written.class_uid, written.activity_id], [1001, 3]);
      const ran = await agent.waitFor(code("exec", "tool"), 30_000);
      assert.deepEqual([ran.class_uid, ran.activity_id, ran.action_id], [1007, 1, 2]);
      for (const event of agent.events) assert.deepEqual(ocsfProblems(event), [], JSON.stringify(event));

      agent.kill("SIGTERM");
      const { code: exit, stderr } = await agent.exit();
      assert.equal(exit, 0, stderr);
    } finally {
      DataPlane.detach(bpffs);
      Deno.removeSync(bpffs);
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
