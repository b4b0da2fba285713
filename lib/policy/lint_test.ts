import assert from "node:assert/strict";
import { minimal } from "./_testdata.ts";
import { dpkgOwners } from "./facts.ts";
import { type LintFacts, lintPolicy, lockoutRisks, type Warning } from "./lint.ts";
import { parsePolicySource } from "./parse.ts";

const FACTS: LintFacts = {
  resolvers: [],
  sshPorts: [22],
  survival: [],
  paths: new Map(),
  now: new Date("2026-06-01T00:00:00Z"),
};

function lint(spec: string, facts: Partial<LintFacts> = {}): Warning[] {
  const source = parsePolicySource(minimal(spec), "p.yaml");
  return lintPolicy(source.policy, source.locate, { ...FACTS, ...facts });
}

/** Findings as "CODE RULE LINE:COL". */
function summary(warnings: Warning[]): string[] {
  return warnings.map((w) => `${w.code} ${w.ruleId ?? "-"} ${w.position.line}:${w.position.column}`);
}

const egress = (rules: string) => `  network:\n    egress:\n${rules}`;

Deno.test("lintPolicy() finds nothing wrong in a sound policy", () => {
  assert.deepEqual(lint(egress("      deny: [{ id: imds, cidr: 169.254.169.254 }]\n")), []);
});

Deno.test("lintPolicy() reports a rule that repeats an earlier one, at the repeat", () => {
  const warnings = lint(
    egress("      deny:\n        - { id: a, cidr: 10.0.0.0/8 }\n        - { id: b, cidr: 10.0.0.0/8 }\n"),
  );
  assert.deepEqual(summary(warnings), ["duplicate b 11:11"]);
  assert.equal(warnings[0]?.message, "p.yaml:11:11: rule b: repeats a: same network, ports and protocol");
  assert.equal(warnings[0]?.severity, "warning");
});

Deno.test("lintPolicy() reports an allow that loses an exact tie to a deny", () => {
  const warnings = lint(
    egress(
      "      deny: [{ id: d, cidr: 10.0.0.0/8, port: 22 }]\n      allow: [{ id: a, cidr: 10.0.0.0/8, port: 22 }]\n",
    ),
  );
  assert.deepEqual(summary(warnings), ["shadowed a 10:15"]);
  assert.match(warnings[0]!.message, /deny wins a tie$/);
});

Deno.test("lintPolicy() reports a rule that more specific rules override everywhere", () => {
  const halves =
    "      allow:\n        - { id: lo, cidr: 10.1.2.0/25 }\n        - { id: hi, cidr: 10.1.2.128/25 }\n";
  const warnings = lint(
    egress(`      deny: [{ id: wide, cidr: 10.1.2.0/24, port: 22, protocol: tcp }]\n${halves}`),
  );
  assert.deepEqual(summary(warnings), ["shadowed wide 9:14"]);
  assert.match(warnings[0]!.message, /more specific rules \(lo, hi\) cover everything it matches$/);
  const half = lint(
    egress("      deny: [{ id: wide, cidr: 10.1.2.0/24 }]\n      allow: [{ id: lo, cidr: 10.1.2.0/25 }]\n"),
  );
  assert.deepEqual(half, [], "half a network is not everything");
  const portOnly = lint(
    egress(
      "      deny: [{ id: wide, cidr: 10.1.2.0/24 }]\n      allow:\n        - { id: lo, cidr: 10.1.2.0/25, port: 22 }\n        - { id: hi, cidr: 10.1.2.128/25 }\n",
    ),
  );
  assert.deepEqual(portOnly, [], "a port rule does not cover other ports");
});

Deno.test("lintPolicy() reports an allow with no less specific deny to carve from", () => {
  assert.deepEqual(summary(lint(egress("      allow: [{ id: a, cidr: 10.0.0.0/8 }]\n"))), [
    "no-effect a 9:15",
  ]);
  const carved = egress(
    "      deny: [{ cidr: 10.0.0.0/8 }]\n      allow: [{ id: a, cidr: 10.1.0.0/16, port: 22 }]\n",
  );
  assert.deepEqual(lint(carved), []);
  const sameNetwork = egress(
    "      deny: [{ cidr: 10.0.0.0/8 }]\n      allow: [{ id: a, cidr: 10.0.0.0/8, port: 22 }]\n",
  );
  assert.deepEqual(lint(sameNetwork), [], "a port rule outranks a port-less one of the same length");
  const otherPort = egress(
    "      deny: [{ cidr: 10.0.0.0/8, port: 80 }]\n      allow: [{ id: a, cidr: 10.1.0.0/16, port: 22 }]\n",
  );
  assert.deepEqual(summary(lint(otherPort)), ["no-effect a 10:15"]);
});

