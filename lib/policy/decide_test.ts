import assert from "node:assert/strict";
import { minimal } from "./_testdata.ts";
import { compilePolicy } from "./compile.ts";
import { decide, type DecisionEvent, type IpProtocol } from "./decide.ts";
import { parsePolicy } from "./parse.ts";
import type { RuleSetPlan } from "./plan.ts";

function plan(spec: string): RuleSetPlan {
  return compilePolicy(parsePolicy(minimal(`  mode: enforce\n${spec}`), "p.yaml"));
}

const egress = (rules: string) => plan(`  network:\n    egress:\n${rules}`);

/** The rule name that decides, or "allow". */
function who(p: RuleSetPlan, event: DecisionEvent): string {
  const result = decide(p, event);
  return result.decision === "allow" ? "allow" : result.ruleName ?? `#${result.ruleId}`;
}

const to = (
  addr: string,
  port: number | undefined,
  protocol: IpProtocol = "tcp",
) => ({ area: "egress", addr, protocol, ...port !== undefined && { port } }) as const;

Deno.test("decide() lets the longest prefix win", () => {
  const p = egress(
    "      deny: [{ id: wide, cidr: 10.0.0.0/8 }]\n      allow: [{ id: hole, cidr: 10.1.0.0/16 }]\n",
  );
  assert.equal(who(p, to("10.1.0.1", 80)), "allow");
  assert.equal(who(p, to("10.2.0.1", 80)), "wide");
  assert.equal(who(p, to("11.0.0.1", 80)), "allow");
});

Deno.test("decide() prefers a port rule to a port-less one of the same prefix length", () => {
  const p = egress(
    "      deny: [{ id: net, cidr: 10.0.0.0/8 }]\n      allow: [{ id: ssh, cidr: 10.0.0.0/8, port: 22, protocol: tcp }]\n",
  );
  assert.equal(who(p, to("10.0.0.1", 22)), "allow");
  assert.equal(who(p, to("10.0.0.1", 80)), "net");
  assert.equal(who(p, to("10.0.0.1", 22, "udp")), "net");
});

Deno.test("decide() prefers a port-less rule naming a protocol to one naming none", () => {
  const p = egress(
    "      deny: [{ id: net, cidr: 10.0.0.0/8 }]\n      allow: [{ id: udp, cidr: 10.0.0.0/8, protocol: udp }]\n",
  );
  assert.equal(who(p, to("10.0.0.1", 53, "udp")), "allow");
  assert.equal(who(p, to("10.0.0.1", 53, "tcp")), "net");
  assert.equal(who(p, to("10.0.0.1", 53, "udplite")), "net");
});

Deno.test("decide() gives an exact tie to deny, and to the first of equal rules", () => {
  const p = egress(
    "      allow: [{ id: a, cidr: 10.0.0.0/8 }]\n      deny: [{ id: d1, cidr: 10.0.0.0/8 }, { id: d2, cidr: 10.0.0.0/8 }]\n",
  );
  assert.equal(who(p, to("10.9.9.9", 1)), "d1");
  const ports = egress("      deny: [{ id: one, port: 53 }, { id: two, port: 53, protocol: udp }]\n");
  assert.equal(who(ports, to("1.1.1.1", 53, "udp")), "one");
});

Deno.test("decide() matches a port rule without a protocol for TCP, UDP, UDP-Lite, SCTP and DCCP only", () => {
  const p = egress("      deny: [{ id: dns, port: 53 }]\n");
  assert.equal(who(p, to("1.1.1.1", 53, "tcp")), "dns");
  assert.equal(who(p, to("1.1.1.1", 53, "udp")), "dns");
  assert.equal(who(p, to("1.1.1.1", 53, "udplite")), "dns");
  assert.equal(who(p, to("1.1.1.1", 53, "sctp")), "dns");
  assert.equal(who(p, to("1.1.1.1", 53, "dccp")), "dns");
  assert.equal(who(p, to("1.1.1.1", 53, "icmp")), "allow");
  assert.equal(who(p, to("2001:db8::1", 53, "udp")), "dns");
  assert.equal(who(p, to("1.1.1.1", 54, "udp")), "allow");
});

