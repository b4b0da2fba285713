/**
 * The packet backstop (cgroup_skb/egress, bpf/net_guard.bpf.h): sockets the cgroup connect and sendmsg
 * hooks never see (unprivileged ping sendto, raw ICMP/UDP/IP_HDRINCL/ICMPv6, connected UDP-Lite) are
 * stopped in enforce and reported in audit, and their allowed traffic still flows. Packets go over `lo` of
 * the worker's private namespace: 127.0.0.2 and ::1 are denied, 127.0.0.1 is not.
 */
import assert from "node:assert/strict";
import { HOOK, MODE, type RawEvent } from "../../ffi/mod.ts";
import type { NetRule, RuleInfo } from "../../lib/policy/plan.ts";
import { type PacketCase, type PacketOutcome, PacketWorker } from "../support/packet_worker.ts";
import { buildPacketWorker } from "../support/packet_worker.ts";
import { drain, type PlaneFixture, ruleSet, withPlane } from "../support/plane.ts";
import { rootTest } from "../support/privileged.ts";
import { ipv4Rule } from "../support/slice.ts";

const NOBODY = 65534;
const EPERM = 1;
const PORT = 7777;
const RULES: RuleInfo[] = [
  { id: "default", area: "ingress", action: "deny" },
  { id: "deny-loopback2", area: "egress", action: "deny" },
  { id: "deny-loopback6", area: "egress", action: "deny" },
];
const DENY_V4 = 1;
const DENY_V6 = 2;
const DENIED: NetRule[] = [ipv4Rule("127.0.0.2/32", DENY_V4), ipv4Rule("::1/128", DENY_V6)];

type Fixture = PlaneFixture & { send: (c: PacketCase) => Promise<PacketOutcome> };