Deno.test("lintPolicy() accepts ingress allows when an interface drops by default", () => {
  const spec =
    "  network:\n    ingress:\n      interfaces: [eth0]\n      default: drop\n      allow: [{ id: ssh, cidr: 10.0.0.0/8, port: 22, protocol: tcp }]\n";
  assert.deepEqual(lint(spec), []);
});

const ingress = (lines: string) => `  network:\n    ingress:\n      interfaces: [eth0]\n${lines}`;

Deno.test("lintPolicy() reports default: drop without a failsafe or allow for SSH as a lock-out", () => {
  const warnings = lint(ingress("      default: drop\n"));
  assert.deepEqual(summary(warnings), ["ssh-lockout - 10:16"]);
  assert.equal(warnings[0]?.severity, "error");
  assert.match(warnings[0]!.message, /add failsafe: \{ ports: \[22\], protocol: tcp \}$/);
  assert.deepEqual(lint(ingress("      default: drop\n      failsafe: { port: 22, protocol: tcp }\n")), []);
  assert.deepEqual(lint(ingress("      default: drop\n      allow: [{ cidr: 10.0.0.0/8, port: 22 }]\n")), []);
  assert.deepEqual(summary(lint(ingress("      default: drop\n"), { sshPorts: [2222] })), [
    "ssh-lockout - 10:16",
  ]);
});

Deno.test("lintPolicy() reports an ingress deny of SSH from everywhere as a lock-out", () => {
  const warnings = lint(ingress("      deny: [{ id: all, cidr: 0.0.0.0/0 }]\n"));
  assert.deepEqual(summary(warnings), ["ssh-lockout all 10:14"]);
  assert.deepEqual(
    lint(
      ingress("      deny: [{ id: all, cidr: 0.0.0.0/0 }]\n      failsafe: { port: 22, protocol: tcp }\n"),
    ),
    [],
  );
});

Deno.test("lintPolicy() checks the operator's own SSH connection when it knows it", () => {
  const spec = ingress("      default: drop\n      allow: [{ cidr: 10.0.0.0/8, port: 22 }]\n");
  const away = lint(spec, { sshClient: { addr: "203.0.113.7", port: 22 } });
  assert.deepEqual(summary(away), ["ssh-lockout - 10:16"]);
  assert.match(away[0]!.message, /drops your SSH connection from 203\.0\.113\.7 to port 22 on eth0/);
  assert.deepEqual(lint(spec, { sshClient: { addr: "10.9.9.9", port: 22 } }), []);
});

Deno.test("lintPolicy() warns about egress denies that cover a resolver", () => {
  const spec = egress("      deny: [{ id: dns, port: 53 }]\n");
  const warnings = lint(spec, { resolvers: ["192.0.2.53"] });
  assert.deepEqual(summary(warnings), ["resolver-denied dns 9:14"]);
  assert.match(warnings[0]!.message, /denies DNS to 192\.0\.2\.53, a resolver in \/etc\/resolv\.conf$/);
  const carved = egress("      deny: [{ id: dns, port: 53 }]\n      allow: [{ cidr: 192.0.2.53 }]\n");
  assert.deepEqual(lint(carved, { resolvers: ["192.0.2.53"] }), []);
});

const shadow = { realPath: "/etc/shadow", identity: "1:10" };
const bash = { realPath: "/usr/bin/bash", identity: "1:20" };

Deno.test("lintPolicy() reports deny paths that do not exist: an error unless optional", () => {
  const spec =
    "  files:\n    deny:\n      - { id: gone, path: /gone }\n      - { id: maybe, path: /maybe, optional: true }\n";
  const warnings = lint(spec);
  assert.deepEqual(summary(warnings), ["missing-path gone 9:9", "missing-path maybe 10:9"]);
  assert.deepEqual(warnings.map((w) => w.severity), ["error", "warning"]);
});

