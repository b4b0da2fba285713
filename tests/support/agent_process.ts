/**
 * A stand-in agent run as its own process by the lifecycle tests, to show that pins outlive it:
 *   apply BPFFS CGROUP   open a DataPlane, apply the rule set below, print "applied GEN", then wait for
 *                        stdin to close before closing the plane and exiting
 *   adopt BPFFS CGROUP   open a DataPlane on the same pins, check the rule set below is the active one,
 *                        print "adopted GEN", exit
 * Any failure prints the error and exits 1.
 */
import { DataPlane } from "../../lib/kernel/dataplane.ts";
import { ruleSetEntries } from "../../lib/kernel/entries.ts";
import { ruleSet } from "./plane.ts";
import { ipv4Rule } from "./slice.ts";

/** What the stand-in agent enforces: 127.0.0.2 is denied. */
export const AGENT_RULE_SET = ruleSet({
  mode: "enforce",
  rules: [
    { id: "default", area: "ingress", action: "deny" },
    { id: "loopback2", area: "egress", action: "deny" },
  ],
  egress: [ipv4Rule("127.0.0.2/32", 1)],
});

function open(bpffs: string, cgroupPath: string): DataPlane {
  return DataPlane.open({ bpffs, cgroupPath, areas: ["egress"] });
}

async function apply(bpffs: string, cgroupPath: string): Promise<void> {
  const plane = open(bpffs, cgroupPath);
  try {
    const gen = await plane.apply(AGENT_RULE_SET);
    console.log(`applied ${gen}`);
    for await (const _ of Deno.stdin.readable) {
      // Wait for the test to close stdin: until then this process holds the plane open.
    }
  } finally {
    plane.close();
  }
}

function adopt(bpffs: string, cgroupPath: string): void {
  using plane = open(bpffs, cgroupPath);
  const gen = plane.config().activeGen;
  if (!plane.activeGenInfo().enforce) throw new Error(`Generation ${gen} is not in enforce mode`);
  const entries = ruleSetEntries(AGENT_RULE_SET);
  const expected = entries.net_rules.count + entries.net_exact.count;
  const info = plane.activeGenInfo();
  const live = info.netRulesEntries + info.netExactEntries;
  if (expected === 0 || live !== expected) {
    throw new Error(`Generation ${gen} does not hold the agent's egress rules: ${live} entries`);
  }
  console.log(`adopted ${gen}`);
}

if (import.meta.main) {
  const [command, bpffs = "", cgroupPath = ""] = Deno.args;
  try {
    if (command === "apply") await apply(bpffs, cgroupPath);
    else if (command === "adopt") adopt(bpffs, cgroupPath);
    else throw new Error(`Unknown command: ${command}`);
  } catch (error) {
    console.error(error);
    Deno.exit(1);
  }
}
