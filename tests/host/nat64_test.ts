/**
 * IPv6 forms of an IPv4 address: a destination in a NAT64 prefix (64:ff9b::/96 always, and the policy's
 * own /96) or IPv4-compatible (::a.b.c.d) is matched as the IPv4 address it stands for, and still as
 * itself, by the connect and sendmsg hooks and by the packet backstop.
 */
import assert from "node:assert/strict";
import { HOOK } from "../../ffi/mod.ts";
import { parseCidr } from "../../lib/policy/cidr.ts";
import type { RuleInfo } from "../../lib/policy/plan.ts";
import { buildPacketWorker, PacketWorker } from "../support/packet_worker.ts";
import { drain, ruleSet, withPlane } from "../support/plane.ts";
import { rootTest } from "../support/privileged.ts";
import { ipv4Rule } from "../support/slice.ts";

const RULES: RuleInfo[] = [
  { id: "default", area: "ingress", action: "deny" },
  { id: "deny-v4-host", area: "egress", action: "deny" },
  { id: "deny-nat64-v6", area: "egress", action: "deny" },
];
const PREFIXES = ["64:ff9b::/96", "2001:db8:64::/96"].map((text) => parseCidr(text).addr.slice(0, 12));

rootTest(
  "[root] NAT64: 64:ff9b::a.b.c.d, a policy prefix and ::a.b.c.d are denied by an IPv4 rule",
  async () => {
    await withPlane({ areas: ["egress"] }, async ({ plane, cgroup, server }) => {
      await plane.apply(
        ruleSet({
          mode: "enforce",
          rules: RULES,
          egress: [ipv4Rule("192.0.2.7/32", 1)],
          nat64Prefixes: PREFIXES,
        }),
      );
      for (const addr of ["64:ff9b::192.0.2.7", "2001:db8:64::c000:207", "::192.0.2.7"]) {
        assert.equal(await cgroup.connect(addr, server.port), "EPERM", `connect ${addr}`);
        assert.equal(await cgroup.probe("udp-sendto", addr, "53"), "EPERM", `sendto ${addr}`);
      }
      const events = drain(plane).filter((event) =>
        event.hook === HOOK.CONNECT || event.hook === HOOK.SENDMSG
      );
      assert.equal(events.length, 6);
      for (const event of events) {
        assert.equal(event.ruleId, 1);
        assert.equal(event.family, 4, "reported as the IPv4 address it matched");
        assert.deepEqual([...event.daddr.subarray(0, 4)], [192, 0, 2, 7]);
      }
      // Neither another IPv4 address in the prefix, nor the prefix of a policy that does not list it.
      assert.notEqual(await cgroup.connect("64:ff9b::192.0.2.8", server.port), "EPERM");
      assert.notEqual(await cgroup.connect("2001:db8:65::c000:207", server.port), "EPERM");
      // :: and ::1 are not IPv4-compatible forms: ::1 stays the IPv6 loopback.
      assert.equal(await cgroup.connect("::1", server.port), "connected");
    });
  },
);

rootTest("[root] NAT64: an IPv6 rule covering the prefix still denies its addresses", async () => {
  await withPlane({ areas: ["egress"] }, async ({ plane, cgroup, server }) => {
    await plane.apply(
      ruleSet({
        mode: "enforce",
        rules: RULES,
        egress: [ipv4Rule("64:ff9b::/96", 2)],
        nat64Prefixes: PREFIXES,
      }),
    );
    assert.equal(await cgroup.connect("64:ff9b::198.51.100.1", server.port), "EPERM");
    const [event] = drain(plane);
    assert.equal(event?.ruleId, 2);
    assert.equal(event?.family, 6, "reported as the IPv6 address it matched");
  });
});

rootTest("[root] NAT64: in audit the connect goes ahead and is reported", async () => {
  await withPlane({ areas: ["egress"] }, async ({ plane, cgroup, server }) => {
    await plane.apply(
      ruleSet({ mode: "audit", rules: RULES, egress: [ipv4Rule("127.0.0.0/8", 1)], nat64Prefixes: PREFIXES }),
    );
    // ::127.0.0.1 has no route, so the connect fails, but not with EPERM: the hook let it through.
    const result = await cgroup.connect("::127.0.0.1", server.port);
    assert.notEqual(result, "EPERM");
    const [event] = drain(plane);
    assert.equal(event?.decision, 1);
    assert.equal(event?.ruleId, 1);
  });
});

rootTest(
  "[root] NAT64: the packet backstop matches a raw ICMPv6 packet to 64:ff9b::a.b.c.d as IPv4",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "aegisbpf-nat64-" });
    try {
      const binary = await buildPacketWorker(dir);
      await withPlane({ areas: ["egress"] }, async ({ plane, cgroup }) => {
        await plane.apply(
          ruleSet({
            mode: "enforce",
            rules: RULES,
            egress: [ipv4Rule("192.0.2.7/32", 1)],
            nat64Prefixes: PREFIXES,
          }),
        );
        const worker = await PacketWorker.start(binary, cgroup.path);
        try {
          const outcome = await worker.send({ kind: "raw6", addr: "64:ff9b::192.0.2.7" });
          const events = drain(plane).filter((event) =>
            event.hook === HOOK.PACKET && event.pid === outcome.pid
          );
          assert.equal(events.length, 1, `one packet event: ${JSON.stringify(outcome)}`);
          assert.equal(events[0]?.ruleId, 1);
        } finally {
          await worker.close();
        }
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
