import assert from "node:assert/strict";
import { type LintFacts, lintPolicy } from "./lint.ts";
import { parsePolicy, parsePolicySource } from "./parse.ts";
import { Random } from "./random_policy.ts";
import { type Policy, policyRules } from "./schema.ts";
import { commentText, type SuggestHost, suggestPolicy } from "./suggest.ts";

/** A host where even inodes of a name are found in /usr/bin, programs by inode in /usr/bin/pN. */
const HOST: SuggestHost = {
  resolveFile: (name, _dev, ino) =>
    ino % 2 === 0 && /^[a-z0-9.-]+$/.test(name) ? `/usr/bin/${name}` : undefined,
  resolveProgram: (_dev, ino) => ino % 3 === 0 ? undefined : `/usr/bin/p${ino % 5}`,
  exists: (path) => !path.includes("missing"),
};

const FACTS: Omit<LintFacts, "paths"> = {
  resolvers: ["10.0.0.53", "2001:db8::53"],
  sshPorts: [22],
  sshClient: { addr: "192.0.2.7", port: 22 },
  survival: [],
  now: new Date("2026-06-01T00:00:00Z"),
};

/** Every path and program of `policy` as existing (suggest names only paths that exist here). */
function lintOf(policy: Policy) {
  const paths = new Map<string, { realPath: string; identity: string }>();
  for (const { rule } of policyRules(policy)) {
    for (const path of ["path" in rule ? rule.path : undefined, "exe" in rule ? rule.exe : undefined]) {
      if (path !== undefined) paths.set(path, { realPath: path, identity: path });
    }
  }
  const source = parsePolicySource(JSON.stringify(policy), "p.json");
  return lintPolicy(source.policy, source.locate, { ...FACTS, paths });
}

const SUGGESTED_CODES = new Set(["duplicate", "shadowed", "no-effect", "missing-path"]);

function flagged(policy: Policy): ReadonlySet<string> {
  return new Set(lintOf(policy).filter((w) => SUGGESTED_CODES.has(w.code)).map((w) => w.ruleId ?? ""));
}

const OPTIONS = { flagged, reachable: { resolvers: FACTS.resolvers, sshPeer: FACTS.sshClient!.addr } };

function line(fields: Record<string, unknown>): string {
  return JSON.stringify({
    ts: "2026-05-01T10:00:00.000000001Z",
    host: "h1",
    decision: "audit",
    mode: "audit",
    count: 1,
    process: { pid: 10, ppid: 1, uid: 0, gid: 0, comm: "curl", cgroup: { id: 1 } },
    ...fields,
  });
}

Deno.test("suggestPolicy() allows what the audit events show, with a comment per rule", () => {
  const log = [
    line({
      type: "exec",
      rule: "exec.default",
      reason: "untrusted",
      file: { name: "backup", dev: 1, ino: 4 },
    }),
    line({
      ts: "2026-05-01T11:00:00.000000001Z",
      type: "exec",
      rule: "exec.default",
      reason: "untrusted",
      file: { name: "backup", dev: 1, ino: 4 },
      count: 4,
    }),
    line({ type: "exec", rule: "exec.default", reason: "untrusted", file: { name: "gone", dev: 1, ino: 5 } }),
    line({
      type: "net.connect",
      rule: "network.egress.default",
      net: { family: "ipv4", protocol: "tcp", daddr: "203.0.113.9", dport: 443, hostName: "api.example.com" },
    }),
    line({
      type: "file.write",
      rule: "files.protect[0]",
      process: { pid: 7, uid: 0, comm: "dpkg", exe: { dev: 1, ino: 8, path: "/usr/bin/dpkg" } },
      file: { dev: 1, ino: 99 },
    }),
    line({ type: "net.bind", rule: "no-bind", net: { family: "ipv4", protocol: "tcp", sport: 8080 } }),
    line({ type: "exec", rule: "exec.default", decision: "deny", file: { name: "x", dev: 1, ino: 2 } }),
    "not json",
    line({ type: "agent.started" }),
  ].join("\n");
  const result = suggestPolicy(log, HOST, OPTIONS);
  const policy = parsePolicy(result.text, "out.yaml");
  assert.deepEqual(policy.spec.exec?.allow, [{ path: "/usr/bin/backup" }]);
  assert.equal(policy.spec.exec?.default, "deny");
  assert.deepEqual(policy.spec.files?.writers, [{ exe: "/usr/bin/dpkg" }]);
  // The kernel knew the address by a name: the allow is by that name, though the candidate names a program
  // (dpkg, a writer): rules by name and by program share a policy.
  assert.deepEqual(policy.spec.network?.egress?.allow?.[0], {
    host: "api.example.com",
    port: 443,
    protocol: "tcp",
  });
  // The lock-out check's addresses, since suggest turned the egress default to deny.
  assert.deepEqual(policy.spec.network?.egress?.allow?.slice(1).map((rule) => rule.cidr), [
    "10.0.0.53/32",
    "2001:db8::53/128",
    "192.0.2.7/32",
  ]);
  assert.match(
    result.text,
    /# suggested: 5 would-deny, first 2026-05-01T10:00:00.000000001Z, last 2026-05-01T11:00:00.000000001Z; e\.g\. comm "curl", pid 10, uid 0\n\s+- path: \/usr\/bin\/backup/,
  );
  assert.match(result.text, /seen as api\.example\.com; at 203\.0\.113\.9\n\s+- host: api\.example\.com/);
  assert.equal(result.notes.length, 2, result.notes.join("\n"));
  assert.match(result.notes.join("\n"), /"gone": not found on this host/);
  assert.match(result.notes.join("\n"), /net\.bind refused by rule "no-bind": there is no bind allow list/);
  assert.equal(lintOf(policy).filter((w) => w.severity === "error").length, 0);
});

