/**
 * Routing headers and source routes (issue 17, item 1): a socket call names an allowed address A while the
 * route it set sends the packet to a denied host D first. The setsockopt hook (cgroup/setsockopt) refuses
 * setting the route while egress rules exist; the packet backstop (cgroup_skb/egress) judges every hop of
 * a TCP or UDP packet that carries one (the ancillary-data forms, which no socket hook sees). Proven on a
 * veth pair: D and A live in the server namespace, and a capture on its receiving device says whether a
 * packet to D arrived.
 */
import assert from "node:assert/strict";
import { EVENT, HOOK, MODE, type RawEvent } from "../../ffi/mod.ts";
import type { RuleInfo } from "../../lib/policy/plan.ts";
import { parseCidr } from "../../lib/policy/cidr.ts";
import { VethPair } from "../support/netns.ts";
import { drain, type PlaneFixture, ruleSet, withPlane } from "../support/plane.ts";
import { must, rootTest } from "../support/privileged.ts";
import { buildRouteWorker, type RouteCase, type RouteOutcome, RouteWorker } from "../support/route_worker.ts";
import { ipv4Rule } from "../support/slice.ts";

const NOBODY = 65534;
const EPERM = 1;
const RULES: RuleInfo[] = [
  { id: "default", area: "ingress", action: "deny" },
  { id: "deny-d", area: "egress", action: "deny" },
  { id: "deny-d6", area: "egress", action: "deny" },
  { id: "network.egress.sourceRoutes", area: "egress", action: "deny" },
];
const DENY_D = 1;
const DENY_D6 = 2;
const ROUTE_GUARD = 3;

type Hosts = { d: string; d6: string; a: string; a6: string };
type Fixture = PlaneFixture & { hosts: Hosts; send: (c: RouteCase) => Promise<RouteOutcome> };

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
        await fn({ ...fixture, hosts, send: (c) => worker.send(c) });
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

/** D denied (IPv4 and IPv6), with or without the route guard's entry. */
function applyRules(fixture: Fixture, mode: "enforce" | "audit", guard: boolean): void {
  const { d, d6 } = fixture.hosts;
  fixture.plane.apply(ruleSet({
    mode,
    rules: RULES,
    egress: [ipv4Rule(`${d}/32`, DENY_D), ipv4Rule(`${d6}/128`, DENY_D6)],
    ...guard && { routeGuard: { ruleId: ROUTE_GUARD } },
  }));
}

type Bypass = { name: string; make: (hosts: Hosts, port: number) => RouteCase; flag: number };

const BYPASSES: Bypass[] = [
  {
    name: "an IPv6 segment routing header set as uid 65534 (UDP)",
    make: ({ a6, d6 }, port) => ({
      how: "sockopt",
      kind: "srh",
      protocol: "udp",
      dest: a6,
      port,
      hops: [d6],
      uid: NOBODY,
    }),
    flag: EVENT.RTHDR,
  },
  {
    name: "an IPv6 segment routing header set as uid 65534 (TCP)",
    make: ({ a6, d6 }, port) => ({
      how: "sockopt",
      kind: "srh",
      protocol: "tcp",
      dest: a6,
      port,
      hops: [d6],
      uid: NOBODY,
    }),
    flag: EVENT.RTHDR,
  },
  {
    name: "an IPv4 LSRR option set with CAP_NET_RAW (UDP)",
    make: ({ a, d }, port) => ({
      how: "sockopt",
      kind: "lsrr",
      protocol: "udp",
      dest: a,
      port,
      hops: [d],
      uid: 0,
    }),
    flag: EVENT.SRCROUTE,
  },
  {
    name: "an IPv4 SSRR option set with CAP_NET_RAW (TCP)",
    make: ({ a, d }, port) => ({
      how: "sockopt",
      kind: "ssrr",
      protocol: "tcp",
      dest: a,
      port,
      hops: [d],
      uid: 0,
    }),
    flag: EVENT.SRCROUTE,
  },
  {
    name: "an IPv6 routing header in sendmsg's ancillary data as uid 65534",
    make: ({ a6, d6 }, port) => ({
      how: "cmsg",
      kind: "rthdr2",
      protocol: "udp",
      dest: a6,
      port,
      hops: [d6],
      uid: NOBODY,
    }),
    flag: EVENT.RTHDR,
  },
  {
    name: "an IPv4 LSRR option in sendmsg's ancillary data (IP_RETOPTS)",
    make: ({ a, d }, port) => ({
      how: "cmsg",
      kind: "lsrr",
      protocol: "udp",
      dest: a,
      port,
      hops: [d],
      uid: 0,
    }),
    flag: EVENT.SRCROUTE,
  },
];

