import assert from "node:assert/strict";
import {
  AEGIS_GEN_INFO,
  bootTimeNs,
  encodeU32,
  ifIndex,
  inNetns,
  interfaceDriver,
  STAT_LIMITS,
} from "../../ffi/mod.ts";
import { DataPlane } from "../../lib/kernel/dataplane.ts";
import type { XdpMode } from "../../lib/kernel/xdp_mode.ts";
import { formatAddress } from "../../lib/kernel/events.ts";
import { pinnedRuleHits, pinnedXdpStats } from "../../lib/kernel/inspect.ts";
import type { IngressInterface, NetRule, RuleInfo, RuleSetPlan } from "../../lib/policy/plan.ts";
import { VethPair } from "../support/netns.ts";
import { drain, type PlaneFixture, ruleSet, withPlane } from "../support/plane.ts";
import { must, rootTest, run } from "../support/privileged.ts";
import { ipv4Rule } from "../support/slice.ts";

const FAILSAFE_PORT = 22;
/** Shares the failsafe port's low five bits, so its gen_info bit is set: the XDP program looks it up. */
const FAILSAFE_TWIN_PORT = 54;
const SERVICE_PORT = 8080;
const OTHER_PORT = 8081;

/** Kernel rule ids index this table; id 0 is what an interface's default drop reports. */
const RULES: RuleInfo[] = [
  { id: "default", area: "ingress", action: "deny" },
  { id: "deny-client", area: "ingress", action: "deny" },
  { id: "failsafe-ssh", area: "ingress", action: "allow" },
  { id: "allow-client-service", area: "ingress", action: "allow" },
  { id: "deny-client6", area: "ingress", action: "deny" },
];
const [DEFAULT_RULE, DENY_CLIENT, FAILSAFE, ALLOW_SERVICE, DENY_CLIENT6] = [0, 1, 2, 3, 4];

const HOOK_INGRESS = 5;
const DECISION_DENY = 0;
const DECISION_AUDIT = 1;
const ICMP = 1;
const TCP = 6;
const ICMPV6 = 58;

type IngressFixture = PlaneFixture & {
  pair: VethPair;
  /** The server interface's index, in the server namespace. */
  ifindex: number;
  /** Applies a rule set with `RULES`, resolving and attaching in the server namespace. */
  apply: (parts: Partial<RuleSetPlan>) => Promise<number>;
  /** Runs `fn` with this thread in the server namespace (interface names resolve there). */
  inServer: <T>(fn: () => T) => T;
};

/**
 * A veth pair with echo servers on the server side, and a DataPlane serving only ingress. The XDP
 * program goes on the server end, which only the server namespace can name: resolvePlan looks the
 * interface up, and apply attaches XDP before its first await, so both run with the thread there.
 */
async function withIngress(
  fn: (fixture: IngressFixture) => Promise<void>,
  xdpMode: XdpMode = "native",
): Promise<void> {
  const pair = await VethPair.create();
  try {
    const echo = await pair.serve([FAILSAFE_PORT, SERVICE_PORT, OTHER_PORT]);
    try {
      await withPlane({ areas: ["ingress"], xdpMode }, async (fixture) => {
        const inServer = <T>(run: () => T): T => inNetns(pair.nsPath(pair.server), run);
        await fn({
          ...fixture,
          pair,
          ifindex: inServer(() => ifIndex(pair.serverInterface)),
          apply: (parts) => inServer(() => fixture.plane.apply(ruleSet({ rules: RULES, ...parts }))),
          inServer,
        });
      });
    } finally {
      await echo.stop();
    }
  } finally {
    await pair.remove();
  }
}

/** Enforce, on the server interface (default pass), one rule denying the client's address. */
function denyClient(pair: VethPair): Partial<RuleSetPlan> {
  return {
    mode: "enforce",
    ingress: {
      interfaces: [serverInterface(pair, false)],
      failsafe: [],
      rules: [ipv4Rule(`${pair.clientAddress}/32`, DENY_CLIENT)],
    },
  };
}