async function withWorker(mode: "enforce" | "audit", fn: (fixture: Fixture) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "aegisbpf-packet-" });
  try {
    const binary = await buildPacketWorker(dir);
    await withPlane({ areas: ["egress"] }, async (fixture) => {
      await fixture.plane.apply(ruleSet({ mode, rules: RULES, egress: DENIED }));
      const worker = await PacketWorker.start(binary, fixture.cgroup.path);
      try {
        await fn({ ...fixture, send: (c) => worker.send(c) });
      } finally {
        const stderr = await worker.close();
        assert.equal(stderr.trim(), "", "the worker reports no failure");
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The cases that must be stopped: to a denied address, from every socket kind the backstop covers. */
type Bypass = {
  name: string;
  denied: PacketCase;
  allowed?: PacketCase;
  rule: number;
  protocol: number;
  /** What the send returns when its packet is dropped: EPERM, except where the kernel drops silently. */
  sendErrno?: number;
};

const BYPASSES: Bypass[] = [
  {
    name: "ping sendto as an unprivileged user (IPv4)",
    denied: { kind: "ping", addr: "127.0.0.2", uid: NOBODY },
    allowed: { kind: "ping", addr: "127.0.0.1", uid: NOBODY },
    rule: DENY_V4,
    protocol: 1,
  },
  {
    name: "ping sendto as an unprivileged user (IPv6)",
    denied: { kind: "ping", addr: "::1", uid: NOBODY },
    rule: DENY_V6,
    protocol: 58,
    sendErrno: 0, // an IPv6 ping socket's sendto does not pass the output error on
  },
  {
    name: "raw ICMP",
    denied: { kind: "raw-icmp", addr: "127.0.0.2" },
    allowed: { kind: "raw-icmp", addr: "127.0.0.1" },
    rule: DENY_V4,
    protocol: 1,
  },
  {
    name: "raw UDP",
    denied: { kind: "raw-udp", addr: "127.0.0.2", port: PORT },
    allowed: { kind: "raw-udp", addr: "127.0.0.1", port: PORT },
    rule: DENY_V4,
    protocol: 17,
  },
  {
    name: "IP_HDRINCL",
    denied: { kind: "hdrincl", addr: "127.0.0.2", port: PORT },
    allowed: { kind: "hdrincl", addr: "127.0.0.1", port: PORT },
    rule: DENY_V4,
    protocol: 17,
  },
  { name: "raw ICMPv6", denied: { kind: "raw6", addr: "::1" }, rule: DENY_V6, protocol: 58 },
  {
    name: "connected UDP-Lite",
    denied: { kind: "udplite-connect", addr: "127.0.0.2", port: PORT },
    allowed: { kind: "udplite-connect", addr: "127.0.0.1", port: PORT },
    rule: DENY_V4,
    protocol: 136,
  },
  {
    name: "connected UDP-Lite (IPv6)",
    denied: { kind: "udplite-connect", addr: "::1", port: PORT },
    rule: DENY_V6,
    protocol: 136,
  },
];

function packetEvents(events: RawEvent[], pid: number): RawEvent[] {
  return events.filter((event) => event.hook === HOOK.PACKET && event.pid === pid);
}

rootTest(
  "[root] packet backstop: everything is delivered before any rule (the worker's proofs work)",
  async () => {
    await withWorker("enforce", async ({ plane, send }) => {
      await plane.apply(ruleSet({ mode: "enforce", rules: RULES, egress: [] }));
      for (const { name, denied } of BYPASSES) {
        const outcome = await send(denied);
        assert.deepEqual([outcome.stage, outcome.errno, outcome.delivered], ["op", 0, true], name);
      }
    });
  },
);

for (const { name, denied, allowed, rule, protocol, sendErrno = EPERM } of BYPASSES) {
  rootTest(
    `[root] packet backstop: ${name} to a denied address is dropped and reported in enforce`,
    async () => {
      await withWorker("enforce", async ({ plane, send }) => {
        const outcome = await send(denied);
        assert.equal(outcome.stage, "op", `the socket opens: ${JSON.stringify(outcome)}`);
        assert.equal(outcome.delivered, false, "nothing reaches the denied address");
        assert.equal(outcome.errno, sendErrno, `the send's errno: ${JSON.stringify(outcome)}`);
        const events = packetEvents(drain(plane), outcome.pid);
        assert.ok(events.length >= 1, "a deny event names the sender");
        for (const event of events) {
          assert.equal(event.ruleId, rule);
          assert.equal(event.decision, 0);
          assert.equal(event.mode, MODE.ENFORCE);
          assert.equal(event.protocol, protocol);
          if (denied.port) assert.equal(event.dport, denied.port);
          assert.equal(event.uid, denied.uid ?? 0);
        }
        assert.ok(plane.counters().decisions.packet.deny >= 1n);
        if (allowed) {
          const other = await send(allowed);
          assert.deepEqual([other.errno, other.delivered], [0, true], "the allowed address still gets it");
          assert.equal(packetEvents(drain(plane), other.pid).length, 0, "and nothing is reported");
        }
      });
    },
  );

  rootTest(
    `[root] packet backstop: ${name} to a denied address is delivered and reported in audit`,
    async () => {
      await withWorker("audit", async ({ plane, send }) => {
        const outcome = await send(denied);
        assert.deepEqual([outcome.errno, outcome.delivered], [0, true], "audit lets it through");
        const events = packetEvents(drain(plane), outcome.pid);
        assert.ok(events.length >= 1, "a would-deny event names the sender");
        assert.ok(events.every((event) => event.decision === 1 && event.ruleId === rule));
      });
    },
  );
}

rootTest(
  "[root] packet backstop: users entries apply to ping and raw packets (uid, and gid for the owner)",
  async () => {
    await withWorker("enforce", async ({ plane, send }) => {
      const users = (entry: { uid: number } | { gid: number }) =>
        plane.apply(ruleSet({
          mode: "enforce",
          rules: [...RULES, { id: "web-only", area: "egress", action: "deny" }],
          egress: [],
          // Only ports 80 and 443: ICMP has no port, so a ping is denied.
          egressUsers: [{ ruleId: 3, ports: [80, 443], portsAre: "allowed", ...entry }],
        }));
      for (const entry of [{ uid: NOBODY }, { gid: NOBODY }]) {
        await users(entry);
        drain(plane);
        const ping = await send({ kind: "ping", addr: "127.0.0.1", uid: NOBODY });
        assert.equal(ping.delivered, false, `${JSON.stringify(entry)}: the ping is dropped`);
        const [event] = packetEvents(drain(plane), ping.pid);
        assert.equal(event?.ruleId, 3);
        assert.equal(event?.gid, NOBODY, "the sender runs as the socket's owner: its gid is known");
        const root = await send({ kind: "raw-icmp", addr: "127.0.0.1" });
        assert.equal(root.delivered, true, `${JSON.stringify(entry)}: another user is not restricted`);
      }
    });
  },
);