Deno.test("decide() matches a port-less rule without a protocol for every protocol", () => {
  const p = egress("      deny: [{ id: host, cidr: 192.0.2.1 }]\n");
  assert.equal(who(p, to("192.0.2.1", undefined, "icmp")), "host");
  assert.equal(who(p, to("192.0.2.1", 0, 255)), "host");
});

Deno.test("decide() never matches a port rule for a destination without a port", () => {
  const p = egress("      deny: [{ id: any-port, port: 80 }]\n");
  assert.equal(who(p, to("192.0.2.1", 0, "tcp")), "allow");
});

Deno.test("decide() matches IPv4-mapped IPv6 destinations and rules as IPv4", () => {
  const p = egress(
    '      deny: [{ id: v4, cidr: 10.0.0.0/8 }, { id: mapped, cidr: "::ffff:192.0.2.0/120" }]\n',
  );
  assert.equal(who(p, to("::ffff:10.1.2.3", 443)), "v4");
  assert.equal(who(p, to("192.0.2.7", 443)), "mapped");
  assert.equal(who(p, { area: "egress", addr: new Uint8Array([10, 0, 0, 1]), port: 1, protocol: 6 }), "v4");
  const mappedBytes = new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1]);
  assert.equal(who(p, { area: "egress", addr: mappedBytes, port: 1, protocol: 6 }), "v4");
  assert.equal(who(p, to("2001:db8::1", 443)), "allow");
});

Deno.test("decide() applies users entries by port where no CIDR deny decided", () => {
  const p = egress(
    "      deny: [{ id: imds, cidr: 169.254.169.254 }]\n      allow: [{ id: hole, cidr: 10.0.0.0/8 }]\n" +
      "      users:\n        - { id: web, uid: 33, allowPorts: [443] }\n        - { id: ops, gid: 27, denyPorts: [22, 443] }\n",
  );
  const as = (event: DecisionEvent & { area: "egress" }, uid: number, gid: number) =>
    who(p, { ...event, uid, gid });
  assert.equal(as(to("1.1.1.1", 443), 33, 33), "allow");
  assert.equal(as(to("1.1.1.1", 80), 33, 33), "web");
  assert.equal(as(to("10.0.0.1", 80), 33, 33), "web", "a CIDR allow does not lift a users entry");
  assert.equal(as(to("169.254.169.254", 443), 33, 33), "imds", "a CIDR deny decides first");
  assert.equal(as(to("1.1.1.1", 22), 1000, 27), "ops");
  assert.equal(as(to("1.1.1.1", 80), 1000, 27), "allow");
  assert.equal(as(to("1.1.1.1", 443), 33, 27), "allow", "the uid entry beats the gid entry");
  assert.equal(who(p, to("1.1.1.1", 80)), "allow", "an event without ids matches no users entry");
});

Deno.test("decide() allows outside the scope and inside an exempt subtree", () => {
  const p = plan(
    "  scope:\n    cgroups: [/app.slice]\n    exempt: [/app.slice/ok.service]\n" +
      "  network:\n    egress:\n      deny: [{ id: all, cidr: 0.0.0.0/0 }]\n    bind:\n      deny: [{ id: irc, port: 6667 }]\n",
  );
  const at = (cgroup?: string) => who(p, { ...to("1.1.1.1", 80), ...cgroup !== undefined && { cgroup } });
  assert.equal(at("/app.slice/web.service"), "all");
  assert.equal(at("/app.slice"), "all");
  assert.equal(at("/app.slice/ok.service/child"), "allow");
  assert.equal(at("/app.slice/ok.service"), "allow");
  assert.equal(at("/system.slice/sshd.service"), "allow");
  assert.equal(at("/app.slicer"), "allow");
  assert.equal(at(), "allow");
  assert.equal(who(p, { area: "bind", port: 6667, protocol: "tcp", cgroup: "/app.slice/x" }), "irc");
  assert.equal(who(p, { area: "bind", port: 6667, protocol: "tcp", cgroup: "/" }), "allow");
});

