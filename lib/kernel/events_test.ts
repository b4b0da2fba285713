import assert from "node:assert/strict";
import type { RawEvent } from "../../ffi/mod.ts";
import type { RuleInfo } from "../policy/plan.ts";
import { type EventContext, formatAddress, formatEvent, rfc3339Nanos } from "./events.ts";

const RULES: RuleInfo[] = [
  { id: "default", area: "ingress", action: "deny" },
  { id: "no-shadow", area: "file", action: "deny", path: "/etc/shadow" },
  { id: "no-nc", area: "exec", action: "deny" },
  { id: "block-v6", area: "egress", action: "deny" },
  { id: "no-bind", area: "bind", action: "deny" },
];

const CONTEXT: EventContext = {
  host: "web-1",
  rules: RULES,
  bootToWallNs: 1_700_000_000_000_000_000n,
  cgroupPath: (id) => id === 42n ? "/system.slice/web.service" : undefined,
  interfaceName: (ifindex) => ifindex === 3 ? "eth0" : undefined,
};

const HOOK = { fileOpen: 0, exec: 1, connect: 2, sendmsg: 3, bind: 4, ingress: 5 } as const;

function raw(fields: Partial<RawEvent>): RawEvent {
  return {
    tsBootNs: 5_000_000_123n,
    cgroupId: 42n,
    ino: 0n,
    dev: 0,
    pid: 1234,
    ppid: 1,
    uid: 1000,
    gid: 1001,
    ruleId: 0,
    count: 1,
    ifindex: 0,
    hook: HOOK.fileOpen,
    decision: 0,
    mode: 1,
    family: 0,
    protocol: 0,
    gen: 0,
    dport: 0,
    sport: 0,
    daddr: new Uint8Array(16),
    saddr: new Uint8Array(16),
    comm: "cat",
    ...fields,
  };
}

function ipv6(...groups: number[]): Uint8Array {
  const bytes = new Uint8Array(16);
  groups.forEach((group, i) => {
    bytes[i * 2] = group >> 8;
    bytes[i * 2 + 1] = group & 0xff;
  });
  return bytes;
}

const PROCESS = {
  pid: 1234,
  ppid: 1,
  uid: 1000,
  gid: 1001,
  comm: "cat",
  cgroup: { id: 42, path: "/system.slice/web.service" },
};

Deno.test("formatEvent() dates a file open on the wall clock and names the rule's path", () => {
  const policy = { name: "base", version: 7, sha256: "ab".repeat(32) };
  const event = formatEvent(
    raw({ ruleId: 1, dev: 2049, ino: 77n, count: 3 }),
    { ...CONTEXT, policy },
  );
  assert.deepEqual(event, {
    ts: "2023-11-14T22:13:25.000000123Z",
    host: "web-1",
    type: "file.open",
    decision: "deny",
    mode: "enforce",
    rule: "no-shadow",
    policy,
    process: PROCESS,
    file: { path: "/etc/shadow", dev: 2049, ino: 77 },
    count: 3,
  });
});

Deno.test("formatEvent() reports an audited exec of an unknown rule by number and cgroup by id", () => {
  const event = formatEvent(
    raw({ hook: HOOK.exec, ruleId: 9, decision: 1, mode: 0, cgroupId: 7n, dev: 1, ino: 2n }),
    CONTEXT,
  );
  assert.equal(event.type, "exec");
  assert.equal(event.decision, "audit");
  assert.equal(event.mode, "audit");
  assert.equal(event.rule, "#9");
  assert.deepEqual(event.process?.cgroup, { id: 7 });
  assert.deepEqual(event.file, { dev: 1, ino: 2 });
  assert.equal(event.net, undefined);
  assert.equal("policy" in event, false);
});

