import type { RawEvent } from "../../ffi/mod.ts";
import { DataPlane, type DataPlaneOptions } from "../../lib/kernel/dataplane.ts";
import type { ResolvedRuleSet } from "../../lib/kernel/entries.ts";
import { resolvePlan } from "../../lib/kernel/resolve.ts";
import { emptyPlan, type RuleSetPlan } from "../../lib/policy/plan.ts";
import { TestBpffs } from "./bpffs.ts";
import { TestCgroup } from "./cgroup.ts";

/** A DataPlane on a test cgroup and bpffs, and a TCP listener on every loopback address. */
export type PlaneFixture = {
  plane: DataPlane;
  cgroup: TestCgroup;
  bpffs: TestBpffs;
  server: { port: number };
};

/**
 * Runs `fn` with a DataPlane whose socket programs attach to a fresh test cgroup and whose pins live on
 * a private bpffs, and a listener to connect to; detaches, unmounts and removes everything afterwards.
 */
export async function withPlane(
  options: Omit<DataPlaneOptions, "bpffs" | "cgroupPath">,
  fn: (fixture: PlaneFixture) => Promise<void> | void,
): Promise<void> {
  const cgroup = TestCgroup.create();
  const bpffs = await TestBpffs.mount();
  const server = listen();
  try {
    const plane = DataPlane.open({ ...options, bpffs: bpffs.path, cgroupPath: cgroup.path });
    try {
      await fn({ plane, cgroup, bpffs, server });
    } finally {
      plane.close();
      DataPlane.detach(bpffs.path);
    }
  } finally {
    await server.stop();
    await bpffs.unmount();
    cgroup.remove();
  }
}

/** A plan from the empty plan plus `parts`, resolved on this host. */
export function ruleSet(parts: Partial<RuleSetPlan>): ResolvedRuleSet {
  return resolvePlan({ ...emptyPlan(), ...parts });
}

/** A TCP listener on every address (IPv4 and IPv6), accepting and closing until stopped. */
export function listen(): { port: number; stop: () => Promise<void> } {
  const listener = Deno.listen({ hostname: "::", port: 0 });
  const loop = (async () => {
    try {
      for await (const connection of listener) connection.close();
    } catch {
      // closed by stop()
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    stop: async () => {
      listener.close();
      await loop;
    },
  };
}

/** Every event the plane's ring buffer holds now, decoded. */
export function drain(plane: DataPlane): RawEvent[] {
  const events: RawEvent[] = [];
  using stream = plane.events((event) => events.push(event));
  stream.poll();
  return events;
}