Deno.test("decide() reports audit in audit mode, whether from the plan or forced", () => {
  const p = egress("      deny: [{ id: all, cidr: 0.0.0.0/0 }]\n");
  assert.deepEqual(decide(p, to("1.1.1.1", 80)), { decision: "deny", ruleId: 1, ruleName: "all" });
  assert.deepEqual(decide(p, to("1.1.1.1", 80), { mode: "audit" }), {
    decision: "audit",
    ruleId: 1,
    ruleName: "all",
  });
  assert.deepEqual(decide({ ...p, mode: "audit" }, to("1.1.1.1", 80)).decision, "audit");
  assert.deepEqual(decide(p, to("::1", 80)), { decision: "allow" });
});

Deno.test("decide() denies a bind on the exact port and protocol only", () => {
  const p = plan("  network:\n    bind:\n      deny: [{ id: irc, port: 6667, protocol: tcp }]\n");
  assert.equal(who(p, { area: "bind", port: 6667, protocol: "tcp" }), "irc");
  assert.equal(who(p, { area: "bind", port: 6667, protocol: "udp" }), "allow");
  assert.equal(who(p, { area: "bind", port: 6668, protocol: "tcp" }), "allow");
});

Deno.test("decide() denies a bind without a protocol for every protocol with ports, and no other", () => {
  const p = plan("  network:\n    bind:\n      deny: [{ id: irc, port: 6667 }]\n");
  for (const protocol of ["tcp", "udp", "udplite", "sctp", "dccp"] as const) {
    assert.equal(who(p, { area: "bind", port: 6667, protocol }), "irc", protocol);
  }
  assert.equal(who(p, { area: "bind", port: 6667, protocol: "icmp" }), "allow");
});

Deno.test("decide() filters ingress per interface: failsafe, most specific rule, then the default", () => {
  const p = plan(
    "  network:\n    ingress:\n      interfaces: [eth0]\n      default: drop\n      failsafe: { ports: [22], protocol: tcp }\n" +
      "      allow: [{ id: web, port: 443, protocol: tcp }]\n      deny: [{ id: bad, cidr: 203.0.113.0/24 }]\n",
  );
  const from = (addr: string, port: number, protocol: "tcp" | "udp" | "icmp" = "tcp", iface = "eth0") =>
    who(p, { area: "ingress", interface: iface, addr, port, protocol });
  assert.equal(from("203.0.113.9", 22), "allow", "the failsafe passes before any rule");
  assert.equal(from("203.0.113.9", 443), "bad", "a longer prefix beats a port rule");
  assert.equal(from("198.51.100.1", 443), "allow");
  assert.equal(from("198.51.100.1", 80), "default");
  assert.equal(from("198.51.100.1", 22, "udp"), "default");
  assert.equal(from("198.51.100.1", 22, "icmp"), "default", "only TCP and UDP have ports");
  assert.equal(from("198.51.100.1", 80, "tcp", "eth1"), "allow", "other interfaces are not filtered");
  const pass = plan("  network:\n    ingress:\n      interfaces: [eth0]\n");
  assert.equal(
    who(pass, { area: "ingress", interface: "eth0", addr: "1.2.3.4", port: 1, protocol: "tcp" }),
    "allow",
  );
});

Deno.test("decide() ignores scope for ingress packets", () => {
  const p = plan(
    "  scope:\n    cgroups: [/app.slice]\n  network:\n    ingress:\n      interfaces: [eth0]\n      deny: [{ id: all, cidr: 0.0.0.0/0 }]\n",
  );
  assert.equal(
    who(p, { area: "ingress", interface: "eth0", addr: "1.2.3.4", port: 1, protocol: "tcp" }),
    "all",
  );
});

Deno.test("decide() denies files and executables by the rules their inode matched, in scope", () => {
  const p = plan(
    "  scope:\n    exempt: [/admin]\n  files:\n    deny: [{ id: shadow, path: /etc/shadow }, { id: keys, path: /srv/keys, recursive: true }]\n" +
      "  exec:\n    deny: [{ id: nc, path: /usr/bin/nc }]\n",
  );
  assert.equal(who(p, { area: "file", ruleIds: [2, 1] }), "shadow");
  assert.equal(who(p, { area: "file", ruleIds: [] }), "allow");
  assert.equal(who(p, { area: "file", ruleIds: [3] }), "allow", "an exec rule does not deny opens");
  assert.equal(who(p, { area: "exec", ruleIds: [3] }), "nc");
  assert.equal(who(p, { area: "exec", ruleIds: [3], cgroup: "/admin/shell" }), "allow");
  assert.equal(who(p, { area: "file", path: "/srv/keys/a/b" }), "keys");
  assert.equal(who(p, { area: "file", path: "/srv/keysx" }), "allow");
  assert.equal(who(p, { area: "file", path: "/etc/shadow" }), "shadow");
  assert.equal(who(p, { area: "file", path: "/etc/shadow/x" }), "allow");
});

