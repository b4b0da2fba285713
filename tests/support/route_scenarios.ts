/**
 * The cases of the routing header and source route tests (tests/host/route_test.ts on a veth pair,
 * tests/vm/inside/route_vm_test.ts on the guest's loopback): a socket call names an allowed address A while
 * the route sends the packet to a denied host D first. Each scenario drives a route worker against a plane
 * and checks what reached D's wire, the errnos and the events.
 */
import assert from "node:assert/strict";
import { EVENT, HOOK, MODE, type RawEvent } from "../../ffi/mod.ts";
import type { DataPlane } from "../../lib/kernel/dataplane.ts";
import { resolvePlan } from "../../lib/kernel/resolve.ts";
import { parseCidr } from "../../lib/policy/cidr.ts";
import { emptyPlan, type RuleInfo } from "../../lib/policy/plan.ts";
import { drain } from "./plane.ts";
import type { RouteCase, RouteOutcome } from "./route_worker.ts";
import { ipv4Rule } from "./slice.ts";

const NOBODY = 65534;
const EPERM = 1;
const EINVAL = 22;
const RULES: RuleInfo[] = [
  { id: "default", area: "ingress", action: "deny" },
  { id: "deny-d", area: "egress", action: "deny" },
  { id: "deny-d6", area: "egress", action: "deny" },
  { id: "network.egress.sourceRoutes", area: "egress", action: "deny" },
];
const DENY_D = 1;
const DENY_D6 = 2;
const ROUTE_GUARD = 3;

/** D (denied) and A (allowed), IPv4 and IPv6, as the sender reaches them. */
export type Hosts = { d: string; d6: string; a: string; a6: string };
export type RouteFixture = {
  plane: DataPlane;
  hosts: Hosts;
  send: (c: RouteCase) => Promise<RouteOutcome>;
  /** First port of this scenario's cases: each case has a port of its own, so the capture never mixes them. */
  port: number;
};

