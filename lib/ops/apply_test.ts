import assert from "node:assert/strict";
import { applyInputOf, deniesNewCidr, egressWidened } from "./apply.ts";
import { Random } from "../policy/random_policy.ts";
import { checkInput } from "./apply_source.ts";
import { policySha256 } from "../policy/digest.ts";
import type { Policy } from "../policy/schema.ts";

const policy = (spec: Record<string, unknown>) =>
  ({ apiVersion: "aegisbpf.io/v1", kind: "Policy", metadata: { name: "p", version: 1 }, spec }) as Policy;
const egress = (rules: Record<string, unknown>, mode = "enforce", scope?: object) =>
  policy({ mode, ...scope && { scope }, network: { egress: rules } });

const base = egress({
  deny: [{ id: "a", cidr: "10.0.0.0/8" }, { cidr: "192.0.2.1/32", port: 443, protocol: "tcp" }],
  allow: [{ cidr: "10.1.0.0/16" }],
  users: [{ uid: 1000, denyPorts: [25] }],
});

Deno.test("egressWidened() is false for the same rules, ids and order aside, and for removed denies", () => {
  const same = egress({
    deny: [{ cidr: "192.0.2.1/32", protocol: "tcp", port: 443 }, { id: "renamed", cidr: "10.0.0.0/8" }],
    allow: [{ cidr: "10.1.0.0/16" }],
    users: [{ uid: 1000, denyPorts: [25] }],
  });
  assert.equal(egressWidened(base, same), false);
  assert.equal(
    egressWidened(base, egress({ deny: [{ cidr: "10.0.0.0/8" }], allow: [{ cidr: "10.1.0.0/16" }] })),
    false,
  );
  // The policy in force as read back from its text, without the schema's defaults.
  const text = JSON.parse(
    JSON.stringify({ spec: { network: { egress: { deny: [{ cidr: "10.0.0.0/8" }] } } } }),
  );
  assert.equal(egressWidened(text, egress({ deny: [{ cidr: "10.0.0.0/8" }] }, "audit")), false);
});

Deno.test("egressWidened() is true for an added deny or users entry, a dropped allow, and a changed setting", () => {
  const deny = [{ cidr: "10.0.0.0/8" }, { cidr: "192.0.2.1/32", port: 443, protocol: "tcp" }];
  const allow = [{ cidr: "10.1.0.0/16" }];
  const users = [{ uid: 1000, denyPorts: [25] }];
  assert.equal(
    egressWidened(base, egress({ deny: [...deny, { cidr: "192.0.2.2/32" }], allow, users })),
    true,
  );
  assert.equal(
    egressWidened(base, egress({ deny: [deny[0], { ...deny[1], port: 80 }], allow, users })),
    true,
  );
  assert.equal(
    egressWidened(base, egress({ deny, allow, users: [...users, { gid: 5, allowPorts: [] }] })),
    true,
  );
  assert.equal(egressWidened(base, egress({ deny, users })), true);
  assert.equal(egressWidened(base, egress({ deny, allow, users }, "audit")), true);
  assert.equal(egressWidened(base, egress({ deny, allow, users }, "enforce", { cgroups: ["/a"] })), true);
  assert.equal(egressWidened(base, egress({ deny, allow, users, denyPacketSockets: true })), true);
  assert.equal(egressWidened(base, egress({ deny, allow, users, default: "deny" })), true, "an allowlist");
  const curlOnly = egress({ deny: [{ cidr: "10.0.0.0/8", exe: "/usr/bin/curl" }] });
  assert.equal(egressWidened(curlOnly, egress({ deny: [{ cidr: "10.0.0.0/8" }] })), true, "exe dropped");
  assert.equal(egressWidened(undefined, base), true);
  assert.equal(egressWidened({ spec: { network: { egress: { deny: "x" } } } }, base), true);
});

Deno.test("egressWidened() finds one rule added, moved or removed anywhere in a long list", () => {
  const deny = Array.from({ length: 1000 }, (_, i) => ({ cidr: `10.${i >> 8}.${i & 255}.0/24` }));
  const before = egress({ deny });
  const without = (i: number) => deny.filter((_, j) => j !== i);
  assert.equal(egressWidened(before, egress({ deny: without(500) })), false);
  assert.equal(egressWidened(before, egress({ deny: [...without(0), deny[0]] })), false);
  assert.equal(egressWidened(before, egress({ deny: [...deny, deny[999]] })), false);
  assert.equal(egressWidened(before, egress({ deny: [...deny, { cidr: "192.0.2.0/24" }] })), true);
  assert.equal(egressWidened(before, egress({ deny: [{ cidr: "192.0.2.0/24" }, ...deny] })), true);
  assert.equal(egressWidened(before, egress({ deny: [...without(7), { cidr: "192.0.2.0/24" }] })), true);
});

