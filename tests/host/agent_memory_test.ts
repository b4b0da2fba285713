/**
 * The agent holding a fleet policy of 100,000 CIDR rules keeps its anonymous resident memory (RssAnon: its
 * heap and data, not the pages of the runtime's binary and libraries it maps) at most 64 MiB: the
 * policy is read, checked and compiled in a process of its own (lib/ops/prepare.ts), and the agent keeps
 * the encoded entries and a compact rule table. Kept in the policy as its last rule, a deny of 127.0.0.2
 * shows that the rules reached the kernel and that the agent names a rule 100,000 places down.
 */
import assert from "node:assert/strict";
import { DataPlane } from "../../lib/kernel/dataplane.ts";
import { AgentRun } from "../support/agent_run.ts";
import { TestBpffs } from "../support/bpffs.ts";
import { TestCgroup } from "../support/cgroup.ts";
import { rootTest } from "../support/privileged.ts";
import { fleetPolicyJson, memoryKib, unroutedDenies } from "../support/fleet.ts";

const RULES = 100_000;
const ANON_LIMIT_KIB = 64 * 1024;
const PORT = 62000 + (Deno.pid % 500);

rootTest("the agent holding 100,000 egress CIDR rules keeps at most 64 MiB of anonymous memory", async () => {
  const bpffs = await TestBpffs.mount();
  const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-memory-" });
  const cgroup = TestCgroup.create();
  const listener = Deno.listen({ hostname: "127.0.0.2", port: PORT });
  try {
    const deny: object[] = unroutedDenies(RULES);
    deny.push({ cidr: "127.0.0.2/32", port: PORT, protocol: "tcp" });
    const policyFile = `${dir}/fleet.json`;
    Deno.writeTextFileSync(
      policyFile,
      fleetPolicyJson("fleet", deny, { mode: "enforce", scope: { cgroups: [cgroup.relativePath] } }),
    );
    const dirs = { bpffs: bpffs.path, stateDir: `${dir}/state`, configDir: `${dir}/etc` };
    await using agent = AgentRun.spawn(dirs, ["--policy", policyFile]);
    await agent.waitFor((event) => event.type === "policy.applied", 60_000);
    assert.equal(await cgroup.connect("127.0.0.2", PORT), "EPERM");
    const denied = await agent.waitFor((event) => event.type === "net.connect" && event.decision === "deny");
    assert.equal(denied.rule, `network.egress.deny[${RULES}]`);
    const memory = memoryKib(agent.pid);
    console.log(
      `agent with ${RULES} rules: RssAnon ${memory.anon} KiB, RssFile ${memory.file} KiB, VmRSS ${memory.rss} ` +
        `KiB, VmHWM ${memory.peak} KiB`,
    );
    assert.ok(memory.anon <= ANON_LIMIT_KIB, `RssAnon ${memory.anon} KiB, over ${ANON_LIMIT_KIB} KiB`);
  } finally {
    listener.close();
    try {
      DataPlane.detach(bpffs.path);
    } finally {
      cgroup.remove();
      await bpffs.unmount();
      Deno.removeSync(dir, { recursive: true });
    }
  }
});