/** D denied (IPv4 and IPv6), with or without the route guard's entry (which compile adds with egress rules). */
async function applyRules(f: RouteFixture, mode: "enforce" | "audit", guard: boolean): Promise<void> {
  await f.plane.apply(resolvePlan({
    ...emptyPlan(),
    mode,
    rules: RULES,
    egress: [ipv4Rule(`${f.hosts.d}/32`, DENY_D), ipv4Rule(`${f.hosts.d6}/128`, DENY_D6)],
    ...guard && { routeGuard: { ruleId: ROUTE_GUARD } },
  }));
  drain(f.plane);
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

/**
 * Whether this kernel takes an IPv6 routing header as ancillary data at all: only type 2, and only with
 * CONFIG_IPV6_MIP6 (off in the host's kernel, a module in Debian's); without it sendmsg fails with EINVAL.
 */
const MIP6 = await (async () => {
  const output = await new Deno.Command("sh", {
    args: ["-c", "zcat /proc/config.gz 2>/dev/null"],
    stdout: "piped",
  }).output();
  return !new TextDecoder().decode(output.stdout).includes("# CONFIG_IPV6_MIP6 is not set");
})();

/** A case this kernel refuses by itself (see MIP6): it must fail with EINVAL and send nothing. */
function refusedByKernel(c: RouteCase, outcome: RouteOutcome, name: string): boolean {
  if (c.kind !== "rthdr2" || MIP6) return false;
  assert.deepEqual([outcome.sendErrno, outcome.onWire], [EINVAL, false], `${name}: the kernel refuses it`);
  return true;
}

/** The denied host a case's route names, as the events report it. */
function deniedHop(c: RouteCase, hosts: Hosts): Uint8Array {
  const bytes = new Uint8Array(16);
  bytes.set(parseCidr(c.dest.includes(":") ? hosts.d6 : hosts.d).addr);
  return bytes;
}

function eventsOf(events: RawEvent[], hook: number, pid: number): RawEvent[] {
  return events.filter((event) => event.hook === hook && event.pid === pid);
}

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

/** Without rules every route reaches its first hop D: the worker's proofs work. */
export async function deliveredWithoutRules(f: RouteFixture): Promise<void> {
  let port = f.port;
  for (const { name, make } of BYPASSES) {
    const c = make(f.hosts, port++);
    const outcome = await f.send(c);
    if (refusedByKernel(c, outcome, name)) continue;
    assert.deepEqual([outcome.optErrno, outcome.sendErrno, outcome.onWire], [0, 0, true], name);
  }
}

/**
 * Enforce with egress rules: setting a route fails with EPERM (one net.route event naming the first hop),
 * a route in ancillary data is dropped by the backstop (EPERM, net.packet), nothing reaches D; clearing a
 * route and every other option still work (one longer than a page too).
 */
export async function refusedByGuard(f: RouteFixture): Promise<void> {
  await applyRules(f, "enforce", true);
  let port = f.port;
  for (const { name, make, flag } of BYPASSES) {
    const c = make(f.hosts, port++);
    const outcome = await f.send(c);
    if (refusedByKernel(c, outcome, name)) continue;
    assert.equal(outcome.onWire, false, `${name}: nothing reaches D (${JSON.stringify(outcome)})`);
    const events = drain(f.plane);
    if (c.how === "cmsg") {
      assert.equal(outcome.sendErrno, EPERM, `${name}: sendmsg refused (${JSON.stringify(outcome)})`);
      assertPacketEvents(eventsOf(events, HOOK.PACKET, outcome.pid), c, f.hosts, flag, 0);
      continue;
    }
    assert.deepEqual([outcome.optErrno, outcome.sendErrno], [EPERM, 0], `${name}: setsockopt refused`);
    const routes = eventsOf(events, HOOK.ROUTE, outcome.pid);
    assert.deepEqual(
      routes.map((e) => [e.ruleId, e.decision, e.mode, e.flags, e.uid, e.family]),
      [[ROUTE_GUARD, 0, MODE.ENFORCE, flag, c.uid, c.dest.includes(":") ? 6 : 4]],
      `${name}: one net.route event`,
    );
    assert.deepEqual(routes[0]?.daddr, deniedHop(c, f.hosts), `${name}: it names the first hop`);
  }
  for (const dest of [f.hosts.a, f.hosts.a6]) {
    const kind = dest.includes(":") ? "srh" : "lsrr";
    const c: RouteCase = { how: "clear", kind, protocol: "udp", dest, port: port++, hops: [dest], uid: 0 };
    const clear = await f.send(c);
    assert.deepEqual([clear.optErrno, clear.sendErrno, clear.onWire], [0, 0, true], `${dest}: other options`);
    assert.equal(eventsOf(drain(f.plane), HOOK.ROUTE, clear.pid).length, 0, "nothing is reported");
  }
}

/**
 * Enforce without the guard's entry (a route set before the policy came): the backstop drops each TCP and
 * UDP packet whose route names D, wherever D stands in it.
 */
export async function droppedByBackstop(f: RouteFixture): Promise<void> {
  await applyRules(f, "enforce", false);
  let port = f.port;
  for (const { name, make, flag } of BYPASSES) {
    const c = make(f.hosts, port++);
    const outcome = await f.send(c);
    if (refusedByKernel(c, outcome, name)) continue;
    // A dropped SYN does not fail a non-blocking connect; a dropped datagram fails its send.
    const sendErrno = c.protocol === "tcp" ? 0 : EPERM;
    assert.deepEqual([outcome.optErrno, outcome.sendErrno, outcome.onWire], [0, sendErrno, false], name);
    const events = drain(f.plane);
    assert.equal(eventsOf(events, HOOK.ROUTE, outcome.pid).length, 0, `${name}: no setsockopt guard`);
    assertPacketEvents(eventsOf(events, HOOK.PACKET, outcome.pid), c, f.hosts, flag, 0);
  }
  // A denied hop in the middle of the route: the header goes to A, the option lists D, then A.
  const { a, d } = f.hosts;
  const c: RouteCase = { how: "cmsg", kind: "lsrr", protocol: "udp", dest: a, port, hops: [a, d], uid: 0 };
  const middle = await f.send(c);
  assert.deepEqual([middle.sendErrno, middle.onWire], [EPERM, false], "a denied hop after an allowed one");
  assertPacketEvents(eventsOf(drain(f.plane), HOOK.PACKET, middle.pid), c, f.hosts, EVENT.SRCROUTE, 0);
}

/** Audit: every route is delivered to D, and reported (net.route for the setsockopt, net.packet for the packet). */
export async function reportedInAudit(f: RouteFixture): Promise<void> {
  await applyRules(f, "audit", true);
  let port = f.port;
  for (const { name, make, flag } of BYPASSES) {
    const c = make(f.hosts, port++);
    const outcome = await f.send(c);
    if (refusedByKernel(c, outcome, name)) continue;
    assert.deepEqual(
      [outcome.optErrno, outcome.sendErrno, outcome.onWire],
      [0, 0, true],
      `${name}: delivered`,
    );
    const events = drain(f.plane);
    if (c.how === "sockopt") {
      assert.deepEqual(
        eventsOf(events, HOOK.ROUTE, outcome.pid).map((e) => [e.ruleId, e.decision, e.mode, e.flags]),
        [[ROUTE_GUARD, 1, MODE.AUDIT, flag]],
        `${name}: one would-deny net.route event`,
      );
    }
    assertPacketEvents(eventsOf(events, HOOK.PACKET, outcome.pid), c, f.hosts, flag, 1);
  }
}
