import assert from "node:assert/strict";
import { CFG, encodeU32, encodeU64, FdMap } from "../../../ffi/mod.ts";
import { DataPlane } from "../../../lib/kernel/dataplane.ts";
import { PROGRAMS } from "../../../lib/kernel/object.ts";
import { AgentRun } from "../../support/agent_run.ts";

// Tampering with BPF-LSM enforcement behind the running agent's back, inside the qemu guest where BPF-LSM
// loads (tests/vm/harness.ts): an LSM link's pin removed is pinned again (else the file rule would end with the
// agent: an LSM link lives only while something holds it), and the forced-audit word written through the pin
// (what `bpftool map update` does) is put back. Host side: tests/host/tamper_test.ts.
const inVm = Deno.env.get("AEGIS_IN_VM") === "1";

function tryOpen(path: string): string {
  try {
    Deno.openSync(path).close();
    return "ok";
  } catch (error) {
    return /os error 1\b/.test(String(error)) ? "EPERM" : String(error);
  }
}

/** Polls `check` until it returns `want`, for at most 5 s. */
async function until(want: string, check: () => string): Promise<void> {
  const start = performance.now();
  let last = check();
  while (last !== want && performance.now() - start < 5000) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    last = check();
  }
  assert.equal(last, want);
}

Deno.test({
  name:
    "[vm] tamper: a BPF-LSM link unpinned under the agent is pinned again and keeps denying after it stops; the forced-audit word is put back",
  ignore: !inVm,
  async fn() {
    const bpffs = "/sys/fs/bpf/tamper-vm";
    Deno.mkdirSync(bpffs, { recursive: true });
    const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-tamper-vm-" });
    const dirs = { bpffs, stateDir: `${dir}/state`, configDir: `${dir}/etc` };
    Deno.mkdirSync(dirs.configDir, { mode: 0o700 });
    Deno.writeTextFileSync(`${dir}/cmdline`, "ro\n");
    const victim = `${dir}/victim`;
    Deno.writeTextFileSync(victim, "v1\n");
    Deno.writeTextFileSync(
      `${dir}/p.yaml`,
      `apiVersion: aegisbpf.io/v1\nkind: Policy\nmetadata: { name: vm-tamper, version: 1 }\n` +
        `spec:\n  mode: enforce\n  files: { deny: [{ id: victim, path: ${victim} }] }\n`,
    );
    try {
      await using agent = AgentRun.spawn(dirs, ["--enforce", "--policy", `${dir}/p.yaml`], {
        env: { AEGISBPF_PROC_CMDLINE: `${dir}/cmdline` },
      });
      await agent.ready(120_000);
      assert.equal(tryOpen(victim), "EPERM");

      // The forced-audit word written through the pin, as bpftool would: audit, then put back.
      {
        using config = FdMap.open(`${bpffs}/aegisbpf/maps/aegis_cfg`);
        config.update(encodeU32(CFG.FORCE_AUDIT), encodeU64(1n));
      }
      const word = await agent.waitFor(
        (e) => e.type === "tamper.detected" && e.what === "force_audit",
        10_000,
      );
      assert.deepEqual([word.found, word.restored], [1, 0]);
      await until("EPERM", () => tryOpen(victim));

      const pin = `${bpffs}/aegisbpf/links/${PROGRAMS.fileOpen}`;
      Deno.removeSync(pin);
      const link = await agent.waitFor((e) => e.type === "tamper.detected" && e.what === "link", 10_000);
      assert.equal(link.link, PROGRAMS.fileOpen);
      assert.ok(Deno.statSync(pin).isFile, "pinned again");

      agent.kill("SIGTERM");
      const { code, stderr } = await agent.exit();
      assert.equal(code, 0, stderr);
      assert.equal(tryOpen(victim), "EPERM", "the re-pinned LSM link denies after the agent stopped");
    } finally {
      DataPlane.detach(bpffs);
      Deno.removeSync(bpffs);
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