Deno.test("suggestPolicy() adds to a policy given, leaving out what it already allows", () => {
  const base = parsePolicy(
    "apiVersion: aegisbpf.io/v1\nkind: Policy\nmetadata: { name: web, version: 3 }\nspec:\n  mode: audit\n" +
      "  exec:\n    default: deny\n    allow: [{ path: /usr/bin/backup }]\n",
    "base.yaml",
  );
  const log = [
    line({ type: "exec", rule: "exec.default", file: { name: "backup", dev: 1, ino: 4 } }),
    line({ type: "exec", rule: "exec.default", file: { name: "tar", dev: 1, ino: 6 } }),
  ].join("\n");
  const result = suggestPolicy(log, HOST, { ...OPTIONS, base });
  const policy = parsePolicy(result.text, "out.yaml");
  assert.equal(policy.metadata.name, "web");
  assert.equal(policy.metadata.version, 4, "a new version for a changed policy");
  assert.deepEqual(policy.spec.exec?.allow, [{ path: "/usr/bin/backup" }, { path: "/usr/bin/tar" }]);
  assert.equal(result.suggested.exec, 1);
});

Deno.test("suggestPolicy() takes only events since --since", () => {
  const log = [
    line({
      ts: "2026-04-01T00:00:00Z",
      type: "exec",
      rule: "exec.default",
      file: { name: "old", dev: 1, ino: 2 },
    }),
    line({
      ts: "2026-05-02T00:00:00Z",
      type: "exec",
      rule: "exec.default",
      file: { name: "new", dev: 1, ino: 2 },
    }),
  ].join("\n");
  const result = suggestPolicy(log, HOST, { since: new Date("2026-05-01T00:00:00Z") });
  assert.deepEqual(result.policy.spec.exec?.allow, [{ path: "/usr/bin/new" }]);
});

Deno.test("commentText() keeps a comment on one line whatever the text holds", () => {
  for (const text of ["a\nb", "a\rb", "a\u2028b", "a\u0085b", "\u001b[31m", "a\\nb", "é"]) {
    const out = commentText(text);
    assert.match(out, /^[\x20-\x7e]*$/, JSON.stringify(text));
  }
  assert.equal(commentText("a\nb"), "a\\nb");
  assert.notEqual(commentText("a\\nb"), commentText("a\nb"));
});

const NASTY = [
  "curl",
  "a\nspec:\n  mode: enforce",
  "x\r# y",
  "\u2028\u2029\u0085",
  "\u001b]0;title\u0007",
  "'\"{}[]:#&*!|>%@`",
  "",
  "\ud800",
  "x".repeat(5000),
];

function randomEvent(random: Random): unknown {
  const pick = <T>(items: readonly T[]) => random.pick(items);
  const maybe = <T>(value: T) => random.chance(0.85) ? value : undefined;
  const type = pick([
    "exec",
    "net.connect",
    "net.sendmsg",
    "net.packet",
    "file.write",
    "net.bind",
    "file.open",
    "agent.x",
    7,
  ]);
  const rule = pick([
    "exec.default",
    "network.egress.default",
    "files.protect[0]",
    "no-nc",
    pick(NASTY),
    undefined,
  ]);
  const event: Record<string, unknown> = {
    ts: maybe(
      pick([`2026-05-0${1 + random.int(9)}T0${random.int(10)}:00:00.${random.int(1e9)}Z`, "yesterday", 5]),
    ),
    host: maybe(pick(["h1", "h2"])),
    type,
    decision: pick(["audit", "audit", "audit", "deny", undefined]),
    rule,
    count: maybe(pick([1, 3, 2 ** 53 - 1, 1e300, -4, 0, "9"])),
    summary: random.chance(0.05) ? true : undefined,
    process: maybe({
      pid: maybe(random.int(1 << 22)),
      uid: maybe(random.int(70000)),
      comm: maybe(pick(NASTY)),
      exe: maybe({
        dev: maybe(random.int(5)),
        ino: maybe(random.int(40)),
        path: random.chance(0.3)
          ? pick(["/usr/bin/dpkg", "/opt/missing/x", "relative", pick(NASTY)])
          : undefined,
      }),
    }),
    file: maybe({
      path: random.chance(0.2) ? pick(["/usr/local/bin/tool", "/missing/x", pick(NASTY)]) : undefined,
      name: maybe(pick(["tar", "backup", "py3", ...NASTY])),
      dev: maybe(random.int(5)),
      ino: maybe(random.int(40)),
    }),
    net: maybe({
      family: "ipv4",
      protocol: maybe(pick(["tcp", "udp", "icmp", "raw"])),
      daddr: maybe(
        pick([
          "203.0.113.9",
          "10.0.0.53",
          "192.0.2.7",
          "2001:db8::1",
          "::ffff:10.1.2.3",
          "300.1.1.1",
          pick(NASTY),
        ]),
      ),
      dport: maybe(pick([443, 53, 80, 0, 70000, 22])),
      hostName: random.chance(0.3) ? pick(["api.example.com", ...NASTY]) : undefined,
    }),
  };
  return event;
}

