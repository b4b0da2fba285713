/**
 * Egress rules by host name through the pure layers: compile, decide with a learned-address table, lint.
 * The policies are built as data (typed, without parsing).
 */
import assert from "node:assert/strict";
import { compilePolicy } from "./compile.ts";
import { decide, type LearnedAddress } from "./decide.ts";
import { type LintFacts, lintPolicy } from "./lint.ts";
import type { RuleSetPlan } from "./plan.ts";
import type { EgressRuleSpec, Policy } from "./schema.ts";

function policy(egress: {
  default?: "allow" | "deny";
  allow?: EgressRuleSpec[];
  deny?: EgressRuleSpec[];
}, cgroups?: string[]): Policy {
  return {
    apiVersion: "aegisbpf.io/v1",
    kind: "Policy",
    metadata: { name: "names", version: 1 },
    spec: { mode: "enforce", ...cgroups && { scope: { cgroups } }, network: { egress } },
  };
}

const FACTS: LintFacts = {
  resolvers: [],
  sshPorts: [22],
  survival: [],
  paths: new Map(),
  now: new Date("2026-06-01T00:00:00Z"),
};

function who(
  plan: RuleSetPlan,
  addr: string,
  port: number,
  learned: LearnedAddress[],
  protocol = "tcp" as const,
) {
  const result = decide(plan, { area: "egress", addr, port, protocol }, { learned });
  return result.decision === "allow" ? "allow" : result.ruleName ?? `#${result.ruleId}`;
}

Deno.test("compilePolicy() keeps a rule by name apart from the CIDR rules, canonical, one per port", () => {
  const plan = compilePolicy(policy({
    default: "deny",
    allow: [{ id: "api", host: "API.Example.com.", ports: [443, 8443], protocol: "tcp" }],
    deny: [{ host: "*.ads.example" }],
  }));
  assert.deepEqual(plan.egress, [], "no CIDR rule");
  assert.deepEqual(plan.egressHosts, [
    { ruleId: 1, action: "deny", host: "*.ads.example" },
    { ruleId: 2, action: "allow", host: "api.example.com", protocol: "tcp", port: 443 },
    { ruleId: 2, action: "allow", host: "api.example.com", protocol: "tcp", port: 8443 },
  ]);
  assert.equal(plan.rules[1]?.id, "network.egress.deny[0]");
  assert.equal(plan.rules[1]?.host, "*.ads.example");
  assert.equal(plan.rules[2]?.id, "api");
  assert.equal(plan.rules[2]?.host, "api.example.com");
  assert.ok(plan.routeGuard, "rules by name are egress rules: the source-route guard comes with them");
});

Deno.test("decide() allows a learned address of an allowed name under default deny, and nothing else", () => {
  const plan = compilePolicy(policy({ default: "deny", allow: [{ host: "*.test.example", port: 443 }] }));
  const learned = [{ addr: "192.0.2.10", host: "www.test.example" }, {
    addr: "2001:db8::10",
    host: "a.b.test.example",
  }];
  assert.equal(who(plan, "192.0.2.10", 443, learned), "allow");
  assert.equal(who(plan, "2001:db8::10", 443, learned), "allow");
  assert.equal(who(plan, "::ffff:192.0.2.10", 443, learned), "allow", "a mapped address is the IPv4 one");
  assert.equal(who(plan, "192.0.2.10", 80, learned), "network.egress.default", "another port");
  assert.equal(who(plan, "192.0.2.11", 443, learned), "network.egress.default", "never answered");
  assert.equal(who(plan, "192.0.2.10", 443, []), "network.egress.default", "nothing learned");
  assert.equal(
    who(plan, "192.0.2.10", 443, [{ addr: "192.0.2.10", host: "www.test.example", expired: true }]),
    "network.egress.default",
    "an expired entry decides nothing",
  );
  assert.equal(
    who(plan, "192.0.2.10", 443, [{ addr: "192.0.2.10", host: "test.example" }]),
    "network.egress.default",
    "the wildcard does not cover the domain itself",
  );
});

Deno.test("decide() lets a name beat wider CIDR rules, and the address's own /32 beat the name", () => {
  const learned = [{ addr: "10.1.2.3", host: "db.example.com" }];
  const wide = compilePolicy(policy({
    deny: [{ id: "wide", cidr: "10.0.0.0/8" }],
    allow: [{ id: "db", host: "db.example.com" }],
  }));
  assert.equal(who(wide, "10.1.2.3", 5432, learned), "allow", "the name beats the /8");
  assert.equal(who(wide, "10.1.2.4", 5432, learned), "wide");
  const exact = compilePolicy(policy({
    deny: [{ id: "host", cidr: "10.1.2.3/32" }],
    allow: [{ id: "db", host: "db.example.com" }],
  }));
  assert.equal(who(exact, "10.1.2.3", 5432, learned), "host", "the /32 names the address itself");
  const port = compilePolicy(policy({
    deny: [{ id: "host", cidr: "10.1.2.3/32" }],
    allow: [{ id: "db", host: "db.example.com", port: 5432 }],
  }));
  assert.equal(
    who(port, "10.1.2.3", 5432, learned),
    "host",
    "the address's own rule beats a name, ports or not",
  );
  const denied = compilePolicy(policy({ deny: [{ id: "ads", host: "*.ads.example" }] }));
  assert.equal(who(denied, "198.51.100.7", 80, [{ addr: "198.51.100.7", host: "x.ads.example" }]), "ads");
  assert.equal(who(denied, "198.51.100.7", 80, []), "allow");
});