Deno.test("lintPolicy() reports denying the survival set by inode, by directory and inside state", () => {
  const survival = [
    { ...bash, why: "a login shell" },
    { realPath: "/var/lib/aegisbpf", identity: "1:30", why: "aegisbpf state", tree: true },
  ];
  const paths = new Map([
    ["/bin/bash", bash],
    ["/usr", { realPath: "/usr", identity: "1:2" }],
    ["/var/lib/aegisbpf/history", { realPath: "/var/lib/aegisbpf/history", identity: "1:31" }],
    ["/etc/shadow", shadow],
  ]);
  const spec = "  exec:\n    deny:\n      - { id: sh, path: /bin/bash }\n  files:\n    deny:\n" +
    "      - { id: usr, path: /usr, recursive: true }\n      - { id: state, path: /var/lib/aegisbpf/history }\n" +
    "      - { id: ok, path: /etc/shadow }\n";
  const warnings = lint(spec, { survival, paths });
  assert.deepEqual(summary(warnings), [
    "survival-set sh 9:9",
    "survival-set usr 12:9",
    "survival-set state 13:9",
  ]);
  assert.match(warnings[0]!.message, /rule sh: denies \/usr\/bin\/bash, a login shell$/);
  const source = parsePolicySource(minimal(spec), "p.yaml");
  const risks = lockoutRisks(source.policy, source.locate, { ...FACTS, survival, paths });
  assert.deepEqual(risks, warnings);
});

Deno.test("lockoutRisks() holds SSH lock-outs and survival denials, not the other findings", () => {
  const spec = ingress("      default: drop\n") + "    egress:\n      deny: [{ id: dns, port: 53 }]\n" +
    "  files:\n    deny: [{ id: gone, path: /gone }]\n";
  const source = parsePolicySource(minimal(spec), "p.yaml");
  const facts = { ...FACTS, resolvers: ["192.0.2.53"] };
  assert.deepEqual(
    summary(lintPolicy(source.policy, source.locate, facts)).map((s) => s.split(" ")[0]).sort(),
    [
      "missing-path",
      "resolver-denied",
      "ssh-lockout",
    ],
  );
  assert.deepEqual(summary(lockoutRisks(source.policy, source.locate, facts)), ["ssh-lockout - 10:16"]);
});

Deno.test("lintPolicy() warns about denyPacketSockets unless an exempt cgroup covers a DHCP client", () => {
  assert.deepEqual(summary(lint(egress("      denyPacketSockets: true\n"))), [
    "packet-sockets-unexempt - 9:26",
  ]);
  const exempt = (path: string) =>
    summary(lint(`  scope:\n    exempt: [${path}]\n${egress("      denyPacketSockets: true\n")}`));
  assert.deepEqual(exempt("/dhcp"), []);
  assert.deepEqual(exempt("/system.slice/systemd-networkd.service"), []);
  assert.deepEqual(exempt("/system.slice/NetworkManager.service"), []);
  assert.deepEqual(exempt("/system.slice/sshd.service"), ["packet-sockets-unexempt - 11:26"]);
});

Deno.test("lintPolicy() warns about an exempt cgroup inside a user's delegated subtree", () => {
  const text = `  scope:\n    exempt:\n      - /system.slice/sshd.service\n` +
    `      - /user.slice/user-1000.slice/user@1000.service/app.slice\n${
      egress("      deny: [{ cidr: 192.0.2.1 }]\n")
    }`;
  const warnings = lint(text);
  assert.deepEqual(summary(warnings), ["exempt-delegated - 10:9"]);
  assert.match(warnings[0]!.message, /inside \/user\.slice\/user-1000\.slice\/user@1000\.service, a subtree/);
});

Deno.test("lintPolicy() warns that a scope with bind and ingress rules alone has no guard against moving out", () => {
  const bind = `  scope:\n    cgroups: [/canary.slice]\n  network:\n    bind: { deny: [{ port: 8080 }] }\n`;
  assert.deepEqual(summary(lint(bind)), ["scope-unguarded - 8:5"]);
  // Egress rules load the BPF-LSM programs, the guard with them.
  const network = `  scope:\n    cgroups: [/canary.slice]\n${egress("      deny: [{ cidr: 192.0.2.1 }]\n")}`;
  assert.deepEqual(summary(lint(network)), []);
  const withFiles = `  scope:\n    cgroups: [/canary.slice]\n  exec:\n    denyMemfd: true\n`;
  assert.deepEqual(lint(withFiles), []);
});