Deno.test("suggestPolicy() output validates, lints clean and round-trips for random and hostile event logs", () => {
  for (let seed = 1; seed <= 150; seed++) {
    const random = new Random(seed);
    const lines: string[] = [];
    const n = random.int(60);
    for (let i = 0; i < n; i++) {
      lines.push(
        random.chance(0.05)
          ? pick(random, ["{", "[]", "null", '"x"', '{"type":'])
          : JSON.stringify(randomEvent(random)),
      );
    }
    const result = suggestPolicy(lines.join(random.chance(0.5) ? "\n" : "\r\n"), HOST, OPTIONS);
    const context = `seed ${seed}`;
    const policy = parsePolicy(result.text, "out.yaml");
    // A comment broke out of its line: the document would differ from the policy suggest built.
    assert.deepEqual(policy, parsePolicy(JSON.stringify(result.policy), "out.json"), context);
    const findings = lintOf(policy);
    const errors = findings.filter((w) => w.severity === "error");
    assert.deepEqual(errors.map((w) => w.message), [], context);
    const onSuggested = findings.filter((w) => SUGGESTED_CODES.has(w.code));
    assert.deepEqual(onSuggested.map((w) => w.message), [], context);
    for (const textLine of result.text.split("\n")) {
      const trimmed = textLine.trimStart();
      if (trimmed.includes("#")) assert.ok(trimmed.startsWith("#") || !/[^\x20-\x7e]/.test(trimmed), context);
    }
    // Deterministic: the same log gives the same text.
    assert.equal(
      suggestPolicy(lines.join("\n"), HOST, OPTIONS).text,
      suggestPolicy(lines.join("\n"), HOST, OPTIONS).text,
    );
  }
});

function pick<T>(random: Random, items: readonly T[]): T {
  return random.pick(items);
}

Deno.test("suggestPolicy() keeps lint's survival set runnable when it turns exec.default to deny, and only then", () => {
  const log = line({ type: "exec", rule: "exec.default", file: { name: "tar", dev: 1, ino: 6 } });
  const runnable = [{ path: "/usr/bin/bash", why: "a login shell\nspec:" }, {
    path: "/usr/bin/tar",
    why: "x",
  }];
  const fresh = suggestPolicy(log, HOST, { runnable });
  assert.deepEqual(fresh.policy.spec.exec?.allow, [{ path: "/usr/bin/tar" }, { path: "/usr/bin/bash" }]);
  assert.match(fresh.text, /# kept runnable: a login shell\\nspec: \(lint's lock-out check\)\n/);
  const base = parsePolicy(
    "apiVersion: aegisbpf.io/v1\nkind: Policy\nmetadata: { name: b, version: 1 }\nspec:\n  exec: { default: deny }\n",
    "b.yaml",
  );
  const added = suggestPolicy(log, HOST, { runnable, base });
  assert.deepEqual(added.policy.spec.exec?.allow, [{ path: "/usr/bin/tar" }]);
});

Deno.test("suggestPolicy() allows by host name where the kernel knew the address by one (and by address where not)", () => {
  const connect = (daddr: string, hostName?: string) =>
    line({
      type: "net.connect",
      rule: "network.egress.default",
      net: { family: "ipv4", protocol: "tcp", daddr, dport: 443, ...hostName && { hostName } },
    });
  const log = [
    connect("203.0.113.9", "API.Example.com."),
    connect("203.0.113.10", "api.example.com"),
    connect("198.51.100.7"),
    connect("198.51.100.8", "*.example.com"),
  ].join("\n");
  const result = suggestPolicy(log, HOST, OPTIONS);
  const policy = parsePolicy(result.text, "out.yaml");
  const allow = policy.spec.network?.egress?.allow ?? [];
  // One rule for the name (both addresses it was seen at in its comment), one per address seen without one;
  // a pattern is no name an answer gives: by address.
  assert.deepEqual(allow.slice(0, 3), [
    { cidr: "198.51.100.7/32", port: 443, protocol: "tcp" },
    { cidr: "198.51.100.8/32", port: 443, protocol: "tcp" },
    { host: "api.example.com", port: 443, protocol: "tcp" },
  ]);
  assert.match(result.text, /; at 203\.0\.113\.10, 203\.0\.113\.9\n\s+- host: api\.example\.com/);
});