function serverInterface(pair: VethPair, defaultDrop: boolean): IngressInterface {
  return { name: pair.serverInterface, defaultDrop, ruleId: DEFAULT_RULE };
}

function ipv4Bytes(address: string): Uint8Array {
  return new Uint8Array(address.split(".").map(Number));
}

/** Bytes of an IPv6 address in text form (with or without "::"). */
function ipv6Bytes(address: string): Uint8Array<ArrayBuffer> {
  const groups = (part: string | undefined) =>
    part ? part.split(":").map((group) => parseInt(group, 16)) : [];
  const [head, tail] = address.split("::");
  const [front, back] = [groups(head), groups(tail)];
  const all = [...front, ...new Array<number>(8 - front.length - back.length).fill(0), ...back];
  return new Uint8Array(all.flatMap((group) => [group >> 8, group & 0xff]));
}

function ipv6Rule(address: string, ruleId: number): NetRule {
  return { ruleId, action: "deny", family: 6, addr: ipv6Bytes(address), prefixLength: 128 };
}

rootTest(
  "[root] ingress: a denied source CIDR is dropped and reported in enforce, let through and audited in audit",
  async () => {
    await withIngress(async ({ plane, pair, ifindex, apply }) => {
      assert.equal(await pair.pingServer(), true, "ping must work before any rule");
      const ingress = (mode: "enforce" | "audit") => ({
        mode,
        ingress: {
          interfaces: [serverInterface(pair, false)],
          failsafe: [],
          rules: [ipv4Rule(`${pair.clientAddress}/30`, DENY_CLIENT)],
        },
      });

      await apply(ingress("enforce"));
      assert.equal(await pair.pingServer(), false, "ping from the denied CIDR is dropped");
      assert.equal(await pair.reach("tcp", pair.serverAddress, SERVICE_PORT), "timeout");
      const denied = plane.counters().decisions.ingress.deny;
      assert.ok(denied >= 2n, `ping and SYN counted as deny, got ${denied}`);
      const events = drain(plane);
      assert.ok(events.length >= 2, `an event per dropped packet, got ${events.length}`);
      for (const event of events) {
        assert.equal(event.hook, HOOK_INGRESS);
        assert.equal(event.decision, DECISION_DENY);
        assert.equal(event.mode, 1);
        assert.equal(event.ruleId, DENY_CLIENT);
        assert.equal(event.ifindex, ifindex);
        assert.equal(event.family, 4);
        assert.equal(formatAddress(event.saddr, "ipv4"), pair.clientAddress);
        assert.equal(formatAddress(event.daddr, "ipv4"), pair.serverAddress);
      }
      assert.ok(events.some((event) => event.protocol === ICMP), "the echo request is reported");
      assert.ok(
        events.some((event) => event.protocol === TCP && event.dport === SERVICE_PORT),
        "the SYN is reported with its port",
      );

      await apply(ingress("audit"));
      assert.equal(await pair.pingServer(), true, "audit lets the ping through");
      assert.equal(await pair.reach("tcp", pair.serverAddress, SERVICE_PORT), "answered");
      const audited = drain(plane);
      assert.ok(audited.length >= 2, `would-deny events reported, got ${audited.length}`);
      assert.ok(audited.every((event) => event.decision === DECISION_AUDIT && event.mode === 0));
      assert.ok(audited.every((event) => event.ruleId === DENY_CLIENT && event.ifindex === ifindex));
      const counters = plane.counters().decisions.ingress;
      assert.ok(counters.audit >= 2n, `ping and TCP counted as audit, got ${counters.audit}`);
      assert.equal(counters.deny, denied, "nothing more is denied in audit");
    });
  },
);