Deno.test("lintPolicy() says when kernel.yama.ptrace_scope already covers the ptrace guard of a scope", () => {
  const scoped = `  scope:\n    cgroups: [/canary.slice]\n${egress("      deny: [{ cidr: 192.0.2.1 }]\n")}`;
  const yama = (ptraceScope: number | undefined) => {
    const facts = ptraceScope === undefined ? {} : { ptraceScope };
    return lint(scoped, facts).map((w) => `${w.code} ${w.severity} ${w.position.line}:${w.position.column}`);
  };
  assert.deepEqual(yama(undefined), [], "no Yama: nothing to say");
  assert.deepEqual(yama(0), [], "0: any process of the same uid; the guard alone covers it");
  for (const value of [1, 2, 3]) {
    assert.deepEqual(yama(value), ["ptrace-yama warning 8:5"], `ptrace_scope ${value}`);
  }
  const message = (value: number) => lint(scoped, { ptraceScope: value })[0]!.message;
  assert.match(
    message(1),
    /ptrace_scope=1 covers only non-descendants: a task in scope can still trace its own/,
  );
  assert.match(message(2), /ptrace_scope=2 already covers the ptrace guard for tasks without CAP_SYS_PTRACE/);
  assert.match(message(3), /ptrace_scope=3 already covers the ptrace guard: no task may attach/);
  const unscoped = egress("      deny: [{ cidr: 192.0.2.1 }]\n");
  assert.deepEqual(lint(unscoped, { ptraceScope: 3 }), [], "no scope: no guard to cover");
});

Deno.test("lintPolicy() warns about a policy past its notAfter", () => {
  const text = minimal().replace("version: 1", "version: 1\n  notAfter: 2026-01-01T00:00:00Z");
  const source = parsePolicySource(text, "p.yaml");
  const warnings = lintPolicy(source.policy, source.locate, FACTS);
  assert.deepEqual(summary(warnings), ["expired - 6:13"]);
});

Deno.test("lintPolicy() says when PID 1's executable could not be checked; lockoutRisks() does not refuse on it", () => {
  const spec = "  files:\n    deny: [{ id: f, path: /etc/x, optional: true }]\n";
  const unchecked = [{
    path: "/proc/1/exe",
    why: "PID 1's executable",
    error: "EACCES (permission denied)",
    remedy: "run lint and apply as root",
  }];
  const warnings = lint(spec, { unchecked });
  const found = warnings.find((w) => w.code === "survival-unchecked");
  assert.ok(found, JSON.stringify(warnings));
  assert.equal(found.severity, "warning");
  assert.equal(
    found.message,
    "p.yaml:8:12: rule f: cannot read /proc/1/exe (PID 1's executable) here: EACCES (permission denied), " +
      "so file and exec rules are not checked against it; run lint and apply as root",
  );
  assert.doesNotMatch(found.message, /CAP_/, "no guess at a missing capability");
  assert.deepEqual(lint(egress("      deny: [{ id: imds, cidr: 169.254.169.254 }]\n"), { unchecked }), []);
  const source = parsePolicySource(minimal(spec), "p.yaml");
  assert.deepEqual(lockoutRisks(source.policy, source.locate, { ...FACTS, unchecked }), []);
});

Deno.test("lintPolicy() warns when the host forwards packets and egress rules leave forwarded traffic unjudged", () => {
  const deny = "      deny: [{ id: d, cidr: 198.51.100.0/24 }]\n";
  const forwarding = { ipv4: true, ipv6: false };
  const warnings = lint(egress(deny), { forwarding });
  assert.deepEqual(summary(warnings), ["forwarded-unjudged - 9:7"]);
  assert.match(warnings[0]!.message, /net\.ipv4\.ip_forward = 1\) .*set forwarded: true$/);
  assert.deepEqual(summary(lint(egress(`      forwarded: true\n${deny}`), { forwarding })), []);
  assert.deepEqual(summary(lint(egress(deny), { forwarding: { ipv4: false, ipv6: false } })), []);
  assert.deepEqual(
    summary(lint(egress("      forwarded: true\n      users: [{ uid: 7, denyPorts: [80] }]\n"))),
    [
      "no-effect - 9:18",
    ],
  );
  const ipv6Only = lint(egress(deny), { forwarding: { ipv4: false, ipv6: true } });
  assert.match(ipv6Only[0]!.message, /net\.ipv6\.conf\.all\.forwarding = 1/);
});

