/**
 * DNS answers learned in the kernel (bpf/dns_learn.bpf.h) on the host's cgroup hooks: in a network
 * namespace of its own inside the test cgroup, a script (tests/host/dns/dns_answers.py) plays resolver on
 * 127.0.0.1:53 and crafts each answer; right after it, the script connects to the answered address. Under
 * a deny of 127.0.0.0/8, only an address learned for `*.test.example` from a well-formed answer to a query
 * asked of the allowed resolver connects.
 */
import assert from "node:assert/strict";
import { DECISION, HOOK, RULE_HIT } from "../../ffi/mod.ts";
import { pinnedRuleHits } from "../../lib/kernel/inspect.ts";
import { readModeWords } from "../../lib/kernel/mode_words.ts";
import type { DataPlane } from "../../lib/kernel/dataplane.ts";
import type { DnsStats } from "../../lib/kernel/learned.ts";
import { resolvePlan } from "../../lib/kernel/resolve.ts";
import { compilePolicy } from "../../lib/policy/compile.ts";
import { parsePolicy } from "../../lib/policy/parse.ts";
import { drain, withPlane } from "../support/plane.ts";
import { rootTest } from "../support/privileged.ts";
import { checkHealth } from "../../lib/report/health.ts";

const SCRIPT = new URL("./dns/dns_answers.py", import.meta.url).pathname;
const PYTHON = Deno.realPathSync("/usr/bin/python3");
const LOOP = 1000;
/** The names of every shape (dns_answers.py `shapes`): each learned, under the pattern that covers it. */
const SHAPES = 6;
/** Addresses written for the known-address answers: 127.6.0.3 three times, 127.6.0.4 twice. */
const KNOWN_WRITES = 5;

async function apply(plane: DataPlane, mode: "enforce" | "audit") {
  const text = `apiVersion: aegisbpf.io/v1\nkind: Policy\nmetadata: { name: dns, version: 1 }\n` +
    `spec:\n  mode: ${mode}\n  network:\n    egress:\n      nameTtlFloor: 1\n` +
    `      deny:\n        - { id: lo8, cidr: 127.0.0.0/8 }\n        - { id: evil, host: evil.test.example }\n` +
    `        - { id: nosub, host: "*.no.test.example" }\n` +
    `        - { id: deep, host: "*.x1.x2.x3.x4.x5.x6.test.example" }\n` +
    `      allow:\n        - { id: resolver, cidr: 127.0.0.1/32 }\n` +
    `        - { id: zone, host: "*.test.example" }\n`;
  const plan = compilePolicy(parsePolicy(text, "dns.yaml"));
  await plane.apply(resolvePlan(plan));
  return plan;
}

function delta(after: DnsStats, before: DnsStats): Record<keyof DnsStats, number> {
  const keys = Object.keys(after) as (keyof DnsStats)[];
  return Object.fromEntries(keys.map((key) => [key, Number(after[key] - before[key])])) as Record<
    keyof DnsStats,
    number
  >;
}

