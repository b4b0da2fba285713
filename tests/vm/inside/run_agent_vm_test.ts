import assert from "node:assert/strict";
import { DataPlane } from "../../../lib/kernel/dataplane.ts";
import { AgentRun } from "../../support/agent_run.ts";

// The agent (`aegisbpf run`) inside the qemu guest (tests/vm/harness.ts), where BPF-LSM programs load:
// `--enforce` with file rules enforces, and the rule freshness watcher covers a file replaced by rename.
const inVm = Deno.env.get("AEGIS_IN_VM") === "1";

/** Opens `path` for reading; "ok", "EPERM" or the error. */
function tryOpen(path: string): string {
  try {
    Deno.openSync(path).close();
    return "ok";
  } catch (error) {
    return /os error 1\b/.test(String(error)) ? "EPERM" : String(error);
  }
}

Deno.test({
  name:
    "[vm] run --enforce denies a file rule with BPF-LSM, and a denied file replaced by rename is denied again within a second",
  ignore: !inVm,
  async fn() {
    const bpffs = "/sys/fs/bpf/agent-vm";
    Deno.mkdirSync(bpffs, { recursive: true });
    const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-agent-vm-" });
    const dirs = { bpffs, stateDir: `${dir}/state`, configDir: `${dir}/etc` };
    Deno.mkdirSync(dirs.configDir);
    Deno.writeTextFileSync(`${dir}/cmdline`, "ro\n");
    const victim = `${dir}/victim`;
    Deno.writeTextFileSync(victim, "v1\n");
    Deno.writeTextFileSync(
      `${dir}/p.yaml`,
      `apiVersion: aegisbpf.io/v1\nkind: Policy\nmetadata: { name: vm-agent, version: 1 }\n` +
        `spec:\n  mode: audit\n  files: { deny: [{ id: victim, path: ${victim} }] }\n`,
    );
    try {
      await using agent = AgentRun.spawn(dirs, ["--enforce", "--policy", `${dir}/p.yaml`], {
        env: { AEGISBPF_PROC_CMDLINE: `${dir}/cmdline` },
      });
      await agent.ready(120_000);
      const state = JSON.parse(Deno.readTextFileSync(`${dirs.stateDir}/agent.json`));
      assert.equal(state.mode, "enforce");
      assert.equal(state.areas.file, "enforce");
      assert.deepEqual(state.partial, []);
      assert.equal(tryOpen(victim), "EPERM");
      const denied = await agent.waitFor((e) => e.type === "file.open" && e.rule === "victim", 30_000);
      assert.equal(denied.decision, "deny");
      assert.equal(denied.mode, "enforce");

      Deno.writeTextFileSync(`${dir}/victim.new`, "v2\n");
      const start = performance.now();
      Deno.renameSync(`${dir}/victim.new`, victim);
      let state2 = tryOpen(victim);
      while (state2 !== "EPERM" && performance.now() - start < 5000) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        state2 = tryOpen(victim);
      }
      const took = performance.now() - start;
      console.log(`replaced file denied again after ${took.toFixed(0)} ms (emulated CPU)`);
      assert.equal(state2, "EPERM");
      assert.ok(took < 1000, `took ${took.toFixed(0)} ms`);
      await agent.waitFor((e) => e.type === "policy.refreshed" && e.rules.includes("victim"), 5000);

      agent.kill("SIGTERM");
      const { code, stderr } = await agent.exit();
      assert.equal(code, 0, stderr);
      assert.equal(tryOpen(victim), "EPERM", "enforcement stays pinned after the agent stops");
    } finally {
      DataPlane.detach(bpffs);
      Deno.removeSync(bpffs);
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