Deno.test("lintPolicy() refuses a host-wide egress default deny that cuts SSH or DNS, and allows one that keeps them", () => {
  const facts = {
    resolvers: ["192.0.2.53"],
    sshClient: { addr: "203.0.113.7", port: 22, clientPort: 51234 },
  };
  const cut = lint(egress("      default: deny\n"), facts);
  assert.deepEqual(summary(cut), [
    "egress-default-lockout network.egress.default 9:16",
    "egress-default-lockout network.egress.default 9:16",
  ]);
  assert.ok(cut.every((warning) => warning.severity === "error"));
  assert.match(cut[0]!.message, /denies your SSH session's peer 203\.0\.113\.7/);
  assert.match(cut[1]!.message, /denies DNS to 192\.0\.2\.53/);
  const source = parsePolicySource(minimal(egress("      default: deny\n")), "p.yaml");
  assert.equal(lockoutRisks(source.policy, source.locate, { ...FACTS, ...facts }).length, 2, "apply refuses");
  const kept = egress(
    "      default: deny\n      allow:\n        - { id: ssh-peer, cidr: 203.0.113.7/32 }\n" +
      "        - { id: dns, cidr: 192.0.2.53/32, port: 53 }\n",
  );
  assert.deepEqual(lint(kept, facts), []);
});

Deno.test("lintPolicy() warns about a scope that reaches no resolver under an egress default deny", () => {
  const scoped = `  scope: { cgroups: [/app.slice] }\n${egress("      default: deny\n")}`;
  const warnings = lint(scoped, { resolvers: ["192.0.2.53"] });
  const dns = warnings.filter((warning) => warning.code === "dns-unallowed");
  assert.equal(dns.length, 1);
  assert.equal(dns[0]?.severity, "warning");
  assert.ok(
    !warnings.some((warning) => warning.code === "egress-default-lockout"),
    "a scope is not host-wide",
  );
  const source = parsePolicySource(minimal(scoped), "p.yaml");
  const risks = lockoutRisks(source.policy, source.locate, { ...FACTS, resolvers: ["192.0.2.53"] });
  assert.deepEqual(risks, [], "a warning, not a reason to refuse the apply");
});

Deno.test("lintPolicy() reports an exe that does not exist, unless optional", () => {
  const warnings = lint(
    egress(
      "      deny:\n        - { id: gone, cidr: 10.0.0.0/8, exe: /no/such/exe }\n" +
        "        - { id: maybe, cidr: 10.1.0.0/16, exe: /no/such/other, optional: true }\n",
    ),
  );
  const missing = warnings.filter((warning) => warning.code === "missing-path");
  assert.deepEqual(missing.map((w) => `${w.ruleId} ${w.severity} ${w.position.line}:${w.position.column}`), [
    "gone error 10:11",
    "maybe warning 11:11",
  ]);
});

Deno.test("lockoutRisks() refuses files.protect over aegisbpf's state or configuration, naming the entry", () => {
  const ownDirectories = [
    { realPath: "/var/lib/aegisbpf", identity: "1:30", why: "aegisbpf state (history, applied record)" },
    {
      realPath: "/etc/aegisbpf",
      identity: "1:40",
      why: "aegisbpf configuration (trusted keys, break-glass marker)",
    },
  ];
  const paths = new Map([
    ["/etc", { realPath: "/etc", identity: "1:4" }],
    ["/etc/aegisbpf/keys", { realPath: "/etc/aegisbpf/keys", identity: "1:41" }],
    ["/var/lib/aegisbpf", { realPath: "/var/lib/aegisbpf", identity: "1:30" }],
    ["/etc/sudoers", { realPath: "/etc/sudoers", identity: "1:5" }],
    ["/usr/bin/sshd", { realPath: "/usr/sbin/sshd", identity: "1:6" }],
  ]);
  const spec = "  files:\n    protect:\n      - { id: etc, path: /etc, recursive: true }\n" +
    "      - { id: keys, path: /etc/aegisbpf/keys }\n      - { id: state, path: /var/lib/aegisbpf }\n" +
    "      - { id: etc-entries, path: /etc }\n      - { id: sudoers, path: /etc/sudoers }\n" +
    "      - { id: sshd, path: /usr/bin/sshd }\n";
  const survival = [{ realPath: "/usr/sbin/sshd", identity: "1:6", why: "sshd" }];
  const facts = { ...FACTS, ownDirectories, paths, survival };
  const source = parsePolicySource(minimal(spec), "p.yaml");
  const risks = lockoutRisks(source.policy, source.locate, facts);
  assert.deepEqual(summary(risks), [
    "protects-own-state etc 9:9",
    "protects-own-state keys 10:9",
    "protects-own-state state 11:9",
  ]);
  assert.ok(risks.every((risk) => risk.severity === "error"));
  assert.match(
    risks[1]!.message,
    /^p\.yaml:10:9: rule keys: protects \/etc\/aegisbpf, aegisbpf configuration/,
  );
  assert.deepEqual(lint(spec, facts).filter((w) => w.severity === "error"), risks, "protecting sshd is fine");
  // The aegisbpf binary as a writer may change its own state; another writer, or trust: dpkg's, does not.
  const binary = { realPath: "/usr/bin/deno", identity: "1:7", why: "the aegisbpf binary" };
  const withWriters = {
    ...facts,
    survival: [...survival, binary],
    paths: new Map([...paths, ["/usr/bin/deno", binary], ["/usr/sbin/visudo", {
      realPath: "/usr/sbin/visudo",
      identity: "1:8",
    }]]),
  };
  const writers = (exe: string) => `${spec}    writers:\n      - { exe: ${exe} }\n`;
  const risksWith = (text: string) => {
    const parsed = parsePolicySource(minimal(text), "p.yaml");
    return summary(lockoutRisks(parsed.policy, parsed.locate, withWriters));
  };
  assert.deepEqual(risksWith(writers("/usr/bin/deno")), [], "the agent is a writer");
  assert.equal(risksWith(writers("/usr/sbin/visudo")).length, 3, "visudo is not the agent");
});

Deno.test("lintPolicy() reports files.protect paths that do not exist: an error unless optional", () => {
  const spec =
    "  files:\n    protect:\n      - { id: gone, path: /gone }\n      - { id: maybe, path: /maybe, optional: true }\n";
  const warnings = lint(spec);
  assert.deepEqual(summary(warnings), ["missing-path gone 9:9", "missing-path maybe 10:9"]);
  assert.deepEqual(warnings.map((w) => w.severity), ["error", "warning"]);
});

Deno.test("lintPolicy() warns when files.protect covers dpkg's files and no writer runs dpkg, naming the package", () => {
  const paths = new Map([
    ["/etc/sudoers", { realPath: "/etc/sudoers", identity: "1:5" }],
    ["/etc/cron.d", { realPath: "/etc/cron.d", identity: "1:6" }],
    ["/etc/mine", { realPath: "/etc/mine", identity: "1:7" }],
    ["/usr/bin/dpkg", { realPath: "/usr/bin/dpkg", identity: "1:8" }],
  ]);
  const dpkgOwners = new Map([["/etc/sudoers", "sudo"], ["/etc/cron.d", "cron:amd64"]]);
  const spec = "  files:\n    protect:\n      - { id: sudoers, path: /etc/sudoers }\n" +
    "      - { id: cron, path: /etc/cron.d, recursive: true }\n      - { id: mine, path: /etc/mine }\n";
  const warnings = lint(spec, { paths, dpkgOwners });
  assert.deepEqual(summary(warnings), ["protects-dpkg-files sudoers 9:9", "protects-dpkg-files cron 10:9"]);
  assert.ok(warnings.every((warning) => warning.severity === "warning"), "a warning, not a refusal");
  assert.match(warnings[0]!.message, /\/etc\/sudoers belongs to the dpkg package sudo, .*\/usr\/bin\/dpkg/);
  assert.match(warnings[1]!.message, /files below \/etc\/cron\.d belong to the dpkg package cron:amd64/);
  const writer = spec + "    writers:\n      - { exe: /usr/bin/dpkg, children: true }\n";
  assert.deepEqual(lint(writer, { paths, dpkgOwners }), [], "dpkg a writer: nothing to say");
});

Deno.test("dpkgOwners() finds the package of a protected file, and of a file below a recursive entry", async () => {
  const dir = Deno.makeTempDirSync();
  try {
    Deno.writeTextFileSync(`${dir}/sudo.list`, "/.\n/etc\n/etc/sudoers\n/usr/bin/sudo\n");
    Deno.writeTextFileSync(`${dir}/cron:amd64.list`, "/etc/cron.d\n/etc/cron.d/e2scrub_all\n");
    Deno.writeTextFileSync(`${dir}/sudo.md5sums`, "x  etc/sudoers\n");
    const owners = await dpkgOwners([
      { path: "/etc/sudoers" },
      { path: "/etc/cron.d", recursive: true },
      { path: "/etc/systemd/system", recursive: true },
      { path: "/etc/mine" },
    ], dir);
    assert.deepEqual(owners, new Map([["/etc/sudoers", "sudo"], ["/etc/cron.d", "cron:amd64"]]));
    assert.equal(await dpkgOwners([{ path: "/etc/sudoers" }], `${dir}/none`), undefined, "no dpkg database");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