Deno.test("lintPolicy() warns about an allowlist that allows DNS over HTTPS or TLS", () => {
  const locate = () => ({ file: "p.yaml" });
  const codes = (p: Policy, facts: Partial<LintFacts> = {}) =>
    lintPolicy(p, locate, { ...FACTS, ...facts }).map((w) => `${w.code} ${w.ruleId ?? "-"}`).toSorted();
  assert.deepEqual(
    codes(
      policy({
        default: "deny",
        allow: [{ id: "g", host: "*.google" }, { id: "ok", host: "api.example.com" }],
      }),
    ),
    ["doh-allowed g"],
  );
  assert.deepEqual(
    codes(
      policy({
        default: "deny",
        allow: [{ id: "cf", cidr: "1.1.1.0/24" }, { id: "dot", cidr: "10.0.0.0/8", port: 853 }],
      }),
    ),
    ["doh-allowed cf", "doh-allowed dot"],
  );
  assert.deepEqual(
    codes(policy({ default: "deny", allow: [{ id: "g", host: "dns.google", port: 53 }] })),
    [],
  );
});

Deno.test("lintPolicy() warns about a scope with rules by name that reaches no resolver", () => {
  const locate = () => ({ file: "p.yaml" });
  const p = policy({
    deny: [{ id: "dns", cidr: "10.0.0.53/32" }],
    allow: [{ id: "api", host: "api.example.com" }],
  });
  const warnings = lintPolicy(p, locate, { ...FACTS, resolvers: ["10.0.0.53"] });
  assert.deepEqual(warnings.map((w) => `${w.code} ${w.ruleId}`).toSorted(), [
    "dns-unallowed api",
    "resolver-denied dns",
  ]);
  assert.deepEqual(
    lintPolicy(p, locate, { ...FACTS, resolvers: ["10.0.0.53", "10.0.0.54"] }).map((w) => w.code),
    [
      "resolver-denied",
    ],
  );
});

Deno.test("decide() takes the most specific pattern: the name itself over a wildcard, the longest wildcard", () => {
  const plan = compilePolicy(policy({
    deny: [{ id: "zone", host: "*.example.com" }, { id: "deep", host: "*.internal.example.com" }],
    allow: [{ id: "api", host: "api.example.com" }, {
      id: "db",
      host: "db.internal.example.com",
      port: 5432,
    }],
  }));
  const at = (host: string) => [{ addr: "198.51.100.1", host }];
  assert.equal(who(plan, "198.51.100.1", 443, at("api.example.com")), "allow");
  assert.equal(who(plan, "198.51.100.1", 443, at("www.example.com")), "zone");
  assert.equal(who(plan, "198.51.100.1", 443, at("x.internal.example.com")), "deep");
  assert.equal(who(plan, "198.51.100.1", 5432, at("db.internal.example.com")), "allow");
  assert.equal(
    who(plan, "198.51.100.1", 22, at("db.internal.example.com")),
    "allow",
    "the name's own rules decide, and none matches port 22: no rule, not the wildcard",
  );
});

Deno.test("decide() takes a rule by name with exe for its program only, ranked as CIDR rules of subjects", () => {
  const learned = [{ addr: "10.1.2.3", host: "api.example.com" }];
  const plan = compilePolicy(policy({
    default: "deny",
    deny: [{ id: "curl-wide", cidr: "10.0.0.0/8", exe: "/usr/bin/curl" }, {
      id: "all",
      host: "api.example.com",
    }],
    allow: [
      { id: "curl-api", host: "api.example.com", exe: "/usr/bin/curl" },
      { id: "launched-api", host: "api.example.com", port: 443, exe: "/usr/bin/launcher", children: true },
    ],
  }));
  const as = (exe: string, port = 80, ancestors: string[] = [exe]) => {
    const result = decide(plan, {
      area: "egress",
      addr: "10.1.2.3",
      port,
      protocol: "tcp",
      exe,
      ancestors,
    }, { learned });
    return result.decision === "allow" ? "allow" : result.ruleName;
  };
  assert.equal(as("/usr/bin/curl"), "allow", "curl's own rule by name beats the same rule without exe");
  assert.equal(as("/usr/bin/wget"), "all", "another program: the rule naming no program");
  assert.equal(
    as("/usr/bin/wget", 443, ["/usr/bin/wget", "/usr/bin/launcher"]),
    "allow",
    "a child, port 443",
  );
  assert.equal(as("/usr/bin/wget", 80, ["/usr/bin/wget", "/usr/bin/launcher"]), "all", "not its port");
  assert.equal(as("/usr/bin/curl", 80), "allow", "the name beats curl's own wider CIDR rule");
  const udp = decide(plan, {
    area: "egress",
    addr: "10.1.2.3",
    port: 80,
    protocol: "udp",
    exe: "/usr/bin/curl",
  }, {
    learned,
  });
  assert.equal(udp.decision, "allow");
  // The address's own /32 beats the name, whichever program either names.
  const own = compilePolicy(policy({
    deny: [{ id: "own", cidr: "10.1.2.3/32" }],
    allow: [{ id: "curl-api", host: "api.example.com", exe: "/usr/bin/curl" }],
  }));
  const result = decide(own, {
    area: "egress",
    addr: "10.1.2.3",
    port: 80,
    protocol: "tcp",
    exe: "/usr/bin/curl",
  }, {
    learned,
  });
  assert.equal(result.ruleName, "own");
});
