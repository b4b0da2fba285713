import assert from "node:assert/strict";
import { minimal, SPEC_EXAMPLE } from "./_testdata.ts";
import { compilePolicy } from "./compile.ts";
import { parsePolicy } from "./parse.ts";

const v4 = (...bytes: number[]) => new Uint8Array(bytes);
const v6zero = () => new Uint8Array(16);

function compile(text: string) {
  return compilePolicy(parsePolicy(text, "p.yaml"));
}

Deno.test("compilePolicy() numbers rules in list order after the reserved default", () => {
  const plan = compile(SPEC_EXAMPLE);
  assert.deepEqual(plan.rules.map((rule) => `${rule.id} ${rule.area} ${rule.action}`), [
    "default ingress deny",
    "shadow file deny",
    "files.deny[1] file deny",
    "no-netcat exec deny",
    "imds egress deny",
    "network.egress.deny[1] egress deny",
    "network.egress.deny[2] egress deny",
    "network.egress.deny[3] egress deny",
    "network.egress.allow[0] egress allow",
    "network.egress.users[0] egress deny",
    "network.egress.users[1] egress deny",
    "network.bind.deny[0] bind deny",
    "network.ingress.failsafe ingress allow",
    "network.ingress.allow[0] ingress allow",
    "network.ingress.deny[0] ingress deny",
    "exec.denyMemfd exec deny",
    "scope.escape exec deny",
    "scope.ptrace exec deny",
    "network.egress.sourceRoutes egress deny",
  ]);
  assert.equal(plan.rules[1]?.path, "/etc/shadow");
  assert.deepEqual(plan.denyMemfdExec, { ruleId: 15 });
  assert.deepEqual(plan.scopeGuard, { ruleId: 16 }, "a scope brings the guard against escaping it");
  assert.deepEqual(plan.ptraceGuard, { ruleId: 17 }, "and the guard against tracing out of it");
  assert.deepEqual(plan.routeGuard, { ruleId: 18 }, "egress rules bring the guard against source routes");
});

Deno.test("compilePolicy() guards against source routes whenever an egress rule exists, and only then", () => {
  const guard = (egress: string) => compile(minimal(`  network:\n    egress:\n${egress}`)).routeGuard;
  assert.deepEqual(guard("      deny: [{ cidr: 10.0.0.0/8 }]\n"), { ruleId: 2 });
  assert.deepEqual(guard("      allow: [{ cidr: 10.0.0.0/8 }]\n"), { ruleId: 2 });
  assert.deepEqual(guard("      users: [{ uid: 1000, allowPorts: [443] }]\n"), { ruleId: 2 });
  assert.equal(guard("      denyPacketSockets: true\n"), undefined, "no egress rule: no guard");
  assert.equal(guard("      deny: []\n"), undefined);
});

