/**
 * The agent's resident memory (root): `aegisbpf run` started with the embedded default policy (the
 * baseline, taken in the same run) and with JSON policies of 1,000 / 10,000 / 100,000 egress CIDR rules
 * (in 240.0.0.0/4, which nothing routes), each on a private bpffs and state directory. For each: VmRSS just
 * after the apply, VmRSS 30 s later (after the collector ran), and VmHWM (the most it ever held), with the
 * ratio to the baseline; and how long the start took to the first policy.applied.
 * Usage: deno task bench:agent-memory
 */
import { DataPlane } from "../lib/kernel/dataplane.ts";
import { AgentRun } from "../tests/support/agent_run.ts";
import { TestBpffs } from "../tests/support/bpffs.ts";
import { fleetPolicyJson, memoryKib, unroutedDenies } from "../tests/support/fleet.ts";

const SETTLE_MS = 30_000;

type Reading = { label: string; startMs: number; rss: number; settled: number; peak: number };

async function measure(label: string, rules: number | undefined): Promise<Reading> {
  const bpffs = await TestBpffs.mount();
  const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-bench-memory-" });
  try {
    const args = ["--audit"];
    if (rules !== undefined) {
      Deno.writeTextFileSync(
        `${dir}/policy.json`,
        fleetPolicyJson(`bench-${rules}`, unroutedDenies(rules), { mode: "audit" }),
      );
      args.push("--policy", `${dir}/policy.json`);
    }
    const dirs = { bpffs: bpffs.path, stateDir: `${dir}/state`, configDir: `${dir}/etc` };
    const started = performance.now();
    await using agent = AgentRun.spawn(dirs, args);
    await agent.waitFor((event) => event.type === "policy.applied", 120_000);
    const startMs = performance.now() - started;
    const { rss } = memoryKib(agent.pid);
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    const settled = memoryKib(agent.pid);
    return { label, startMs, rss, settled: settled.rss, peak: settled.peak };
  } finally {
    try {
      DataPlane.detach(bpffs.path);
    } finally {
      await bpffs.unmount();
      Deno.removeSync(dir, { recursive: true });
    }
  }
}

const mib = (kib: number) => `${(kib / 1024).toFixed(1)} MiB`;
const baseline = await measure("default policy (baseline)", undefined);
const readings = [baseline];
for (const rules of [1_000, 10_000, 100_000]) readings.push(await measure(`${rules} rules`, rules));
for (const r of readings) {
  console.log(
    `${r.label}: start ${r.startMs.toFixed(0)} ms; VmRSS after apply ${mib(r.rss)}, ` +
      `${SETTLE_MS / 1000} s later ${mib(r.settled)} (${
        (r.settled / baseline.settled).toFixed(2)
      }x baseline); ` +
      `VmHWM ${mib(r.peak)} (${(r.peak / baseline.peak).toFixed(2)}x)`,
  );
}
