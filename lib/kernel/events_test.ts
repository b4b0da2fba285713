import assert from "node:assert/strict";
import {
  addressWords,
  AEGIS_EVENT,
  decodeEvent,
  EVENT,
  FAMILY,
  FILE_OP,
  HOOK,
  PTRACE_OP,
  type RawEvent,
  rawEvent,
  SIGNAL,
} from "../../ffi/mod.ts";
import type { RuleInfo } from "../policy/plan.ts";
import { RuleTable } from "../policy/rule_table.ts";
import {
  type EventContext,
  EventDecodeError,
  type EventProcess,
  formatAddress,
  formatEvent,
  rfc3339FromBoot,
  rfc3339Nanos,
} from "./events.ts";

const RULES: RuleInfo[] = [
  { id: "default", area: "ingress", action: "deny" },
  { id: "no-shadow", area: "file", action: "deny", path: "/etc/shadow" },
  { id: "no-nc", area: "exec", action: "deny" },
  { id: "block-v6", area: "egress", action: "deny" },
  { id: "no-bind", area: "bind", action: "deny" },
];
const OLD_RULES: RuleInfo[] = [
  { id: "old-default", area: "ingress", action: "deny" },
  { id: "old-shadow", area: "file", action: "deny", path: "/etc/gshadow" },
];

const CONTEXT: EventContext = {
  host: "web-1",
  generations: [{ rules: RuleTable.of(RULES) }, undefined],
  bootToWallNs: 1_700_000_000_000_000_000n,
  cgroupPath: (id) => id === 42 ? "/system.slice/web.service" : undefined,
  interfaceName: (ifindex) => ifindex === 3 ? "eth0" : undefined,
};

type Fields = Partial<Omit<Parameters<typeof rawEvent>[0], "daddrWords" | "saddrWords">> & {
  daddr?: Uint8Array;
  saddr?: Uint8Array;
};

