import assert from "node:assert/strict";
import { parseEventLine } from "./apply_explain.ts";
import { compilePolicy } from "./compile.ts";
import { decide } from "./decide.ts";
import { parsePolicy } from "./parse.ts";

Deno.test("parseEventLine() reads the fields each event type is decided by", () => {
  const connect = parseEventLine(
    JSON.stringify({
      type: "net.connect",
      rule: "imds",
      process: { pid: 1, uid: 1000, gid: 1000, cgroup: { id: 7, path: "/system.slice/x.service" } },
      net: {
        family: "ipv4",
        protocol: "tcp",
        daddr: "169.254.169.254",
        dport: 80,
        saddr: "10.0.0.1",
        sport: 4,
      },
    }),
    "line",
  );
  assert.deepEqual(connect, {
    type: "net.connect",
    rule: "imds",
    event: {
      area: "egress",
      addr: "169.254.169.254",
      protocol: "tcp",
      port: 80,
      uid: 1000,
      gid: 1000,
      cgroup: "/system.slice/x.service",
    },
  });
  assert.deepEqual(parseEventLine('{"type":"net.bind","net":{"protocol":"udp","sport":53}}', "l").event, {
    area: "bind",
    port: 53,
    protocol: "udp",
  });
  assert.deepEqual(parseEventLine('{"type":"exec","file":{"path":"/usr/bin/nc"}}', "l").event, {
    area: "exec",
    path: "/usr/bin/nc",
  });
});

Deno.test("parseEventLine() refuses what cannot be decided with an InputError naming the field", () => {
  assert.throws(() => parseEventLine("{", "stdin:1"), /^InputError: stdin:1: not a JSON event line/);
  assert.throws(() => parseEventLine('{"type":"agent.start"}', "l"), /l: type: /);
  assert.throws(() => parseEventLine('{"type":"file.open"}', "l"), /a file\.open event needs file\.path/);
  assert.throws(
    () => parseEventLine('{"type":"net.ingress","net":{"protocol":"tcp","saddr":"1.2.3.4"}}', "l"),
    /needs net\.interface/,
  );
});

Deno.test("parseEventLine() reads a net.forward line as a forwarded packet: destination, protocol, port", () => {
  const net = {
    family: "ipv4",
    protocol: "udp",
    daddr: "203.0.113.9",
    dport: 53,
    saddr: "198.19.7.2",
    sport: 40000,
    interface: "eth0",
    inInterface: "tun0",
  };
  assert.deepEqual(parseEventLine(JSON.stringify({ type: "net.forward", rule: "d", net }), "line"), {
    type: "net.forward",
    rule: "d",
    event: { area: "forward", addr: "203.0.113.9", protocol: "udp", port: 53 },
  });
});

Deno.test("parseEventLine() reads a file.write's op and path, and needs both", () => {
  const line = JSON.stringify({
    type: "file.write",
    rule: "cron",
    op: "create",
    process: { pid: 9, cgroup: { id: 1, path: "/user.slice" } },
    file: { path: "/etc/cron.d", dev: 1, ino: 2 },
  });
  assert.deepEqual(parseEventLine(line, "l"), {
    type: "file.write",
    rule: "cron",
    event: { area: "write", op: "create", path: "/etc/cron.d", cgroup: "/user.slice" },
  });
  assert.throws(
    () => parseEventLine('{"type":"file.write","op":"create"}', "l:3"),
    /l:3: a file.write event needs file\.path/,
  );
  assert.throws(
    () => parseEventLine('{"type":"file.write","op":"chmod","file":{"path":"/x"}}', "l:4"),
    /l:4: op:/,
  );
});

Deno.test("parseEventLine() gives a file.write its program, so that explain names the writer a candidate trusts", () => {
  const line = JSON.stringify({
    type: "file.write",
    rule: "sudoers",
    op: "rename",
    process: { pid: 9, exe: { path: "/usr/bin/dpkg" } },
    file: { path: "/etc/sudoers", dev: 1, ino: 2 },
  });
  const { event } = parseEventLine(line, "l");
  assert.deepEqual(event, { area: "write", op: "rename", path: "/etc/sudoers", exe: "/usr/bin/dpkg" });
  const policy = parsePolicy(
    "apiVersion: aegisbpf.io/v1\nkind: Policy\nmetadata: { name: p, version: 1 }\nspec:\n  mode: enforce\n" +
      "  files:\n    protect: [{ id: sudoers, path: /etc/sudoers }]\n    writers: [{ id: dpkg, exe: /usr/bin/dpkg }]\n",
    "p.yaml",
  );
  assert.deepEqual(decide(compilePolicy(policy), event), {
    decision: "allow",
    writer: { ruleId: 2, ruleName: "dpkg" },
  });
});
