/**
 * The CIDR maps a `policy apply` writes ahead (NetRulesAhead, lib/kernel/generations.ts: the `net_rules`
 * trie and the `net_exact` hash of whole addresses): written while the apply still checks, installed only by
 * the stage of the very plan they were written for, and enforcing and auditing like maps the stage wrote.
 */
import assert from "node:assert/strict";
import { NetRulesAhead } from "../../lib/kernel/generations.ts";
import { rootTest } from "../support/privileged.ts";
import { drain, ruleSet, withPlane } from "../support/plane.ts";
import { ipv4Rule } from "../support/slice.ts";

const AREAS = ["egress"] as const;

function rules(...ids: string[]) {
  return [
    { id: "default", area: "ingress" as const, action: "deny" as const },
    ...ids.map((id) => ({ id, area: "egress" as const, action: "deny" as const })),
  ];
}

rootTest(
  "[root] egress: the net_rules and net_exact maps written ahead are the ones the apply installs: enforce denies (EPERM, a deny event), audit lets through with an audit event",
  async () => {
    await withPlane({ areas: AREAS }, async ({ plane, cgroup, server }) => {
      for (const mode of ["enforce", "audit"] as const) {
        // A whole address (the hash) and a network (the trie).
        const set = ruleSet({
          mode,
          rules: rules("loopback2", "loopback9"),
          egress: [ipv4Rule("127.0.0.2/32", 1), ipv4Rule("127.0.9.0/24", 2)],
        });
        using ahead = NetRulesAhead.start(set.plan);
        drain(plane);
        await ahead.written();
        await plane.apply(set, ahead);
        for (const name of ["net_rules", "net_exact"] as const) {
          assert.equal(ahead.take(name), undefined, `the stage took the ${name} map written ahead`);
        }
        const info = plane.activeGenInfo();
        assert.deepEqual([info.netRulesEntries, info.netExactEntries], [1, 1]);
        const expected = mode === "enforce" ? "EPERM" : "connected";
        assert.equal(await cgroup.connect("127.0.0.2", server.port), expected);
        if (mode === "enforce") assert.equal(await cgroup.connect("127.0.9.1", server.port), "EPERM");
        assert.equal(await cgroup.connect("127.0.0.1", server.port), "connected");
        const events = drain(plane);
        assert.deepEqual(events.map((e) => e.ruleId), mode === "enforce" ? [1, 2] : [1]);
        for (const event of events) {
          assert.equal(event.decision, mode === "enforce" ? 0 : 1);
          assert.equal(event.gen, plane.config().activeGen);
        }
      }
    });
  },
);

rootTest(
  "[root] egress: a map written ahead for another plan is not installed; the apply writes the rules of its own",
  async () => {
    await withPlane({ areas: AREAS }, async ({ plane, cgroup, server }) => {
      const other = ruleSet({
        mode: "enforce",
        rules: rules("three"),
        egress: [ipv4Rule("127.0.0.3/32", 1)],
      });
      using ahead = NetRulesAhead.start(other.plan);
      await ahead.written();
      const set = ruleSet({ mode: "enforce", rules: rules("two"), egress: [ipv4Rule("127.0.0.2/32", 1)] });
      await plane.apply(set, ahead);
      const left = ahead.take("net_exact");
      assert.notEqual(left, undefined, "the map written for the other plan stays out");
      left?.close();
      assert.equal(await cgroup.connect("127.0.0.2", server.port), "EPERM");
      assert.equal(await cgroup.connect("127.0.0.3", server.port), "connected");
    });
  },
);

rootTest(
  "[root] egress: a map whose write is not done yet is not installed; the apply writes the rules itself",
  async () => {
    await withPlane({ areas: AREAS }, async ({ plane, cgroup, server }) => {
      const set = ruleSet({ mode: "enforce", rules: rules("two"), egress: [ipv4Rule("127.0.0.2/32", 1)] });
      // No await between the start and the apply: the write cannot be seen done yet.
      using ahead = NetRulesAhead.start(set.plan);
      await plane.apply(set, ahead);
      await ahead.written();
      const left = ahead.take("net_exact");
      assert.notEqual(left, undefined, "the map written ahead stays out once its write is done");
      left?.close();
      assert.equal(await cgroup.connect("127.0.0.2", server.port), "EPERM");
      assert.equal(await cgroup.connect("127.0.0.1", server.port), "connected");
    });
  },
);