Deno.test("decide() matches NAT64 and IPv4-compatible destinations as IPv4 and as themselves", () => {
  const p = egress(
    '      nat64Prefixes: ["2001:db8:64::/96"]\n      deny: [{ id: host, cidr: 192.0.2.7/32 }, ' +
      '{ id: nat, cidr: "64:ff9b::/96", port: 25 }]\n      allow: [{ id: open, cidr: 192.0.2.0/24 }]\n',
  );
  assert.equal(who(p, to("64:ff9b::192.0.2.7", 80)), "host");
  assert.equal(who(p, to("2001:db8:64::c000:207", 80)), "host", "the policy's own prefix");
  assert.equal(who(p, to("2001:db8:65::c000:207", 80)), "allow", "not a NAT64 prefix of this policy");
  assert.equal(who(p, to("::192.0.2.7", 80)), "host", "IPv4-compatible");
  // The IPv4 view allows (a /24 allow), but the IPv6 view's deny still applies.
  assert.equal(who(p, to("64:ff9b::192.0.2.8", 25)), "nat");
  assert.equal(who(p, to("64:ff9b::192.0.2.8", 80)), "allow");
  const loopback = egress("      deny: [{ id: zero, cidr: 0.0.0.0/0 }]\n");
  assert.equal(who(loopback, to("::1", 80)), "allow", "::1 is not ::0.0.0.1");
  assert.equal(who(loopback, to("::", 80)), "allow");
  assert.equal(who(loopback, to("::0.0.0.2", 80)), "zero");
});

Deno.test("decide() judges a forwarded packet by the egress CIDR rules alone, and only with forwarded: true", () => {
  const rules =
    "      deny: [{ id: d, cidr: 203.0.113.0/24, port: 53 }]\n      users: [{ uid: 1000, denyPorts: [80] }]\n";
  const on = plan(
    `  scope: { cgroups: [/canary] }\n  network:\n    egress:\n      forwarded: true\n${rules}`,
  );
  const forwarded = (addr: string, port: number) =>
    ({ area: "forward", addr, port, protocol: "udp" }) as const;
  assert.equal(
    who(on, forwarded("203.0.113.9", 53)),
    "d",
    "scope does not apply: a forwarded packet has no task",
  );
  assert.equal(who(on, forwarded("::ffff:203.0.113.9", 53)), "d");
  assert.equal(who(on, forwarded("64:ff9b::203.0.113.9", 53)), "d");
  assert.equal(who(on, forwarded("198.51.100.1", 80)), "allow", "users entries do not apply");
  assert.equal(who(egress(rules), forwarded("203.0.113.9", 53)), "allow", "off by default");
});

const from = (exe: string, ancestors: string[] = []) => ({ exe, ancestors });

Deno.test("decide() applies a rule with exe to that program only, and to its children with children: true", () => {
  const p = egress(
    "      deny:\n        - { id: curl, cidr: 127.0.0.2/32, exe: /usr/bin/curl }\n" +
      "        - { id: tree, cidr: 127.0.0.3/32, exe: /opt/launcher, children: true }\n",
  );
  assert.equal(who(p, { ...to("127.0.0.2", 9), ...from("/usr/bin/curl") }), "curl");
  assert.equal(who(p, { ...to("127.0.0.2", 9), ...from("/usr/bin/python3") }), "allow");
  assert.equal(who(p, to("127.0.0.2", 9)), "allow", "a task of unknown program: rules naming none only");
  // children: false does not reach curl's children.
  assert.equal(who(p, { ...to("127.0.0.2", 9), ...from("/usr/bin/sh", ["/usr/bin/curl"]) }), "allow");
  assert.equal(who(p, { ...to("127.0.0.3", 9), ...from("/opt/launcher") }), "tree", "the program itself");
  assert.equal(
    who(p, { ...to("127.0.0.3", 9), ...from("/usr/bin/curl", ["/usr/bin/sh", "/opt/launcher"]) }),
    "tree",
  );
});