rootTest(
  "[root] ingress: default drop drops unmatched traffic but never a failsafe port; an allow rule opens its port",
  async () => {
    await withIngress(async ({ plane, pair, ifindex, apply }) => {
      const failsafe = [{ ruleId: FAILSAFE, port: FAILSAFE_PORT, protocol: "tcp" as const }];
      const interfaces = [serverInterface(pair, true)];
      await apply({ mode: "enforce", ingress: { interfaces, failsafe, rules: [] } });
      assert.equal(await pair.pingServer(), false, "unmatched ping is dropped");
      assert.equal(await pair.reach("tcp", pair.serverAddress, SERVICE_PORT), "timeout");
      assert.equal(await pair.reach("tcp", pair.serverAddress, FAILSAFE_PORT), "answered", "failsafe port");
      assert.equal(
        await pair.reach("tcp", pair.serverAddress6, FAILSAFE_PORT),
        "answered",
        "failsafe port over IPv6: neighbour discovery must pass as ARP does",
      );
      assert.equal(
        await pair.reach("udp", pair.serverAddress, FAILSAFE_PORT),
        "timeout",
        "the failsafe names a protocol: UDP to the same port is dropped",
      );
      const events = drain(plane);
      assert.ok(events.length >= 3, `default drops reported, got ${events.length}`);
      assert.ok(!events.some((event) => event.protocol === ICMPV6), "no neighbour discovery was dropped");
      assert.ok(events.every((event) => event.ruleId === DEFAULT_RULE && event.decision === DECISION_DENY));
      assert.ok(events.every((event) => event.ifindex === ifindex));
      assert.ok(!events.some((event) => event.dport === FAILSAFE_PORT && event.protocol === TCP));

      const allow = ipv4Rule(`${pair.clientAddress}/32`, ALLOW_SERVICE, {
        action: "allow",
        port: SERVICE_PORT,
        protocol: "tcp",
      });
      await apply({ mode: "enforce", ingress: { interfaces, failsafe, rules: [allow] } });
      assert.equal(await pair.reach("tcp", pair.serverAddress, SERVICE_PORT), "answered", "allowed port");
      assert.equal(await pair.reach("tcp", pair.serverAddress, OTHER_PORT), "timeout", "other ports");
      assert.equal(await pair.pingServer(), false, "the allow rule names a port: ping stays dropped");
      assert.equal(await pair.reach("tcp", pair.serverAddress, FAILSAFE_PORT), "answered");

      // A deny rule naming the source does not close the failsafe port either (the XDP program asks for
      // the failsafe only of packets it is about to refuse, after the rules).
      const deny = ipv4Rule(`${pair.clientAddress}/32`, DENY_CLIENT);
      await apply({
        mode: "enforce",
        ingress: { interfaces: [serverInterface(pair, false)], failsafe, rules: [deny] },
      });
      drain(plane);
      assert.equal(await pair.reach("tcp", pair.serverAddress, SERVICE_PORT), "timeout", "the denied source");
      assert.equal(
        await pair.reach("tcp", pair.serverAddress, FAILSAFE_TWIN_PORT),
        "timeout",
        "a port that shares the failsafe port's bit is looked up, and refused",
      );
      assert.equal(
        await pair.reach("tcp", pair.serverAddress, FAILSAFE_PORT),
        "answered",
        "failsafe over a deny",
      );
      assert.ok(!drain(plane).some((event) => event.dport === FAILSAFE_PORT), "no failsafe packet reported");
    });
  },
);

rootTest(
  "[root] ingress: a generation whose gen_info has no failsafe word (an older release's) looks every port up",
  async () => {
    await withIngress(async ({ plane, pair, apply }) => {
      const failsafe = [{ ruleId: FAILSAFE, port: FAILSAFE_PORT, protocol: "tcp" as const }];
      const deny = ipv4Rule(`${pair.clientAddress}/32`, DENY_CLIENT);
      const gen = await apply({
        mode: "enforce",
        ingress: { interfaces: [serverInterface(pair, false)], failsafe, rules: [deny] },
      });
      const info = plane.map("gen_info");
      const value = info.lookup(encodeU32(gen))!;
      new DataView(value.buffer).setUint32(AEGIS_GEN_INFO.fields.failsafe_absent.offset, 0, true);
      info.update(encodeU32(gen), value);
      assert.equal(await pair.reach("tcp", pair.serverAddress, FAILSAFE_PORT), "answered", "failsafe port");
      assert.equal(await pair.reach("tcp", pair.serverAddress, SERVICE_PORT), "timeout", "the denied source");
    });
  },
);

