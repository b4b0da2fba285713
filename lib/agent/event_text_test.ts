import assert from "node:assert/strict";
import { palette } from "../text/palette.ts";
import { eventLine } from "./event_text.ts";

const plain = palette(false);

Deno.test("eventLine() shows time to the millisecond, decision, type, rule, process and destination", () => {
  const line = eventLine({
    ts: "2026-11-23T13:05:12.761234567Z",
    host: "web-1",
    type: "net.connect",
    decision: "deny",
    mode: "enforce",
    rule: "imds",
    policy: { name: "p", version: 7, sha256: "0".repeat(64) },
    process: { pid: 42, ppid: 1, uid: 1000, gid: 1000, comm: "curl", cgroup: { id: 9, path: "/user.slice" } },
    net: { family: "ipv4", protocol: "tcp", daddr: "169.254.169.254", dport: 80 },
    count: 3,
  }, plain);
  assert.equal(
    line,
    "2026-11-23T13:05:12.761Z  deny   net.connect   rule=imds             curl[42] uid=1000 cgroup=/user.slice  " +
      "tcp 169.254.169.254:80  x3",
  );
});

Deno.test("eventLine() shows files, IPv6 in brackets, routes, audit in enforce-less mode, and agent event fields", () => {
  assert.match(
    eventLine({
      ts: "t",
      type: "file.open",
      decision: "audit",
      mode: "audit",
      rule: "r",
      file: { path: "/etc/shadow", dev: 1, ino: 2 },
    }, plain),
    /audit {2}file\.open .*\/etc\/shadow$/,
  );
  assert.match(
    eventLine({
      ts: "t",
      type: "net.ingress",
      decision: "deny",
      mode: "audit",
      rule: "r",
      net: { protocol: "tcp", saddr: "2001:db8::1", sport: 5, dport: 22, interface: "eth0" },
    }, plain),
    /tcp \[2001:db8::1\]:5 -> :22 on eth0 {2}\(mode audit\)$/,
  );
  assert.match(
    eventLine({
      ts: "t",
      type: "net.route",
      decision: "deny",
      mode: "enforce",
      rule: "network.egress.sourceRoutes",
      net: { family: "ipv6", protocol: "udp", daddr: "2001:db8::2", route: "rthdr" },
    }, plain),
    /udp \[2001:db8::2\] by rthdr$/,
  );
  assert.match(
    eventLine({ ts: "t", type: "break_glass.on", reason: "INC-1" }, plain),
    /- {2,}break_glass\.on .*reason=INC-1$/,
  );
  assert.ok(
    eventLine({ ts: "t", type: "exec", decision: "deny" }, palette(true)).includes("\x1b[31mdeny \x1b[39m"),
  );
});

Deno.test("eventLine() prints control characters a process put in its comm or a path as \\xNN", () => {
  const line = eventLine({
    ts: "t",
    type: "exec",
    decision: "deny",
    rule: "r",
    process: { pid: 1, comm: "\x1b[2Jevil\x9b" },
    file: { path: "/tmp/a\nb" },
    note: "\x07",
  }, plain);
  assert.ok(line.includes("\\x1b[2Jevil\\u009b[1]"), line);
  assert.ok(line.includes("/tmp/a\\x0ab"), line);
  assert.ok(line.includes("note=\\x07"), line);
  const control = [...line].filter((c) =>
    c.charCodeAt(0) < 0x20 || (c.charCodeAt(0) >= 0x7f && c.charCodeAt(0) < 0xa0)
  );
  assert.deepEqual(control, [], "no control character left");
});