Deno.test("decide() lets the most specific rule win across subjects, and a rule with exe win a tie", () => {
  const p = egress(
    "      deny:\n        - { id: wide, cidr: 10.0.0.0/8 }\n        - { id: host, cidr: 10.1.2.3/32 }\n" +
      "      allow:\n        - { id: curl-net, cidr: 10.0.0.0/8, exe: /usr/bin/curl }\n" +
      "        - { id: curl-wide, cidr: 0.0.0.0/0, exe: /usr/bin/curl }\n",
  );
  const curl = from("/usr/bin/curl");
  assert.equal(
    who(p, { ...to("10.9.9.9", 80), ...curl }),
    "allow",
    "same rule with exe beats the rule without",
  );
  assert.equal(who(p, { ...to("10.1.2.3", 80), ...curl }), "host", "a more specific rule without exe wins");
  assert.equal(who(p, { ...to("10.9.9.9", 80), ...from("/usr/bin/wget") }), "wide");
});

Deno.test("decide() orders subjects: own exe, then the nearest ancestor, then rules naming no program", () => {
  const p = egress(
    "      deny:\n        - { id: outer, cidr: 10.0.0.0/8, exe: /opt/outer, children: true }\n" +
      "      allow:\n        - { id: inner, cidr: 10.0.0.0/8, exe: /opt/inner, children: true }\n",
  );
  assert.equal(who(p, { ...to("10.0.0.1", 80), ...from("/bin/x", ["/opt/inner", "/opt/outer"]) }), "allow");
  assert.equal(who(p, { ...to("10.0.0.1", 80), ...from("/bin/x", ["/opt/outer", "/opt/inner"]) }), "outer");
});

Deno.test("decide() denies what no allow covers under network.egress.default: deny, loopback aside", () => {
  const p = egress(
    "      default: deny\n      allow:\n        - { id: dns, cidr: 10.0.0.53/32, port: 53 }\n" +
      "        - { id: api, cidr: 192.0.2.0/24, exe: /usr/bin/curl }\n      deny:\n        - { id: lo9, cidr: 127.0.0.2/32, port: 9 }\n",
  );
  assert.equal(who(p, to("10.0.0.53", 53, "udp")), "allow");
  assert.equal(who(p, to("10.0.0.53", 80)), "network.egress.default");
  assert.equal(who(p, to("8.8.8.8", 443)), "network.egress.default");
  assert.equal(who(p, to("2001:db8::1", 443)), "network.egress.default");
  assert.equal(who(p, to("127.0.0.1", 8080)), "allow", "loopback passes");
  assert.equal(who(p, to("::1", 8080)), "allow", "loopback passes");
  assert.equal(who(p, to("127.0.0.2", 9)), "lo9", "unless a rule says otherwise");
  assert.equal(who(p, { ...to("192.0.2.7", 443), ...from("/usr/bin/curl") }), "allow");
  assert.equal(who(p, { ...to("192.0.2.7", 443), ...from("/usr/bin/wget") }), "network.egress.default");
});

Deno.test("decide() takes a users or bind entry with exe for that program before the entry without", () => {
  const p = plan(
    "  network:\n    egress:\n      users:\n        - { id: root-curl, uid: 0, allowPorts: [443], exe: /usr/bin/curl }\n" +
      "        - { id: root, uid: 0, denyPorts: [25] }\n" +
      "    bind:\n      deny:\n        - { id: py8080, port: 8080, exe: /usr/bin/python3 }\n",
  );
  assert.equal(who(p, { ...to("192.0.2.1", 80), uid: 0, ...from("/usr/bin/curl") }), "root-curl");
  assert.equal(who(p, { ...to("192.0.2.1", 443), uid: 0, ...from("/usr/bin/curl") }), "allow");
  assert.equal(
    who(p, { ...to("192.0.2.1", 25), uid: 0, ...from("/usr/bin/curl") }),
    "root-curl",
    "curl's entry decides",
  );
  assert.equal(who(p, { ...to("192.0.2.1", 25), uid: 0, ...from("/usr/bin/wget") }), "root");
  const bind = (exe: string) => ({ area: "bind", port: 8080, protocol: "tcp", exe }) as const;
  assert.equal(who(p, bind("/usr/bin/python3")), "py8080");
  assert.equal(who(p, bind("/usr/bin/nc")), "allow");
});