const XDP_DROP = 1;
const RATE_BURST = 8; // AEGIS_RATE_BURST in bpf/aegis.h
const RATE_WINDOW_MS = 2 ** 30 / 1e6;

rootTest(
  "[root] ingress: a flood from a denied source is counted per interface and rule; its events are rate-limited and account for every drop",
  async () => {
    await withIngress(async ({ plane, pair, ifindex, apply, bpffs }) => {
      const gen = await apply(denyClient(pair));
      drain(plane);
      const flood = 300;
      const start = performance.now();
      await run("ip", [
        ...["netns", "exec", pair.client, "ping", "-q", "-n", "-c", String(flood)],
        ...["-i", "0.002", "-W", "0.1", pair.serverAddress],
      ]);
      const windows = Math.ceil((performance.now() - start) / RATE_WINDOW_MS) + 1; // those the flood touched
      assert.equal(plane.counters().decisions.ingress.deny, BigInt(flood), "every echo request counted");
      const drops = pinnedXdpStats(bpffs.path).find((s) => s.ifindex === ifindex && s.action === XDP_DROP);
      assert.equal(drops?.packets, BigInt(flood), "dropped packets of the interface");
      const hits = pinnedRuleHits(bpffs.path, gen).find((hit) => hit.ruleId === DENY_CLIENT);
      assert.equal(hits?.count, BigInt(flood), "hits of the deny rule");

      const admitted = drain(plane);
      assert.ok(admitted.length >= RATE_BURST, `a burst of events, got ${admitted.length}`);
      assert.ok(
        admitted.length <= windows * RATE_BURST && admitted.length < flood,
        `at most a burst in each of ${windows} windows, got ${admitted.length}`,
      );
      // The flood's last window has ended: the flush reports what it suppressed there (what earlier windows
      // suppressed rode on the first event of the next one), so only summaries come now.
      await new Promise((resolve) => setTimeout(resolve, RATE_WINDOW_MS + 50));
      plane.flushRateLimits();
      const summaries = drain(plane);
      assert.ok(summaries.every((event) => event.flags === 1), "only summary events after the flood");
      const events = [...admitted, ...summaries];
      assert.ok(events.every((event) => event.ruleId === DENY_CLIENT && event.hook === HOOK_INGRESS));
      const reported = events.reduce((sum, event) => sum + event.count, 0);
      assert.equal(
        BigInt(reported) + plane.counters().eventsLost,
        BigInt(flood),
        "reported + lost = dropped",
      );
      assert.equal(
        plane.counters().eventsSuppressed,
        BigInt(flood - admitted.length),
        "every drop without an event of its own was suppressed",
      );
    });
  },
);

rootTest(
  "[root] ingress: an interface whose per-CPU counter slot another interface holds is counted all the same",
  async () => {
    await withIngress(async ({ plane, pair, ifindex, apply, bpffs }) => {
      await apply(denyClient(pair));
      // Every CPU's slot for this interface held by an interface whose index falls on the same slot, its
      // counts zeroed: packets the slot counted before (neighbour discovery, a router solicitation) would
      // otherwise show as the holder's.
      const slots = plane.map("xdp_slots");
      const key = encodeU32(ifindex % STAT_LIMITS.XDP_STAT_SLOTS);
      const taken = new Uint8Array(slots.lookup(key)!.byteLength);
      const view = new DataView(taken.buffer);
      for (let offset = 0; offset < taken.byteLength; offset += 24) {
        view.setUint32(offset, ifindex + STAT_LIMITS.XDP_STAT_SLOTS, true);
      }
      slots.update(key, taken);
      const flood = 20;
      await run("ip", [
        ...["netns", "exec", pair.client, "ping", "-q", "-n", "-c", String(flood)],
        ...["-i", "0.002", "-W", "0.1", pair.serverAddress],
      ]);
      const stats = pinnedXdpStats(bpffs.path);
      const drops = stats.find((s) => s.ifindex === ifindex && s.action === XDP_DROP);
      assert.equal(drops?.packets, BigInt(flood), "counted in xdp_stats");
      assert.ok(
        !stats.some((s) => s.ifindex === ifindex + STAT_LIMITS.XDP_STAT_SLOTS),
        "nothing for the holder",
      );
    });
  },
);

