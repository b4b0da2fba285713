/**
 * Routing headers and source routes (issue 17, item 1): a socket call names an allowed address A while the
 * route it set sends the packet to a denied host D first. The setsockopt hook (cgroup/setsockopt) refuses
 * setting the route while egress rules exist; the packet backstop (cgroup_skb/egress) judges every hop of
 * a TCP or UDP packet that carries one (the ancillary-data forms, which no socket hook sees). Proven on a
 * veth pair: D and A live in the server namespace, and a capture on its receiving device says whether a
 * packet to D arrived. The cases are in tests/support/route_scenarios.ts.
 */
import assert from "node:assert/strict";
import { VethPair } from "../support/netns.ts";
import { withPlane } from "../support/plane.ts";
import { must, rootTest } from "../support/privileged.ts";
import { buildRouteWorker, RouteWorker } from "../support/route_worker.ts";
import {
  deliveredWithoutRules,
  droppedByBackstop,
  type Hosts,
  refusedByGuard,
  reportedInAudit,
  type RouteFixture,
} from "../support/route_scenarios.ts";

type Fixture = Omit<RouteFixture, "port">;

/** A plane on a test cgroup, a veth pair whose server holds D (its own address) and A, and the worker. */
async function withRoutes(fn: (fixture: Fixture) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "aegisbpf-route-" });
  const pair = await VethPair.create();
  try {
    const hosts: Hosts = {
      d: pair.serverAddress,
      d6: pair.serverAddress6,
      a: pair.serverAddress.replace(/^198\.18\./, "198.19."),
      a6: pair.serverAddress6.replace(/::2$/, "::3"),
    };
    await must("ip", ["-n", pair.server, "addr", "add", `${hosts.a}/32`, "dev", "lo"]);
    await must("ip", ["-n", pair.client, "route", "add", `${hosts.a}/32`, "via", hosts.d]);
    await must("ip", [
      "-n",
      pair.server,
      "addr",
      "add",
      `${hosts.a6}/64`,
      "dev",
      pair.serverInterface,
      "nodad",
    ]);
    const binary = await buildRouteWorker(dir);
    await withPlane({ areas: ["egress"] }, async (fixture) => {
      const worker = await RouteWorker.start(binary, {
        cgroupPath: fixture.cgroup.path,
        senderNs: pair.nsPath(pair.client),
        receiverNs: pair.nsPath(pair.server),
        device: pair.serverInterface,
      });
      try {
        await fn({ plane: fixture.plane, hosts, send: (c) => worker.send(c) });
      } finally {
        const stderr = await worker.close();
        assert.equal(stderr.trim(), "", "the worker reports no failure");
      }
    });
  } finally {
    await pair.remove();
    await Deno.remove(dir, { recursive: true });
  }
}

const SCENARIOS = [
  [
    "source-routed packets reach the first hop when no rule exists (the worker's proofs work)",
    deliveredWithoutRules,
  ],
  ["setting a route is refused in enforce while egress rules exist, and nothing reaches D", refusedByGuard],
  [
    "the packet backstop drops TCP and UDP packets whose route names a denied hop (enforce)",
    droppedByBackstop,
  ],
  ["routes to a denied host are delivered and reported in audit", reportedInAudit],
] as const;

for (const [index, [name, scenario]] of SCENARIOS.entries()) {
  rootTest(`[root] route: ${name}`, async () => {
    await withRoutes((fixture) => scenario({ ...fixture, port: 7100 + 100 * index }));
  });
}