Deno.test("decide() refuses writes of protected files and entry changes of protected directories, in scope", () => {
  const p = plan(
    "  scope:\n    exempt: [/admin]\n  files:\n    deny: [{ id: shadow, path: /etc/shadow }]\n" +
      "    protect:\n      - { id: sudoers, path: /etc/sudoers }\n      - { id: cron, path: /etc/cron.d, recursive: true }\n" +
      "      - { id: ssh, path: /root/.ssh }\n",
  );
  const write = (
    op: "open-write" | "create" | "unlink" | "setattr" | "rename",
    path: string,
    cgroup?: string,
  ) => who(p, { area: "write", op, path, ...cgroup !== undefined && { cgroup } });
  assert.equal(write("open-write", "/etc/sudoers"), "sudoers");
  assert.equal(write("setattr", "/etc/sudoers"), "sudoers");
  assert.equal(write("open-write", "/etc/sudoers", "/admin/shell"), "allow", "exempt");
  assert.equal(write("open-write", "/etc/sudoers.d/x"), "allow");
  assert.equal(write("create", "/etc/cron.d/new"), "cron", "a new file below a recursive entry");
  assert.equal(write("create", "/etc/cron.d/sub/new"), "cron");
  assert.equal(write("rename", "/etc/cron.d"), "cron", "the directory itself");
  assert.equal(write("create", "/root/.ssh/authorized_keys2"), "ssh", "an entry of a protected directory");
  assert.equal(write("unlink", "/root/.ssh/authorized_keys"), "ssh");
  assert.equal(
    write("open-write", "/root/.ssh/authorized_keys"),
    "allow",
    "a file in a directory protected without recursive is not itself protected",
  );
  assert.equal(write("create", "/root/.ssh/sub/x"), "allow", "nor are the entries of its subdirectories");
  assert.equal(who(p, { area: "write", op: "truncate", ruleIds: [2] }), "sudoers");
  assert.equal(
    who(p, { area: "write", op: "truncate", ruleIds: [1] }),
    "allow",
    "a deny rule is not a protect rule",
  );
  assert.equal(
    who(p, { area: "file", path: "/etc/sudoers" }),
    "allow",
    "reading a protected file is allowed",
  );
  assert.deepEqual(decide(p, { area: "write", op: "create", path: "/etc/cron.d/x" }, { mode: "audit" }), {
    decision: "audit",
    ruleId: 3,
    ruleName: "cron",
  });
});

Deno.test("decide() allows a protected write by a writer, naming it; its children only with children: true", () => {
  const p = plan(
    "  files:\n    protect: [{ id: sudoers, path: /etc/sudoers }]\n    writers:\n" +
      "      - { id: dpkg, exe: /usr/bin/dpkg, children: true }\n      - { id: visudo, exe: /usr/sbin/visudo }\n",
  );
  const write = (task: { exe?: string; ancestors?: string[] }, path = "/etc/sudoers"): DecisionEvent => ({
    area: "write",
    op: "rename",
    path,
    ...task,
  });
  assert.deepEqual(decide(p, write(from("/usr/bin/dpkg"))), {
    decision: "allow",
    writer: { ruleId: 2, ruleName: "dpkg" },
  });
  assert.equal(
    decide(p, write(from("/bin/sh", ["/usr/bin/dpkg"]))).writer?.ruleName,
    "dpkg",
    "a script dpkg runs",
  );
  assert.equal(decide(p, write(from("/usr/sbin/visudo"))).writer?.ruleName, "visudo");
  assert.deepEqual(
    decide(p, write(from("/bin/sh", ["/usr/sbin/visudo"]))),
    { decision: "deny", ruleId: 1, ruleName: "sudoers" },
    "visudo's child is no writer (children: false)",
  );
  assert.equal(decide(p, write(from("/usr/bin/vi"))).decision, "deny");
  assert.equal(decide(p, write({})).decision, "deny", "a task of unknown program is no writer");
  assert.deepEqual(decide(p, write(from("/usr/bin/dpkg"), "/etc/motd")), { decision: "allow" });
});