rootTest(
  "[root] ingress: an IPv6 source rule drops ping -6 and TCP over IPv6 from that address only",
  async () => {
    await withIngress(async ({ plane, pair, ifindex, apply }) => {
      // Also resolves the neighbours, so what the rule drops below is the traffic itself.
      assert.equal(await pair.pingServer(6), true, "ping -6 must work before any rule");
      await apply({
        mode: "enforce",
        ingress: {
          interfaces: [serverInterface(pair, false)],
          failsafe: [],
          rules: [ipv6Rule(pair.clientAddress6, DENY_CLIENT6)],
        },
      });
      assert.equal(await pair.pingServer(6), false, "ping -6 from the denied address is dropped");
      assert.equal(await pair.reach("tcp", pair.serverAddress6, SERVICE_PORT), "timeout");
      assert.equal(await pair.pingServer(4), true, "IPv4 from the same host is not affected");
      assert.equal(await pair.reach("tcp", pair.serverAddress, SERVICE_PORT), "answered");

      const events = drain(plane).filter((event) => event.family === 6);
      assert.ok(events.every((event) => event.ruleId === DENY_CLIENT6 && event.ifindex === ifindex));
      assert.ok(events.every((event) => formatAddress(event.saddr, "ipv6") === pair.clientAddress6));
      const toServer = events.filter((event) => formatAddress(event.daddr, "ipv6") === pair.serverAddress6);
      assert.ok(toServer.some((event) => event.protocol === ICMPV6), "the echo request is reported");
      assert.ok(
        toServer.some((event) => event.protocol === TCP && event.dport === SERVICE_PORT),
        "the SYN is reported with its port",
      );
    });
  },
);

rootTest(
  "[root] ingress: a session lets a source through default drop until removed or expired; the reaper removes it",
  async () => {
    await withIngress(async ({ plane, pair, apply, inServer }) => {
      await apply({
        mode: "enforce",
        ingress: { interfaces: [serverInterface(pair, true)], failsafe: [], rules: [] },
      });
      assert.equal(await pair.pingServer(), false, "default drop before any session");
      const session = (ttlMs: number, port?: number) =>
        inServer(() =>
          plane.addSession({
            interface: pair.serverInterface,
            family: 4,
            addr: ipv4Bytes(pair.clientAddress),
            prefixLength: 32,
            ...(port === undefined ? {} : { port }),
            ttlMs,
            nowBootNs: bootTimeNs(),
          })
        );
      const sessions = () => plane.map("ingress_session").keys().length;

      const id = session(60_000);
      assert.equal(await pair.pingServer(), true, "a session for the source lets ping through");
      assert.equal(await pair.reach("tcp", pair.serverAddress, SERVICE_PORT), "answered");
      assert.equal(plane.removeSession(id), true);
      assert.equal(plane.removeSession(id), false, "a session is removed once");
      assert.equal(await pair.pingServer(), false, "dropped again once the session is removed");

      const portOnly = session(60_000, SERVICE_PORT);
      assert.equal(
        await pair.reach("tcp", pair.serverAddress, SERVICE_PORT),
        "answered",
        "the session's port",
      );
      assert.equal(await pair.reach("tcp", pair.serverAddress, OTHER_PORT), "timeout", "other ports");
      assert.equal(plane.removeSession(portOnly), true);

      const ttlMs = 1500;
      const expires = Date.now() + ttlMs;
      session(ttlMs);
      assert.equal(await pair.pingServer(), true, "the short session matches before it expires");
      assert.equal(plane.reapSessions(bootTimeNs()), 0, "the reaper leaves a live session");
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, expires - Date.now()) + 100));
      assert.equal(sessions(), 1, "an expired session stays in the map until reaped");
      assert.equal(await pair.pingServer(), false, "an expired session no longer matches");
      assert.equal(plane.reapSessions(bootTimeNs()), 1, "the reaper removes the expired session");
      assert.equal(sessions(), 0);
    });
  },
);