/** A record with plain values; `ts` 5,000,000,123 ns after boot, a file open by cat. */
function raw({ daddr, saddr, ...fields }: Fields): RawEvent {
  return rawEvent({
    tsHi: 1,
    tsLo: 5_000_000_123 - 2 ** 32,
    cgroupIdHi: 0,
    cgroupIdLo: 42,
    inoHi: 0,
    inoLo: 0,
    dev: 0,
    pid: 1234,
    ppid: 1,
    uid: 1000,
    gid: 1001,
    ruleId: 0,
    count: 1,
    ifindex: 0,
    hook: HOOK.FILE_OPEN,
    decision: 0,
    mode: 1,
    family: 0,
    protocol: 0,
    gen: 0,
    flags: 0,
    signal: 0,
    op: 0,
    dport: 0,
    sport: 0,
    comm: "cat",
    ...fields,
    daddrWords: addressWords(daddr ?? new Uint8Array(16)),
    saddrWords: addressWords(saddr ?? new Uint8Array(16)),
  });
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

Deno.test("formatEvent() names what a file.change tried on the denied file, and refuses an unknown op", () => {
  const change = (op: number) =>
    formatEvent(raw({ hook: HOOK.FILE_CHANGE, ruleId: 1, dev: 8, inoLo: 9, op }), CONTEXT);
  assert.deepEqual(change(FILE_OP.TRUNCATE), {
    ts: "2023-11-14T22:13:25.000000123Z",
    host: "web-1",
    type: "file.change",
    decision: "deny",
    mode: "enforce",
    rule: "no-shadow",
    process: PROCESS,
    file: { path: "/etc/shadow", dev: 8, ino: 9 },
    op: "truncate",
    count: 1,
  });
  assert.deepEqual(
    Object.values(FILE_OP).filter((op) => op <= FILE_OP.REMOVEXATTR).map((op) => change(op).op),
    [
      "truncate",
      "unlink",
      "rename",
      "link",
      "chmod",
      "chown",
      "utimes",
      "setattr",
      "setxattr",
      "removexattr",
    ],
  );
  assert.throws(() => change(0), EventDecodeError);
  assert.throws(() => change(FILE_OP.OPEN_WRITE), /Unknown op 11/, "open-write is file.write's alone");
  assert.equal(formatEvent(raw({ ruleId: 1, op: 3 }), CONTEXT).op, undefined, "file.open has no op");
});

Deno.test("formatEvent() names what a file.write tried on the protected inode, and refuses an unknown op", () => {
  const write = (op: number) =>
    formatEvent(raw({ hook: HOOK.FILE_WRITE, ruleId: 1, dev: 8, inoLo: 9, op }), CONTEXT);
  assert.deepEqual(write(FILE_OP.OPEN_WRITE), {
    ts: "2023-11-14T22:13:25.000000123Z",
    host: "web-1",
    type: "file.write",
    decision: "deny",
    mode: "enforce",
    rule: "no-shadow",
    process: PROCESS,
    file: { path: "/etc/shadow", dev: 8, ino: 9 },
    op: "open-write",
    count: 1,
  });
  assert.deepEqual(
    Object.values(FILE_OP).map((op) => write(op).op),
    [
      "truncate",
      "unlink",
      "rename",
      "link",
      "setattr",
      "setattr",
      "setattr",
      "setattr",
      "setxattr",
      "removexattr",
      "open-write",
      "create",
      "create",
      "create",
      "create",
      "unlink",
      "mount",
    ],
  );
  assert.throws(() => write(0), EventDecodeError);
  assert.throws(() => write(18), /Unknown op 18/);
});

Deno.test("formatEvent() dates a file open on the wall clock and names the rule's path", () => {
  const policy = { name: "base", version: 7, sha256: "ab".repeat(32) };
  const event = formatEvent(
    raw({ ruleId: 1, dev: 2049, inoLo: 77, count: 3 }),
    { ...CONTEXT, generations: [{ rules: RuleTable.of(RULES), policy }, undefined] },
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
    raw({ hook: HOOK.EXEC, ruleId: 9, decision: 1, mode: 0, cgroupIdLo: 7, dev: 1, inoLo: 2 }),
    CONTEXT,
  );
  assert.equal(event.type, "exec");
  assert.equal(event.decision, "audit");
  assert.equal(event.mode, "audit");
  assert.equal(event.rule, "#9");
  assert.equal(event.unresolved, "rule");
  assert.deepEqual(event.process && "cgroup" in event.process ? event.process.cgroup : undefined, { id: 7 });
  assert.deepEqual(event.file, { dev: 1, ino: 2 });
  assert.equal(event.net, undefined);
  assert.equal("policy" in event, false);
});

Deno.test("formatEvent() gives a network event the program only where the kernel flags its inode as the exe", () => {
  const connect = (flags: number) =>
    formatEvent(
      raw({ hook: HOOK.CONNECT, ruleId: 3, family: 4, protocol: 6, dport: 443, inoLo: 77, dev: 8, flags }),
      CONTEXT,
    );
  assert.deepEqual((connect(EVENT.EXE).process as EventProcess).exe, { dev: 8, ino: 77 });
  assert.equal(
    (connect(0).process as EventProcess).exe,
    undefined,
    "an inode without the flag is not a program",
  );
});

Deno.test("formatEvent() gives a connect its destination and a bind its source", () => {
  const connect = formatEvent(
    raw({
      hook: HOOK.CONNECT,
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
    raw({ hook: HOOK.BIND, ruleId: 4, family: 4, protocol: 17, saddr: new Uint8Array(16), sport: 53 }),
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
      hook: HOOK.INGRESS,
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
    protocol: "sctp",
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

Deno.test("formatEvent() names rules from the table of the generation that decided", () => {
  const generations: EventContext["generations"] = [
    { rules: RuleTable.of(OLD_RULES), policy: { name: "base", version: 6, sha256: "cd".repeat(32) } },
    { rules: RuleTable.of(RULES), policy: { name: "base", version: 7, sha256: "ab".repeat(32) } },
  ];
  const old = formatEvent(raw({ ruleId: 1, gen: 0 }), { ...CONTEXT, generations });
  assert.equal(old.rule, "old-shadow");
  assert.equal(old.policy?.version, 6);
  assert.equal(old.file?.path, "/etc/gshadow");
  const current = formatEvent(raw({ ruleId: 1, gen: 1 }), { ...CONTEXT, generations });
  assert.equal(current.rule, "no-shadow");
  assert.equal(current.policy?.version, 7);
  assert.equal(current.unresolved, undefined);
});

Deno.test("formatEvent() never borrows the other generation's table when the deciding one is unknown", () => {
  const event = formatEvent(raw({ ruleId: 1, gen: 1 }), CONTEXT);
  assert.equal(event.rule, "#1");
  assert.equal(event.unresolved, "generation");
  assert.equal(event.policy, undefined);
  assert.deepEqual(event.file, { dev: 0, ino: 0 }, "no path from generation 0's rule 1");
});

Deno.test("formatEvent() prints a summary with its count, its pid and no made-up fields", () => {
  const connect = formatEvent(
    raw({ hook: HOOK.CONNECT, ruleId: 3, flags: EVENT.SUMMARY, count: 41, pid: 77, comm: "", cgroupIdLo: 0 }),
    CONTEXT,
  );
  const { ts: _, ...rest } = connect;
  assert.deepEqual(rest, {
    host: "web-1",
    type: "net.connect",
    decision: "deny",
    mode: "enforce",
    rule: "block-v6",
    process: { pid: 77 },
    count: 41,
    summary: true,
  });
  const ingress = formatEvent(
    raw({ hook: HOOK.INGRESS, flags: EVENT.SUMMARY, count: 9, pid: 0x0a000001 }),
    CONTEXT,
  );
  assert.equal(ingress.process, undefined, "an ingress summary's pid field holds a source, not a process");
  assert.equal(ingress.net, undefined);
  assert.equal(ingress.summary, true);
  const file = formatEvent(raw({ ruleId: 1, flags: EVENT.SUMMARY, count: 2 }), CONTEXT);
  assert.equal(file.file, undefined);
  assert.equal(JSON.parse(JSON.stringify(file)).summary, true);
});

Deno.test("formatEvent() throws EventDecodeError with the raw values for values it does not know", () => {
  const cases: [Fields, string][] = [
    [{ hook: HOOK.COUNT }, "hook"],
    [{ hook: 255 }, "hook"],
    [{ decision: 2 }, "decision"],
    [{ mode: 7 }, "mode"],
    [{ gen: 2 }, "gen"],
    [{ flags: 0x80 }, "flags"],
    [{ signal: 3 }, "signal"],
    [{ hook: HOOK.CONNECT, family: 0 }, "family"],
    [{ hook: HOOK.INGRESS, family: 10 }, "family"],
  ];
  for (const [fields, field] of cases) {
    const record = raw(fields);
    assert.throws(() => formatEvent(record, CONTEXT), (error) => {
      assert.ok(error instanceof EventDecodeError);
      assert.ok(error instanceof RangeError);
      assert.equal(error.field, field);
      assert.equal(error.raw.hook, record.hook);
      assert.equal(error.raw.family, record.family);
      assert.match(error.message, new RegExp(`^Unknown ${field} \\d+`));
      return true;
    });
  }
  // A network summary has no addresses: family 0 is what the kernel writes there.
  assert.equal(formatEvent(raw({ hook: HOOK.BIND, flags: EVENT.SUMMARY }), CONTEXT).type, "net.bind");
});

Deno.test("formatEvent() reports the signal the kernel sent and the cgroup a scope escape was refused", () => {
  const killed = formatEvent(raw({ hook: HOOK.EXEC, ruleId: 1, signal: SIGNAL.KILL }), CONTEXT);
  assert.deepEqual(killed.signal, { name: "SIGKILL", by: "kernel" });
  assert.equal(formatEvent(raw({ ruleId: 1 }), CONTEXT).signal, undefined);
  const escape = formatEvent(
    raw({ hook: HOOK.SCOPE, ruleId: 1, inoLo: 77, signal: SIGNAL.TERM }),
    { ...CONTEXT, cgroupPath: (id) => id === 77 ? "/exempt" : undefined },
  );
  assert.equal(escape.type, "scope.escape");
  assert.deepEqual(escape.move, { to: { id: 77, path: "/exempt" } });
  assert.equal(escape.file, undefined);
  assert.equal(escape.net, undefined);
  assert.deepEqual(escape.signal, { name: "SIGTERM", by: "kernel" });
});

Deno.test("formatEvent() names the ptrace operation and the target outside the scope; an unknown op throws", () => {
  const event = formatEvent(
    raw({ hook: HOOK.PTRACE, ruleId: 1, inoLo: 77, dev: 4321, op: PTRACE_OP.VM_WRITE }),
    { ...CONTEXT, cgroupPath: (id) => id === 77 ? "/victims" : id === 42 ? "/canary" : undefined },
  );
  assert.equal(event.type, "process.ptrace");
  assert.deepEqual(event.ptrace, {
    op: "vm_writev",
    target: { pid: 4321, cgroup: { id: 77, path: "/victims" } },
  });
  assert.deepEqual(event.process && "cgroup" in event.process && event.process.cgroup, {
    id: 42,
    path: "/canary",
  });
  assert.equal(event.file, undefined);
  const ops = Object.values(PTRACE_OP).map((op) =>
    formatEvent(raw({ hook: HOOK.PTRACE, op }), CONTEXT).ptrace?.op
  );
  assert.deepEqual(ops, ["attach", "traceme", "vm_readv", "vm_writev", "proc_open", "pidfd_getfd", "other"]);
  assert.throws(
    () => formatEvent(raw({ hook: HOOK.PTRACE, op: 0 }), CONTEXT),
    /^EventDecodeError: Unknown op 0/,
  );
});

Deno.test("decodeEvent() reads every field at its offset", () => {
  const bytes = new Uint8Array(AEGIS_EVENT.size);
  const view = new DataView(bytes.buffer);
  const f = AEGIS_EVENT.fields;
  view.setBigUint64(f.ts_boot_ns.offset, 0x1234_5678_9abc_def0n, true);
  view.setBigUint64(f.cgroup_id.offset, 0xffff_ffff_0000_0001n, true);
  view.setBigUint64(f.ino.offset, 2n ** 63n + 5n, true);
  const u32s = { dev: 1, pid: 2, ppid: 3, uid: 4, gid: 5, rule_id: 6, count: 7, ifindex: 8 } as const;
  for (const [name, value] of Object.entries(u32s)) {
    view.setUint32(f[name as keyof typeof u32s].offset, 0xf000_0000 + value, true);
  }
  view.setUint16(f.dport.offset, 0xfffe, true);
  view.setUint16(f.sport.offset, 0x0102, true);
  const u8s = {
    hook: 9,
    decision: 10,
    mode: 11,
    family: 12,
    protocol: 13,
    gen: 14,
    flags: 15,
    signal: 0,
    op: 1,
  } as const;
  for (const [name, value] of Object.entries(u8s)) {
    view.setUint8(f[name as keyof typeof u8s].offset, 0xf0 + value);
  }
  bytes.set(ipv6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), f.daddr.offset);
  bytes.set([198, 18, 0, 1], f.saddr.offset);
  bytes.set(new TextEncoder().encode("curl\0junk"), f.comm.offset);
  const event = decodeEvent(bytes);
  assert.equal(event.tsBootNs, 0x1234_5678_9abc_def0n);
  assert.equal(event.cgroupId, 0xffff_ffff_0000_0001n);
  assert.equal(event.ino, 2n ** 63n + 5n);
  assert.deepEqual(
    [event.dev, event.pid, event.ppid, event.uid, event.gid, event.ruleId, event.count, event.ifindex],
    [1, 2, 3, 4, 5, 6, 7, 8].map((value) => 0xf000_0000 + value),
  );
  assert.equal(event.dport, 0xfffe);
  assert.equal(event.sport, 0x0102);
  assert.deepEqual(
    [
      event.hook,
      event.decision,
      event.mode,
      event.family,
      event.protocol,
      event.gen,
      event.flags,
      event.signal,
      event.op,
    ],
    [9, 10, 11, 12, 13, 14, 15, 0, 1].map((value) => 0xf0 + value),
  );
  assert.equal(formatAddress(event.daddr, "ipv6"), "2001:db8::1");
  assert.deepEqual([...event.saddr], [198, 18, 0, 1, ...new Array(12).fill(0)]);
  assert.equal(event.comm, "curl");
  assert.throws(() => decodeEvent(new Uint8Array(AEGIS_EVENT.size - 1)), RangeError);
});

Deno.test("decodeEvent() reads comm up to the first NUL, whole when there is none, UTF-8 beyond ASCII", () => {
  const comm = (bytes: number[]) => {
    const record = new Uint8Array(AEGIS_EVENT.size);
    record.set(bytes, AEGIS_EVENT.fields.comm.offset);
    return decodeEvent(record).comm;
  };
  const ascii = (text: string) => [...new TextEncoder().encode(text)];
  assert.equal(comm([]), "");
  assert.equal(comm(ascii("a\0b")), "a");
  assert.equal(comm(ascii("fifteen-chars-x")), "fifteen-chars-x");
  assert.equal(comm(ascii("sixteen-chars-xy")), "sixteen-chars-xy", "no NUL: all 16 bytes");
  assert.equal(comm(ascii('say "hi"\\\t')), 'say "hi"\\\t');
  assert.equal(comm(ascii("größe")), "größe");
  assert.equal(comm([0x61, 0xff, 0x62]), "a\ufffdb", "invalid UTF-8 is replaced, not dropped");
  assert.equal(comm(ascii("bash")), "bash", "again from the cache");
  assert.equal(comm(ascii("bas")), "bas", "a prefix of a cached name is its own name");
  const event = formatEvent(raw({ comm: 'a"\n' }), CONTEXT);
  assert.equal(JSON.parse(JSON.stringify(event)).process.comm, 'a"\n');
});

Deno.test("rfc3339FromBoot() is exact where a double sum of the nanoseconds would not be", () => {
  // 2^53 + 1 ns after boot (104 days): not a double.
  const boot = 2n ** 53n + 1n;
  const offset = 1_700_000_000_123_456_788n;
  const hi = Number(boot >> 32n), lo = Number(boot & 0xffff_ffffn);
  // The reference: BigInt arithmetic and Date, which the hot path avoids.
  const wall = boot + offset;
  const expected = `${new Date(Number(wall / 1_000_000n)).toISOString().slice(0, 19)}.${
    String(wall % 1_000_000_000n).padStart(9, "0")
  }Z`;
  assert.equal(rfc3339FromBoot(hi, lo, offset), expected);
  assert.notEqual(expected.slice(-11, -1), String((Number(boot) + Number(offset)) % 1e9).padStart(9, "0"));
  assert.equal(rfc3339FromBoot(0xffff_ffff, 0xffff_ffff, 0n), "2554-07-21T23:34:33.709551615Z");
  assert.equal(rfc3339FromBoot(0, 5, -10n), "1969-12-31T23:59:59.999999995Z");
  assert.equal(rfc3339FromBoot(0, 999_999_999, 1n), "1970-01-01T00:00:01.000000000Z");
});

Deno.test("formatEvent() reports a refused AF_PACKET socket with its type and no address", () => {
  const event = formatEvent(
    raw({ hook: HOOK.SOCKET, ruleId: 0, family: FAMILY.PACKET, protocol: 3 }),
    CONTEXT,
  );
  assert.equal(event.type, "net.socket");
  assert.deepEqual(event.net, { family: "packet", protocol: "raw" });
  assert.throws(() => formatEvent(raw({ hook: HOOK.SOCKET, family: 4 }), CONTEXT), EventDecodeError);
});

Deno.test("formatEvent() reports a refused route with its first hop and no port, and a routed packet's route", () => {
  const hop = new Uint8Array(16);
  hop.set([0x20, 0x01, 0x0d, 0xb8], 0);
  hop[15] = 2;
  const route = formatEvent(
    raw({ hook: HOOK.ROUTE, ruleId: 1, family: FAMILY.IPV6, protocol: 17, flags: EVENT.RTHDR, daddr: hop }),
    CONTEXT,
  );
  assert.equal(route.type, "net.route");
  assert.deepEqual(route.net, { family: "ipv6", protocol: "udp", daddr: "2001:db8::2", route: "rthdr" });
  const packet = formatEvent(
    raw({
      hook: HOOK.PACKET,
      family: FAMILY.IPV4,
      protocol: 6,
      flags: EVENT.SRCROUTE,
      daddr: new Uint8Array([198, 18, 0, 2, ...new Uint8Array(12)]),
      dport: 443,
    }),
    CONTEXT,
  );
  assert.deepEqual(packet.net, {
    family: "ipv4",
    protocol: "tcp",
    daddr: "198.18.0.2",
    dport: 443,
    route: "srcroute",
  });
  assert.equal(formatEvent(raw({ hook: HOOK.PACKET, family: FAMILY.IPV4 }), CONTEXT).net?.route, undefined);
});

Deno.test("formatEvent() reports a refused AF_XDP socket and a SOCK_PACKET socket by family and type", () => {
  const xdp = formatEvent(raw({ hook: HOOK.SOCKET, ruleId: 0, family: FAMILY.XDP, protocol: 3 }), CONTEXT);
  assert.deepEqual(xdp.net, { family: "xdp", protocol: "raw" });
  const old = formatEvent(
    raw({ hook: HOOK.SOCKET, ruleId: 0, family: FAMILY.PACKET, protocol: 10 }),
    CONTEXT,
  );
  assert.deepEqual(old.net, { family: "packet", protocol: "packet" });
});

Deno.test("formatEvent() carries the deciding rule's tags, and none for a rule without them", () => {
  const tagged: RuleInfo[] = [
    ...RULES.slice(0, 1),
    { id: "no-shadow", area: "file", action: "deny", path: "/etc/shadow", tags: ["T1003.008", "pci"] },
  ];
  const context = { ...CONTEXT, generations: [{ rules: RuleTable.of(tagged) }, undefined] } as EventContext;
  const event = formatEvent(raw({ ruleId: 1, dev: 2049, inoLo: 77 }), context);
  assert.deepEqual(event.tags, ["T1003.008", "pci"]);
  assert.equal(formatEvent(raw({ ruleId: 1, dev: 2049, inoLo: 77 }), CONTEXT).tags, undefined);
});