/** The denied host a case's route names, as the event reports it. */
function deniedHop(c: RouteCase, hosts: Hosts): Uint8Array {
  const v6 = c.dest.includes(":");
  const bytes = new Uint8Array(16);
  bytes.set(parseCidr(v6 ? hosts.d6 : hosts.d).addr);
  return bytes;
}

function eventsOf(events: RawEvent[], hook: number, pid: number): RawEvent[] {
  return events.filter((event) => event.hook === hook && event.pid === pid);
}

/**
 * Whether this kernel takes an IPv6 routing header as ancillary data at all: only type 2, and only with
 * CONFIG_IPV6_MIP6 (the host's kernel has it off, Debian's has it on); without it sendmsg fails with EINVAL.
 */
const MIP6 = await (async () => {
  const config = await new Deno.Command("sh", {
    args: ["-c", "zcat /proc/config.gz 2>/dev/null"],
    stdout: "piped",
  })
    .output();
  const text = new TextDecoder().decode(config.stdout);
  return text === "" || !text.includes("# CONFIG_IPV6_MIP6 is not set");
})();
const EINVAL = 22;

/** A case this kernel refuses by itself (see MIP6): it must fail with EINVAL and send nothing. */
function refusedByKernel(c: RouteCase): boolean {
  return c.kind === "rthdr2" && !MIP6;
}

function assertRefusedByKernel(outcome: RouteOutcome, name: string): void {
  assert.deepEqual([outcome.sendErrno, outcome.onWire], [EINVAL, false], `${name}: the kernel refuses it`);
}

rootTest(
  "[root] route: source-routed packets reach the first hop when no rule exists (the worker's proofs work)",
  async () => {
    await withRoutes(async (fixture) => {
      let port = 7100;
      for (const { name, make } of BYPASSES) {
        const c = make(fixture.hosts, port++);
        const outcome = await fixture.send(c);
        if (refusedByKernel(c)) assertRefusedByKernel(outcome, name);
        else assert.deepEqual([outcome.optErrno, outcome.sendErrno, outcome.onWire], [0, 0, true], name);
      }
    });
  },
);

/** Checks the net.packet events of a packet the backstop judged by its route's hop D. */
function assertPacketEvents(events: RawEvent[], c: RouteCase, hosts: Hosts, flag: number, decision: number) {
  const v6 = c.dest.includes(":");
  assert.ok(events.length >= 1, `${JSON.stringify(c)}: a net.packet event`);
  for (const event of events) {
    assert.deepEqual(
      [event.ruleId, event.decision, event.flags, event.protocol, event.dport],
      [v6 ? DENY_D6 : DENY_D, decision, flag, c.protocol === "tcp" ? 6 : 17, c.port],
      JSON.stringify(c),
    );
    assert.deepEqual(event.daddr, deniedHop(c, hosts), `${JSON.stringify(c)}: the event names D`);
  }
}