rootTest(
  "[root] ingress: closing the plane keeps XDP enforcing; detach removes it and traffic flows again",
  async () => {
    await withIngress(async ({ plane, pair, bpffs, apply }) => {
      await apply(denyClient(pair));
      assert.equal(await pair.serverXdpAttached(), true);
      assert.equal(await pair.pingServer(), false);

      plane.close();
      assert.equal(await pair.serverXdpAttached(), true, "the pinned link outlives the process's handles");
      assert.equal(await pair.pingServer(), false, "and keeps enforcing");

      const removed = DataPlane.detach(bpffs.path);
      assert.ok(removed.includes(`links/aegis_xdp@${pair.serverInterface}`), removed.join(", "));
      assert.equal(await pair.serverXdpAttached(), false, "no XDP program is left on the interface");
      assert.equal(await pair.pingServer(), true, "traffic flows again");
      assert.equal(await pair.reach("tcp", pair.serverAddress, SERVICE_PORT), "answered");
    });
  },
);

rootTest("[root] ingress: applying a rule set without the interface detaches XDP from it", async () => {
  await withIngress(async ({ plane, pair, apply }) => {
    await apply(denyClient(pair));
    assert.deepEqual(plane.links, [`aegis_xdp@${pair.serverInterface}`]);
    assert.equal(await pair.pingServer(), false);

    // Outside the server namespace: detaching goes by the link, not by the interface name.
    await plane.apply(ruleSet({ mode: "enforce", rules: RULES }));
    assert.deepEqual(plane.links, []);
    assert.equal(await pair.serverXdpAttached(), false);
    assert.equal(await pair.pingServer(), true);
  });
});

rootTest(
  "[root] ingress: a plane opened for ingress only adopts the XDP links an earlier plane pinned",
  async () => {
    await withIngress(async ({ plane, pair, bpffs, apply }) => {
      await apply(denyClient(pair));
      plane.close();
      const second = DataPlane.open({ bpffs: bpffs.path, areas: ["ingress"] });
      try {
        assert.deepEqual(second.links, [`aegis_xdp@${pair.serverInterface}`]);
        assert.equal(await pair.pingServer(), false, "still enforcing after the hand-over");
        await second.apply(ruleSet({ mode: "enforce", rules: RULES }));
        assert.equal(
          await pair.serverXdpAttached(),
          false,
          "the adopted link is detached when dropped from policy",
        );
      } finally {
        second.close();
      }
    });
  },
);

rootTest(
  "[root] ingress: XDP attaches in native mode on veth, and generic mode drops the same way",
  async () => {
    for (const mode of ["native", "generic"] as const) {
      await withIngress(async ({ pair, bpffs, apply }) => {
        await apply(denyClient(pair));
        const link = await must("ip", ["-n", pair.server, "link", "show", pair.serverInterface]);
        assert.match(link, mode === "native" ? /\bxdp(drv)? / : /\bxdpgeneric /, link);
        assert.equal(await pair.pingServer(), false, `${mode}: the denied source is dropped`);
        DataPlane.detach(bpffs.path);
        assert.equal(await pair.serverXdpAttached(), false);
        assert.equal(await pair.pingServer(), true);
      }, mode);
    }
  },
);

rootTest(
  "[root] ingress: by default XDP attaches in generic mode on a veth, the cheaper path for its traffic",
  async () => {
    await withIngress(async ({ pair, apply, inServer }) => {
      assert.equal(inServer(() => interfaceDriver(pair.serverInterface)), "veth");
      assert.equal(inServer(() => interfaceDriver("no-such-interface")), undefined);
      await apply(denyClient(pair));
      const link = await must("ip", ["-n", pair.server, "link", "show", pair.serverInterface]);
      assert.match(link, /\bxdpgeneric /, link);
      assert.equal(await pair.pingServer(), false, "the denied source is dropped");
    }, "auto");
  },
);