Deno.test("compilePolicy() compiles the SPEC example to the plan the kernel needs", () => {
  const plan = compile(SPEC_EXAMPLE);
  assert.equal(plan.mode, "enforce");
  assert.deepEqual(plan.files, [
    { ruleId: 1, path: "/etc/shadow" },
    { ruleId: 2, path: "/srv/keys", recursive: true },
  ]);
  assert.deepEqual(plan.exec, [{ ruleId: 3, path: "/usr/bin/nc.openbsd" }]);
  assert.deepEqual(plan.egress, [
    { ruleId: 4, action: "deny", family: 4, addr: v4(169, 254, 169, 254), prefixLength: 32 },
    {
      ruleId: 5,
      action: "deny",
      family: 4,
      addr: v4(10, 0, 0, 0),
      prefixLength: 8,
      protocol: "tcp",
      port: 22,
    },
    {
      ruleId: 5,
      action: "deny",
      family: 4,
      addr: v4(10, 0, 0, 0),
      prefixLength: 8,
      protocol: "tcp",
      port: 23,
    },
    {
      ruleId: 6,
      action: "deny",
      family: 6,
      addr: new Uint8Array([0x20, 0x01, 0x0d, 0xb8, ...new Array(12).fill(0)]),
      prefixLength: 32,
    },
    {
      ruleId: 7,
      action: "deny",
      family: 4,
      addr: v4(0, 0, 0, 0),
      prefixLength: 0,
      protocol: "tcp",
      port: 25,
    },
    { ruleId: 7, action: "deny", family: 6, addr: v6zero(), prefixLength: 0, protocol: "tcp", port: 25 },
    {
      ruleId: 8,
      action: "allow",
      family: 4,
      addr: v4(10, 1, 2, 3),
      prefixLength: 32,
      protocol: "tcp",
      port: 22,
    },
  ]);
  assert.deepEqual(plan.egressUsers, [
    { ruleId: 9, ports: [80, 443], portsAre: "allowed", uid: 1000 },
    { ruleId: 10, ports: [22, 23], portsAre: "denied", gid: 27 },
  ]);
  assert.deepEqual(plan.bind, [{ ruleId: 11, port: 6667, protocol: "tcp" }]);
  assert.deepEqual(plan.ingress, {
    interfaces: [{ name: "eth0", defaultDrop: false, ruleId: 0 }],
    failsafe: [{ ruleId: 12, port: 22, protocol: "tcp" }],
    rules: [
      {
        ruleId: 13,
        action: "allow",
        family: 4,
        addr: v4(10, 0, 0, 0),
        prefixLength: 8,
        protocol: "tcp",
        port: 22,
      },
      { ruleId: 14, action: "deny", family: 4, addr: v4(203, 0, 113, 0), prefixLength: 24 },
    ],
  });
  assert.deepEqual(plan.scope, {
    include: ["/system.slice/canary.slice"],
    exempt: ["/system.slice/sshd.service"],
  });
  assert.deepEqual(plan.denyMemfdExec, { ruleId: 15 });
  assert.equal("denyPacketSockets" in plan, false);
});

Deno.test("compilePolicy() keys IPv4-mapped IPv6 networks as IPv4", () => {
  const plan = compile(minimal('  network:\n    egress:\n      deny: [{ cidr: "::ffff:10.0.0.0/104" }]\n'));
  assert.deepEqual(plan.egress, [{
    ruleId: 1,
    action: "deny",
    family: 4,
    addr: v4(10, 0, 0, 0),
    prefixLength: 8,
  }]);
});

Deno.test("compilePolicy() expands a port rule without a protocol to TCP and UDP", () => {
  const plan = compile(
    minimal(
      "  network:\n    bind:\n      deny: [{ ports: [53, 67] }]\n    ingress:\n      interfaces: [eth0, eth1]\n      default: drop\n      failsafe: { port: 22 }\n",
    ),
  );
  // Without a protocol a bind rule covers every protocol with ports (UDP-Lite and SCTP too).
  assert.deepEqual(plan.bind, [{ ruleId: 1, port: 53 }, { ruleId: 1, port: 67 }]);
  assert.deepEqual(plan.ingress.failsafe, [
    { ruleId: 2, port: 22, protocol: "tcp" },
    { ruleId: 2, port: 22, protocol: "udp" },
  ]);
  assert.deepEqual(plan.ingress.interfaces, [
    { name: "eth0", defaultDrop: true, ruleId: 0 },
    { name: "eth1", defaultDrop: true, ruleId: 0 },
  ]);
});

Deno.test("compilePolicy() marks packet sockets denied when the policy says so", () => {
  const plan = compile(minimal("  network:\n    egress:\n      denyPacketSockets: true\n"));
  assert.deepEqual(plan.denyPacketSockets, { ruleId: 1 });
  assert.equal(plan.rules[1]?.id, "network.egress.denyPacketSockets");
});

Deno.test("compilePolicy() gives the same plan whatever order the sections are written in", () => {
  const a = "  files:\n    deny: [{ path: /a }]\n  network:\n    bind:\n      deny: [{ port: 1 }]\n";
  const b = "  network:\n    bind:\n      deny: [{ port: 1 }]\n  files:\n    deny: [{ path: /a }]\n";
  assert.deepEqual(compile(minimal(a)), compile(minimal(b)));
  assert.deepEqual(compile(SPEC_EXAMPLE), compile(SPEC_EXAMPLE));
});