rootTest(
  "[root] route: setting a route is refused in enforce while egress rules exist, and nothing reaches D",
  async () => {
    await withRoutes(async (fixture) => {
      applyRules(fixture, "enforce", true);
      let port = 7200;
      for (const { name, make, flag } of BYPASSES) {
        const c = make(fixture.hosts, port++);
        const outcome = await fixture.send(c);
        if (refusedByKernel(c)) {
          assertRefusedByKernel(outcome, name);
          continue;
        }
        assert.equal(outcome.onWire, false, `${name}: nothing reaches D (${JSON.stringify(outcome)})`);
        const events = drain(fixture.plane);
        if (c.how === "cmsg") {
          assert.equal(outcome.sendErrno, EPERM, `${name}: sendmsg refused (${JSON.stringify(outcome)})`);
          assertPacketEvents(eventsOf(events, HOOK.PACKET, outcome.pid), c, fixture.hosts, flag, 0);
          continue;
        }
        assert.deepEqual([outcome.optErrno, outcome.sendErrno], [EPERM, 0], `${name}: setsockopt refused`);
        const routes = eventsOf(events, HOOK.ROUTE, outcome.pid);
        assert.deepEqual(
          routes.map((e) => [e.ruleId, e.decision, e.mode, e.flags, e.uid, e.family]),
          [[ROUTE_GUARD, 0, MODE.ENFORCE, flag, c.uid, c.dest.includes(":") ? 6 : 4]],
          `${name}: one net.route event`,
        );
        assert.deepEqual(routes[0]?.daddr, deniedHop(c, fixture.hosts), `${name}: it names the first hop`);
      }
      // Clearing a route stays allowed, and other options are untouched (one longer than a page too).
      for (const dest of [fixture.hosts.a, fixture.hosts.a6]) {
        const kind = dest.includes(":") ? "srh" : "lsrr";
        const c: RouteCase = { how: "clear", kind, protocol: "udp", dest, port: 7298, hops: [dest], uid: 0 };
        const clear = await fixture.send(c);
        assert.deepEqual(
          [clear.optErrno, clear.sendErrno, clear.onWire],
          [0, 0, true],
          `${dest}: other options`,
        );
        assert.equal(eventsOf(drain(fixture.plane), HOOK.ROUTE, clear.pid).length, 0, "nothing is reported");
      }
    });
  },
);

rootTest(
  "[root] route: the packet backstop drops TCP and UDP packets whose route names a denied hop (enforce)",
  async () => {
    await withRoutes(async (fixture) => {
      // Without the setsockopt guard's entry: a route set before the policy came, or one it cannot see.
      applyRules(fixture, "enforce", false);
      let port = 7400;
      for (const { name, make, flag } of BYPASSES) {
        const c = make(fixture.hosts, port++);
        const outcome = await fixture.send(c);
        if (refusedByKernel(c)) {
          assertRefusedByKernel(outcome, name);
          continue;
        }
        // A dropped SYN does not fail a non-blocking connect; a dropped datagram fails its send.
        const sendErrno = c.protocol === "tcp" ? 0 : EPERM;
        assert.deepEqual([outcome.optErrno, outcome.sendErrno, outcome.onWire], [0, sendErrno, false], name);
        const events = drain(fixture.plane);
        assert.equal(eventsOf(events, HOOK.ROUTE, outcome.pid).length, 0, `${name}: no setsockopt guard`);
        assertPacketEvents(eventsOf(events, HOOK.PACKET, outcome.pid), c, fixture.hosts, flag, 0);
      }
      // A denied hop in the middle of the route: the header goes to A, the option lists D, then A.
      const { a, d } = fixture.hosts;
      const c: RouteCase = {
        how: "cmsg",
        kind: "lsrr",
        protocol: "udp",
        dest: a,
        port: 7499,
        hops: [a, d],
        uid: 0,
      };
      const middle = await fixture.send(c);
      assert.deepEqual(
        [middle.sendErrno, middle.onWire],
        [EPERM, false],
        "a denied hop after an allowed one",
      );
      assertPacketEvents(
        eventsOf(drain(fixture.plane), HOOK.PACKET, middle.pid),
        c,
        fixture.hosts,
        EVENT.SRCROUTE,
        0,
      );
    });
  },
);

rootTest("[root] route: routes to a denied host are delivered and reported in audit", async () => {
  await withRoutes(async (fixture) => {
    applyRules(fixture, "audit", true);
    let port = 7300;
    for (const { name, make, flag } of BYPASSES) {
      const c = make(fixture.hosts, port++);
      const outcome = await fixture.send(c);
      if (refusedByKernel(c)) {
        assertRefusedByKernel(outcome, name);
        continue;
      }
      assert.deepEqual(
        [outcome.optErrno, outcome.sendErrno, outcome.onWire],
        [0, 0, true],
        `${name}: delivered`,
      );
      const events = drain(fixture.plane);
      if (c.how === "sockopt") {
        assert.deepEqual(
          eventsOf(events, HOOK.ROUTE, outcome.pid).map((e) => [e.ruleId, e.decision, e.mode, e.flags]),
          [[ROUTE_GUARD, 1, MODE.AUDIT, flag]],
          `${name}: one would-deny net.route event`,
        );
      }
      assertPacketEvents(eventsOf(events, HOOK.PACKET, outcome.pid), c, fixture.hosts, flag, 1);
    }
  });
});