for (const mode of ["enforce", "audit"] as const) {
  rootTest(
    `[root] dns answers (${mode}): learned before the application reads them (${LOOP} fresh names), CNAME chains, TTL expiry, TCP answers in one segment; truncated, malformed, split, unsolicited and foreign answers not learned and counted; a denied name's TCP query dropped`,
    async () => {
      await withPlane({ areas: ["egress"] }, async ({ plane, cgroup, bpffs }) => {
        const plan = await apply(plane, mode);
        drain(plane);
        const before = plane.dnsStats();
        const run = await cgroup.runBash(
          `exec unshare -n sh -c 'ip link set lo up && exec "${PYTHON}" "${SCRIPT}" ${LOOP}'`,
        );
        assert.equal(run.code, 0, run.stderr);
        const out = JSON.parse(run.stdout);
        const refused = mode === "enforce" ? "EPERM" : "connected";
        assert.deepEqual(out, {
          loop: { connected: LOOP },
          never: refused,
          shapes: ["connected", "connected", "connected", refused, refused, "connected"],
          cname: "connected",
          cname_uncovered: refused,
          outside_chain: refused,
          truncated: refused,
          cut: refused,
          pointer_loop: refused,
          unsolicited: refused,
          other_question: refused,
          foreign: refused,
          tcp_query: "answered",
          tcp: "connected",
          tcp_split_query: "answered",
          tcp_split: refused,
          tcp_denied_query: mode === "enforce" ? "no answer" : "answered",
          ipv6_transport: "connected",
          ttl_zero_floor: "connected",
          ttl_fresh: "connected",
          ttl_expired: refused,
          known_allowed: "connected",
          known_other_pattern: refused,
          known_extended: "connected",
        });
        const stats = delta(plane.dnsStats(), before);
        // In audit the denied name's TCP query goes out, and its answer is learned under its deny rule.
        const denied = mode === "audit" ? 1 : 0;
        assert.deepEqual(stats, {
          // and the known addresses: 127.6.0.3 three times under one pattern, 127.6.0.4 under two
          learned: LOOP + SHAPES + 5 + denied + KNOWN_WRITES,
          // of them new: 127.6.0.3 and 127.6.0.4 once each
          inserted: LOOP + SHAPES + 5 + denied + 2,
          // the loop, the shapes, both CNAME chains, the record outside the chain, the one over IPv6, the two
          // TTL ones, the TCP one, the known addresses'
          answers: LOOP + SHAPES + 7 + denied + KNOWN_WRITES,
          // truncated, cut, the pointer loop, the TCP answer split from its length
          malformed: 4,
          unsolicited: 2,
          foreign: 1,
          userInserted: 0,
        });
        // health reports the same (a fresh plane: its counts are this test's), and no eviction.
        const stateDir = Deno.makeTempDirSync({ prefix: "aegisbpf-dns-" });
        try {
          const report = checkHealth({ bpffs: bpffs.path, stateDir, configDir: stateDir }, {
            requireEnforce: false,
            connections: false,
            staleRules: false,
          });
          assert.deepEqual(report.names, {
            learned: LOOP + SHAPES + 5 + denied + 2,
            capacity: 65536,
            evictions: 0,
            answers: {
              parsed: LOOP + SHAPES + 7 + denied + KNOWN_WRITES,
              addresses: LOOP + SHAPES + 5 + denied + KNOWN_WRITES,
              malformed: 4,
              unsolicited: 2,
              foreign: 1,
            },
          });
        } finally {
          Deno.removeSync(stateDir, { recursive: true });
        }
        // Per-name hits: every connect the wildcard's rule allowed by a learned address (the loop, four of the
        // shapes, the CNAME chain's end, the one over IPv6, the TCP answer's, the TTL 0 one, the TTL 1 one
        // while fresh, the two known addresses while the zone's), in either mode.
        const zone = plan.egressHosts?.find((rule) => rule.host === "*.test.example")?.ruleId;
        const hits = pinnedRuleHits(bpffs.path, readModeWords(bpffs.path)?.activeGen ?? -1)
          .filter((hit) => hit.decision === RULE_HIT.NAME_ALLOW);
        assert.deepEqual(hits.map((hit) => [hit.ruleId, Number(hit.count)]), [[zone, LOOP + 4 + 5 + 2]]);
        // Each refused connect was the /8's decision, reported with its address (the rate limiter may fold
        // the last ones into a later count), but the two shapes a longer wildcard denies: its decision.
        const events = drain(plane).filter((event) => event.hook === HOOK.CONNECT);
        const addresses = events.map((event) => [...event.daddr.subarray(0, 4)].join("."));
        const refusedAddresses = [
          "127.2.0.1",
          "127.8.0.4",
          "127.8.0.5",
          "127.3.0.2",
          "127.3.0.3",
          "127.5.0.1",
          "127.5.0.2",
          "127.5.0.3",
          "127.4.0.1",
          "127.4.0.2",
          "127.4.0.3",
          "127.7.0.2",
          "127.6.0.1",
          "127.6.0.4",
        ];
        assert.deepEqual(addresses.slice(0, 5), refusedAddresses.slice(0, 5));
        assert.ok(addresses.every((address) => refusedAddresses.includes(address)), `${addresses}`);
        const ruleOf = (host: string) => plan.egressHosts?.find((rule) => rule.host === host)?.ruleId;
        assert.deepEqual(events.slice(1, 3).map((event) => event.ruleId), [
          ruleOf("*.no.test.example"),
          ruleOf("*.x1.x2.x3.x4.x5.x6.test.example"),
        ]);
        const decision = mode === "enforce" ? DECISION.DENY : DECISION.AUDIT;
        assert.ok(events.every((event) => event.decision === decision));
      });
    },
  );
}