Deno.test("applyInputOf() hands history a plain policy's digest as its content's, and a bundle's none", () => {
  const text =
    '{"apiVersion":"aegisbpf.io/v1","kind":"Policy","metadata":{"name":"p","version":1},"spec":{}}\n';
  const bytes = new TextEncoder().encode(text);
  const options = { configDir: "/nonexistent", stateDir: "/nonexistent", requireSignature: false };
  const input = applyInputOf(checkInput({ source: "p.json", text, bytes }, options));
  assert.equal(input.sha256, policySha256(text));
  assert.equal(input.contentSha256, policySha256(bytes));
  const bundle = applyInputOf({ ...checkInput({ source: "p.json", text, bytes }, options), kind: "bundle" });
  assert.equal(bundle.contentSha256, undefined);
});

Deno.test("deniesNewCidr() finds a deny added in the text alone, and nothing where none is", () => {
  const deny = Array.from({ length: 200 }, (_, i) => ({ cidr: `10.0.${i >> 8}.${i & 255}/32` }));
  const before = JSON.stringify(egress({ deny }));
  const added = egress({ deny: [...deny, { cidr: "192.0.2.7/32" }] });
  assert.equal(deniesNewCidr(before, JSON.stringify(added), added), true);
  const removed = egress({ deny: deny.slice(1) });
  assert.equal(deniesNewCidr(before, JSON.stringify(removed), removed), false);
  const ported = egress({ deny: [{ ...deny[0]!, port: 443 }, ...deny.slice(1)] });
  assert.equal(deniesNewCidr(before, JSON.stringify(ported), ported), false);
  // A text in force with escapes could hold the CIDR escaped: no answer from the text.
  const escaped = before.replace("10.0.0.0/32", "10.0.0.0\\u002f32");
  assert.equal(deniesNewCidr(escaped, JSON.stringify(added), added), false);
});

Deno.test("deniesNewCidr() says true only where egressWidened() does, on random changes to a policy", () => {
  const random = new Random(18);
  const cidr = () =>
    random.chance(0.2)
      ? `2001:db8::${random.int(300).toString(16)}/128`
      : `10.${random.int(3)}.${random.int(4)}.${random.int(40)}/32`;
  const rule = () => ({
    cidr: cidr(),
    ...random.chance(0.2) && { port: 1 + random.int(3) },
    ...random.chance(0.1) && { protocol: random.pick(["tcp", "udp"]) },
  });
  let found = 0;
  for (let round = 0; round < 500; round++) {
    const deny = Array.from({ length: random.int(30) }, rule);
    const allow = Array.from({ length: random.int(3) }, rule);
    const before = egress({ deny, allow }, random.pick(["audit", "enforce"]));
    const next = structuredClone(deny);
    for (let edits = 1 + random.int(3); edits > 0; edits--) {
      const at = random.int(next.length + 1);
      const edit = random.int(4);
      if (edit === 0) next.splice(at, 0, rule());
      else if (edit === 1) next.splice(at, 1);
      else if (edit === 2 && next[at]) next[at] = { ...next[at]!, port: 1 + random.int(3) };
      else next.reverse();
    }
    const after = egress({ deny: next, allow }, random.chance(0.9) ? before.spec.mode : "audit");
    const beforeText = JSON.stringify(before, null, random.int(3));
    if (deniesNewCidr(beforeText, JSON.stringify(after, null, random.int(3)), after)) {
      found++;
      assert.equal(egressWidened(JSON.parse(beforeText), after), true, beforeText);
    }
  }
  assert.ok(found > 50, `the witness was found ${found} times: the changes miss the case`);
});

Deno.test("egressWidened() tells rules by name apart by their host: a new name's deny sweeps", () => {
  const named = egress({ deny: [{ host: "a.example.com" }], allow: [{ host: "b.example.com", port: 443 }] });
  assert.equal(
    egressWidened(
      named,
      egress({ deny: [{ host: "a.example.com" }], allow: [{ host: "b.example.com", port: 443 }] }),
    ),
    false,
  );
  assert.equal(
    egressWidened(named, egress({ deny: [{ host: "c.example.com" }], allow: [] })),
    true,
    "a new deny",
  );
  assert.equal(
    egressWidened(
      named,
      egress({ deny: [{ host: "a.example.com" }], allow: [{ host: "c.example.com", port: 443 }] }),
    ),
    true,
    "an allow dropped",
  );
});
