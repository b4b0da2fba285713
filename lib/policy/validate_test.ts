import assert from "node:assert/strict";
import { policySchema } from "./schema.ts";
import { validatePolicy } from "./validate.ts";
import { Random, randomPolicy } from "./random_policy.ts";

/** The same result as zod, down to the order of keys and the wording and order of every issue. */
function assertSameAsZod(value: unknown, context: string): void {
  const fast = validatePolicy(structuredClone(value), { reportInput: true });
  const zod = policySchema.safeParse(structuredClone(value), { reportInput: true });
  assert.equal(fast.success, zod.success, context);
  if (zod.success) assert.equal(JSON.stringify(fast.data), JSON.stringify(zod.data), context);
  else assert.equal(JSON.stringify(fast.error?.issues), JSON.stringify(zod.error.issues), context);
}

/** A random policy as a document reads: rules' keys in a random order, as a file may write them. */
function randomDocument(seed: number): Record<string, unknown> {
  const policy = randomPolicy(seed, {
    paths: ["/etc/shadow", "/usr/bin/nc", "/tmp/x", "/srv"],
    interfaces: ["eth0", "eth1"],
    cgroups: ["/a", "/b"],
  });
  const random = new Random(seed ^ 0x5eed);
  return JSON.parse(JSON.stringify(policy), (_key, value) => {
    if (typeof value !== "object" || value === null || Array.isArray(value)) return value;
    const entries = Object.entries(value);
    for (let i = entries.length - 1; i > 0; i--) {
      const j = random.int(i + 1);
      [entries[i], entries[j]] = [entries[j]!, entries[i]!];
    }
    return Object.fromEntries(entries);
  });
}

/** Rule lists a mutation may pick a rule from. */
const LISTS = [
  ["files", "deny"],
  ["exec", "deny"],
  ["files", "protect"],
  ["network", "egress", "deny"],
  ["network", "egress", "allow"],
  ["network", "ingress", "allow"],
  ["network", "ingress", "deny"],
  ["network", "egress", "users"],
];

/** Ways a rule can be wrong (or right in an unusual way): each must be decided as zod decides it. */
const MUTATIONS: ((rule: Record<string, unknown>, random: Random) => void)[] = [
  (rule) => rule.extra = 1,
  (rule) => rule.id = "default",
  (rule) => rule.id = "r0",
  (rule) => rule.id = "bad id",
  (rule) => rule.id = 7,
  (rule) => rule.id = "network.ingress.failsafe",
  (rule) => rule.cidr = "10.1.2.3/8",
  (rule) => rule.cidr = "10.0.0.0/33",
  (rule) => rule.cidr = "2001:db8::/32",
  (rule) => rule.cidr = " 10.0.0.0/8",
  (rule) => rule.cidr = 10,
  (rule) => rule.port = 0,
  (rule) => rule.port = 65536,
  (rule) => rule.port = 80.5,
  (rule) => rule.port = "80",
  (rule) => rule.ports = [80, 80],
  (rule) => rule.ports = [],
  (rule) => rule.ports = [22, 443],
  (rule) => rule.protocol = "icmp",
  (rule) => rule.path = "relative/path",
  (rule) => rule.path = "/etc/../shadow",
  (rule) => rule.recursive = "yes",
  (rule) => rule.optional = true,
  (rule) => rule.maxFiles = 10,
  (rule) => Object.assign(rule, { recursive: true, maxFiles: 10 }),
  (rule) => Object.assign(rule, { recursive: true, maxFiles: 0 }),
  (rule) => delete rule.cidr,
  (rule) => delete rule.path,
  (rule, random) => rule[random.pick(Object.keys(rule).concat("x"))] = null,
];

Deno.test("validatePolicy() decides every random policy exactly as the zod schema does", () => {
  for (let seed = 1; seed <= 300; seed++) assertSameAsZod(randomDocument(seed), `seed ${seed}`);
});

Deno.test("validatePolicy() reports every broken rule exactly as the zod schema does", () => {
  for (let seed = 1; seed <= 1500; seed++) {
    const document = randomDocument(seed);
    const random = new Random(seed);
    const spec = document.spec as Record<string, unknown>;
    for (let n = 1 + random.int(2); n > 0; n--) {
      let list: unknown = spec;
      for (const key of random.pick(LISTS)) list = (list as Record<string, unknown> | undefined)?.[key];
      if (!Array.isArray(list) || list.length === 0) continue;
      const rule = list[random.int(list.length)] as Record<string, unknown>;
      random.pick(MUTATIONS)(rule, random);
    }
    assertSameAsZod(document, `seed ${seed}`);
  }
});

Deno.test("validatePolicy() reports a document that is not a policy exactly as the zod schema does", () => {
  const valid = randomDocument(7);
  for (
    const value of [
      null,
      [],
      "text",
      {},
      { ...valid, spec: null },
      { ...valid, spec: { network: { egress: { deny: "10.0.0.0/8" } } } },
      { ...valid, metadata: { name: "x" } },
      { ...valid, extra: true },
    ]
  ) assertSameAsZod(value, JSON.stringify(value));
});

Deno.test("validatePolicy() leaves the document it is given untouched", () => {
  const document = randomDocument(11);
  const before = JSON.stringify(document);
  validatePolicy(document);
  assert.equal(JSON.stringify(document), before);
});

Deno.test("validatePolicy() decides egress entries that name a program as zod does", () => {
  const base = { apiVersion: "aegisbpf.io/v1", kind: "Policy", metadata: { name: "t", version: 1 } };
  const entries: unknown[] = [
    { cidr: "10.0.0.0/8", exe: "/usr/bin/curl" },
    { exe: "/usr/bin/curl", cidr: "10.0.0.0/8", children: true },
    { cidr: "10.0.0.0/8", ports: [443, 80], exe: "/usr/bin/curl", optional: true },
    { cidr: "10.0.0.0/8", exe: "usr/bin/curl" },
    { cidr: "10.0.0.0/8", children: true },
    { cidr: "10.0.0.0/8", exe: "/a", children: "yes" },
    { exe: "/a" },
  ];
  for (const entry of entries) {
    for (const list of ["allow", "deny"]) {
      const value = { ...base, spec: { network: { egress: { [list]: [entry] } } } };
      assertSameAsZod(value, `${list}: ${JSON.stringify(entry)}`);
    }
  }
});