Deno.test("compilePolicy() of a policy without rules is the empty plan in its mode", () => {
  const plan = compile(minimal("  mode: enforce\n"));
  assert.deepEqual(plan.rules, [{ id: "default", area: "ingress", action: "deny" }]);
  assert.equal(plan.mode, "enforce");
  assert.equal(plan.egress.length + plan.files.length + plan.ingress.interfaces.length, 0);
});

Deno.test("compilePolicy() lists the well-known NAT64 prefix and the policy's own, once each", () => {
  const prefixes = (text: string) => compile(minimal(text)).nat64Prefixes?.map((p) => [...p]);
  const wellKnown = [0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0];
  assert.deepEqual(prefixes(""), [wellKnown]);
  assert.deepEqual(
    prefixes('  network:\n    egress:\n      nat64Prefixes: ["64:ff9b::/96", "2001:db8:64::/96"]\n'),
    [wellKnown, [0x20, 0x01, 0x0d, 0xb8, 0, 0x64, 0, 0, 0, 0, 0, 0]],
  );
});

Deno.test("compilePolicy() carries a recursive rule's maxFiles to its target", () => {
  const plan = compile(
    minimal("  files:\n    deny:\n      - { path: /srv, recursive: true, maxFiles: 7 }\n"),
  );
  assert.deepEqual(plan.files, [{ ruleId: 1, path: "/srv", recursive: true, maxFiles: 7 }]);
});

Deno.test("compilePolicy() numbers files.protect rules after every older list and marks them file rules", () => {
  const plan = compile(
    minimal(
      "  files:\n    protect:\n      - { path: /etc/sudoers }\n      - { id: cron, path: /etc/cron.d, recursive: true, optional: true }\n" +
        "    deny: [{ path: /etc/shadow }]\n  network:\n    bind:\n      deny: [{ port: 23 }]\n",
    ),
  );
  assert.deepEqual(plan.rules.map((rule) => rule.id), [
    "default",
    "files.deny[0]",
    "network.bind.deny[0]",
    "files.protect[0]",
    "cron",
  ]);
  assert.deepEqual(plan.protect, [
    { ruleId: 3, path: "/etc/sudoers" },
    { ruleId: 4, path: "/etc/cron.d", recursive: true, optional: true },
  ]);
  assert.deepEqual(plan.rules[4], { id: "cron", area: "file", action: "deny", path: "/etc/cron.d" });
  assert.equal(compile(minimal("  files:\n    deny: [{ path: /etc/shadow }]\n")).protect, undefined);
});

Deno.test("compilePolicy() makes each files.writers entry a subject and lists it as a writer, shared with network rules", () => {
  const plan = compile(
    minimal(
      "  files:\n    protect: [{ path: /etc/sudoers }]\n    writers:\n" +
        "      - { exe: /usr/bin/dpkg, children: true }\n      - { id: vi, exe: /usr/sbin/visudo, optional: true }\n" +
        "  network:\n    egress:\n      deny: [{ cidr: 10.0.0.0/8, exe: /usr/bin/dpkg, children: true }]\n",
    ),
  );
  assert.deepEqual(plan.rules.map((rule) => rule.id), [
    "default",
    "network.egress.deny[0]",
    "files.protect[0]",
    "files.writers[0]",
    "vi",
    "network.egress.sourceRoutes",
    "exe.identity",
  ]);
  assert.deepEqual(plan.identityGuard, { ruleId: 6 }, "rules naming programs bring the identity guard, last");
  assert.equal(plan.rules[6]?.area, "egress", "the area of the first rule naming a program");
  assert.deepEqual(plan.rules[3], {
    id: "files.writers[0]",
    area: "file",
    action: "allow",
    exe: "/usr/bin/dpkg",
  });
  assert.deepEqual(plan.subjects, [
    { subject: 1, exe: "/usr/bin/dpkg", children: true, optional: false, ruleId: 1 },
    { subject: 2, exe: "/usr/sbin/visudo", children: false, optional: true, ruleId: 4 },
  ]);
  assert.deepEqual(plan.writers, [
    { ruleId: 3, subject: 1, exe: "/usr/bin/dpkg", children: true },
    { ruleId: 4, subject: 2, exe: "/usr/sbin/visudo", children: false },
  ]);
  assert.equal(compile(minimal("  files:\n    protect: [{ path: /etc/sudoers }]\n")).writers, undefined);
});
