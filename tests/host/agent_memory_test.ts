/**
 * The agent holding a fleet policy of 100,000 CIDR rules stays under 120 MiB resident (issue 8): the
 * policy is read, checked and compiled in a process of its own (lib/agent/prepare.ts), and the agent keeps
 * the encoded entries and a compact rule table. Kept in the policy as its last rule, a deny of 127.0.0.2
 * shows that the rules reached the kernel and that the agent names a rule 100,000 places down.
 */
import assert from "node:assert/strict";
import { DataPlane } from "../../lib/kernel/dataplane.ts";
import { AgentRun } from "../support/agent_run.ts";
import { TestBpffs } from "../support/bpffs.ts";
import { TestCgroup } from "../support/cgroup.ts";
import { rootTest } from "../support/privileged.ts";

const RULES = 100_000;
const LIMIT_KIB = 120 * 1024;
const PORT = 62000 + (Deno.pid % 500);

/** VmRSS and VmHWM (the most it has been) of a process, in KiB. */
function memoryKib(pid: number): { rss: number; peak: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1]);
  return { rss: field("VmRSS"), peak: field("VmHWM") };
}

rootTest("the agent holding 100,000 egress CIDR rules stays under 120 MiB resident", async () => {
  const bpffs = await TestBpffs.mount();
  const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-memory-" });
  const cgroup = TestCgroup.create();
  const listener = Deno.listen({ hostname: "127.0.0.2", port: PORT });
  try {
    // 240.0.0.0/4 is never routed: these rules deny nothing that runs here.
    const deny: object[] = Array.from({ length: RULES }, (_, i) => ({
      cidr: `${240 + (i >> 24 & 15)}.${i >> 16 & 255}.${i >> 8 & 255}.${i & 255}/32`,
    }));
    deny.push({ cidr: "127.0.0.2/32", port: PORT, protocol: "tcp" });
    const policyFile = `${dir}/fleet.json`;
    Deno.writeTextFileSync(
      policyFile,
      JSON.stringify({
        apiVersion: "aegisbpf.io/v1",
        kind: "Policy",
        metadata: { name: "fleet", version: 1 },
        spec: { mode: "enforce", scope: { cgroups: [cgroup.relativePath] }, network: { egress: { deny } } },
      }),
    );
    const dirs = { bpffs: bpffs.path, stateDir: `${dir}/state`, configDir: `${dir}/etc` };
    await using agent = AgentRun.spawn(dirs, ["--policy", policyFile]);
    await agent.waitFor((event) => event.type === "policy.applied", 60_000);
    assert.equal(await cgroup.connect("127.0.0.2", PORT), "EPERM");
    const denied = await agent.waitFor((event) => event.type === "net.connect" && event.decision === "deny");
    assert.equal(denied.rule, `network.egress.deny[${RULES}]`);
    const memory = memoryKib(agent.pid);
    console.log(`agent with ${RULES} rules: VmRSS ${memory.rss} KiB, VmHWM ${memory.peak} KiB`);
    assert.ok(memory.peak < LIMIT_KIB, `VmHWM ${memory.peak} KiB, over ${LIMIT_KIB} KiB`);
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
