import assert from "node:assert/strict";
import { enforcing, families, type MetricsReading } from "./collect.ts";
import { exposition } from "./exposition.ts";

const base: MetricsReading = {
  build: { version: "0.1.0", libbpf: "1.1", kernel: "6.1.0" },
  pinned: true,
  policyMode: "enforce",
  forceAudit: false,
  breakGlass: false,
  maps: [{ map: "rules", entries: 3, capacity: 8 }],
  links: ["aegis_connect4", "aegis_xdp@eth0", "aegis_xdp@eth1"],
  xdp: [],
  ruleHits: [],
};

Deno.test("enforcing() is 1 only for an enforce rule set with nothing forcing audit", () => {
  assert.equal(enforcing(base), true);
  assert.equal(enforcing({ ...base, policyMode: "audit" }), false);
  assert.equal(enforcing({ ...base, forceAudit: true }), false);
  assert.equal(enforcing({ ...base, breakGlass: true }), false);
  assert.equal(enforcing({ ...base, deadmanRemaining: 0 }), false);
  assert.equal(enforcing({ ...base, deadmanRemaining: 12 }), true);
  const { policyMode: _, ...nothingApplied } = base;
  assert.equal(enforcing(nothingApplied), false);
});

Deno.test("families() names attached hooks, one xdp@IFACE per interface, and omits absent samples", () => {
  const text = exposition(families(base));
  assert.match(text, /^aegisbpf_hook_attached\{hook="connect4"\} 1$/m);
  assert.match(text, /^aegisbpf_hook_attached\{hook="connect6"\} 0$/m);
  assert.match(text, /^aegisbpf_hook_attached\{hook="xdp@eth0"\} 1$/m);
  assert.match(text, /^aegisbpf_hook_attached\{hook="xdp@eth1"\} 1$/m);
  assert.doesNotMatch(text, /hook="xdp"\}/);
  assert.match(text, /^aegisbpf_map_entries\{map="rules"\} 3$/m);
  assert.doesNotMatch(text, /^aegisbpf_deadman_seconds_remaining /m);
  assert.doesNotMatch(text, /^aegisbpf_policy_version /m);
  assert.match(text, /^# TYPE aegisbpf_policy_version gauge$/m);
  const withDeadman = exposition(families({ ...base, deadmanRemaining: 2.5, links: [] }));
  assert.match(withDeadman, /^aegisbpf_deadman_seconds_remaining 2\.5$/m);
  assert.match(withDeadman, /^aegisbpf_hook_attached\{hook="xdp"\} 0$/m);
});

Deno.test("families() counts the rules the agent could not re-resolve, 0 when none", () => {
  assert.match(exposition(families(base)), /^aegisbpf_rules_unresolved 0$/m);
  assert.match(exposition(families({ ...base, unresolvedRules: 2 })), /^aegisbpf_rules_unresolved 2$/m);
});

Deno.test("families() reports the DNS answers the kernel read and the learned table's evictions", () => {
  assert.doesNotMatch(exposition(families(base)), /^aegisbpf_dns_answers_total/m);
  const dns = {
    learned: 7n,
    inserted: 5n,
    userInserted: 2n,
    answers: 6n,
    malformed: 3n,
    unsolicited: 2n,
    foreign: 1n,
    evictions: 4n,
  };
  const text = exposition(families({ ...base, dns }));
  assert.match(text, /^aegisbpf_dns_answers_total\{result="parsed"\} 6$/m);
  assert.match(text, /^aegisbpf_dns_answers_total\{result="malformed"\} 3$/m);
  assert.match(text, /^aegisbpf_dns_answers_total\{result="unsolicited"\} 2$/m);
  assert.match(text, /^aegisbpf_dns_answers_total\{result="foreign"\} 1$/m);
  assert.match(text, /^aegisbpf_dns_learned_addresses_total 7$/m);
  assert.match(text, /^aegisbpf_learned_evictions_total 4$/m);
});

Deno.test("families() sums XDP packets and rule hits by their labels", () => {
  const text = exposition(families({
    ...base,
    xdp: [
      { interface: "eth0", action: "drop", packets: 3n },
      { interface: "eth0", action: "pass", packets: 10n },
      { interface: "eth0", action: "drop", packets: 2n },
    ],
    ruleHits: [
      { rule: "imds", decision: "deny", count: 4n },
      { rule: "imds", decision: "deny", count: 1n },
      { rule: "ssh", decision: "audit", count: 7n },
      { rule: "shadow", tags: "T1003.008,pci", decision: "deny", count: 2n },
    ],
  }));
  assert.match(text, /^aegisbpf_xdp_packets_total\{interface="eth0",action="drop"\} 5$/m);
  assert.match(text, /^aegisbpf_xdp_packets_total\{interface="eth0",action="pass"\} 10$/m);
  assert.match(text, /^aegisbpf_rule_hits_total\{rule="imds",decision="deny"\} 5$/m);
  assert.match(text, /^aegisbpf_rule_hits_total\{rule="ssh",decision="audit"\} 7$/m);
  // A rule's tags are one label, comma-separated; a rule without tags has none.
  assert.match(text, /^aegisbpf_rule_hits_total\{rule="shadow",decision="deny",tags="T1003.008,pci"\} 2$/m);
});