Deno.test("formatEvent() gives a connect its destination and a bind its source", () => {
  const connect = formatEvent(
    raw({
      hook: HOOK.connect,
      ruleId: 3,
      family: 6,
      protocol: 6,
      daddr: ipv6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
      dport: 443,
    }),
    CONTEXT,
  );
  assert.equal(connect.type, "net.connect");
  assert.deepEqual(connect.net, { family: "ipv6", protocol: "tcp", daddr: "2001:db8::1", dport: 443 });
  assert.deepEqual(connect.process, PROCESS);
  assert.equal(connect.file, undefined);

  const bind = formatEvent(
    raw({ hook: HOOK.bind, ruleId: 4, family: 4, protocol: 17, saddr: new Uint8Array(16), sport: 53 }),
    CONTEXT,
  );
  assert.equal(bind.type, "net.bind");
  assert.deepEqual(bind.net, { family: "ipv4", protocol: "udp", saddr: "0.0.0.0", sport: 53 });
});

Deno.test("formatEvent() reports ingress without a process, with both ends and the interface", () => {
  const saddr = new Uint8Array(16);
  saddr.set([198, 18, 0, 1]);
  const daddr = new Uint8Array(16);
  daddr.set([198, 18, 0, 2]);
  const event = formatEvent(
    raw({
      hook: HOOK.ingress,
      ruleId: 0,
      family: 4,
      protocol: 132,
      ifindex: 3,
      saddr,
      daddr,
      sport: 40000,
      dport: 22,
      count: 12,
    }),
    CONTEXT,
  );
  assert.equal(event.type, "net.ingress");
  assert.equal(event.rule, "default");
  assert.equal(event.process, undefined);
  assert.equal(event.count, 12);
  assert.deepEqual(event.net, {
    family: "ipv4",
    protocol: "132",
    daddr: "198.18.0.2",
    dport: 22,
    saddr: "198.18.0.1",
    sport: 40000,
    interface: "eth0",
  });
});

Deno.test("formatAddress() prints IPv4 as a dotted quad from the first four bytes", () => {
  const bytes = new Uint8Array(16);
  bytes.set([127, 0, 0, 2]);
  bytes[15] = 9;
  assert.equal(formatAddress(bytes, "ipv4"), "127.0.0.2");
  assert.equal(formatAddress(new Uint8Array([255, 255, 255, 255]), "ipv4"), "255.255.255.255");
});

Deno.test("formatAddress() compresses IPv6 as RFC 5952 section 4 says", () => {
  const cases: [Uint8Array, string][] = [
    [ipv6(), "::"],
    [ipv6(0, 0, 0, 0, 0, 0, 0, 1), "::1"],
    [ipv6(1), "1::"],
    [ipv6(0xfe80, 0, 0, 0, 0x1, 0x2, 0x3, 0x4), "fe80::1:2:3:4"],
    // 4.1: leading zeros dropped; 4.3: lowercase.
    [ipv6(0x2001, 0x0db8, 0, 0, 0, 0, 0, 0xabcd), "2001:db8::abcd"],
    // 4.2.2: a single zero group is not shortened.
    [ipv6(0x2001, 0xdb8, 0, 1, 1, 1, 1, 1), "2001:db8:0:1:1:1:1:1"],
    // 4.2.3: the longest run is shortened; of two equal runs, the first.
    [ipv6(0x2001, 0, 0, 1, 0, 0, 0, 1), "2001:0:0:1::1"],
    [ipv6(0x2001, 0xdb8, 0, 0, 1, 0, 0, 1), "2001:db8::1:0:0:1"],
    [
      ipv6(0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff),
      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    ],
  ];
  for (const [bytes, text] of cases) assert.equal(formatAddress(bytes, "ipv6"), text);
});

Deno.test("rfc3339Nanos() prints UTC with exactly nine fraction digits", () => {
  assert.equal(rfc3339Nanos(0n), "1970-01-01T00:00:00.000000000Z");
  assert.equal(rfc3339Nanos(1_700_000_000_123_456_789n), "2023-11-14T22:13:20.123456789Z");
  assert.equal(rfc3339Nanos(1_000_000_000_000_000_001n), "2001-09-09T01:46:40.000000001Z");
  assert.equal(rfc3339Nanos(1_999_999_999n), "1970-01-01T00:00:01.999999999Z");
});
