import assert from "node:assert/strict";
import type { BpfObject } from "../../ffi/mod.ts";
import { loadPrograms, PROGRAMS } from "../../lib/kernel/object.ts";
import { rootTest } from "../support/privileged.ts";
import { ipv4Rule, writeRules, xdpVerdict } from "../support/slice.ts";

// The XDP parser against crafted frames, run by the kernel (BPF_PROG_TEST_RUN through bpftool) with
// ingress ifindex 1: tags and extension headers must not hide a packet from the rules.

const MACS = [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2];
const IPV4 = [0x08, 0x00];
const IPV6 = [0x86, 0xdd];
const DOT1Q = [0x81, 0x00, 0x00, 0x00]; // VLAN id 0: a priority tag, delivered to the untagged device
const DOT1AD = [0x88, 0xa8, 0x00, 0x05];
const TCP_SYN_TO_22 = [0x30, 0x39, 0, 22, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0];
const DENIED_V4 = [192, 0, 2, 1];
const DENIED_V6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const HOST_V6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const DSTOPTS = 60;

function ipv4Tcp(): number[] {
  return [0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, ...DENIED_V4, 192, 0, 2, 2, ...TCP_SYN_TO_22];
}

/** IPv6 from `source` (the denied one by default) with `extensions` destination-options headers. */
function ipv6(
  extensions: number,
  nextHeader: number,
  payload: number[],
  source = DENIED_V6,
  hopLimit = 64,
): number[] {
  const chain: number[] = [];
  for (let i = 0; i < extensions; i++) {
    chain.push(i === extensions - 1 ? nextHeader : DSTOPTS, 0, 1, 4, 0, 0, 0, 0);
  }
  const length = chain.length + payload.length;
  const first = extensions > 0 ? DSTOPTS : nextHeader;
  const header = [0x60, 0, 0, 0, length >> 8, length & 0xff, first, hopLimit];
  return [...header, ...source, ...HOST_V6, ...chain, ...payload];
}

const DEFAULT_RULES = [
  ipv4Rule("192.0.2.1/32", 1),
  ipv4Rule("2001:db8::1/128", 2, { port: 22, protocol: "tcp" }),
];

function withXdp(
  defaultDrop: boolean,
  fn: (object: BpfObject) => Promise<void>,
  rules = DEFAULT_RULES,
): () => Promise<void> {
  return async () => {
    const object = loadPrograms([PROGRAMS.ingress]);
    try {
      writeRules(object, {
        plan: { mode: "enforce", ingress: { interfaces: [], failsafe: [], rules } },
        interfaces: [{ ifindex: 1, name: "lo", defaultDrop, ruleId: 0 }],
      });
      await fn(object);
    } finally {
      object.close();
    }
  };
}

rootTest(
  "[root] XDP filters the inner packet of 802.1Q and 802.1ad tagged frames",
  withXdp(false, async (object) => {
    assert.equal(await xdpVerdict(object, [...MACS, ...IPV4, ...ipv4Tcp()]), "DROP", "untagged");
    assert.equal(
      await xdpVerdict(object, [...MACS, ...DOT1Q, ...IPV4, ...ipv4Tcp()]),
      "DROP",
      "priority tag",
    );
    assert.equal(
      await xdpVerdict(object, [...MACS, ...DOT1AD, ...DOT1Q, ...IPV4, ...ipv4Tcp()]),
      "DROP",
      "QinQ",
    );
    assert.equal(
      await xdpVerdict(object, [...MACS, ...DOT1Q, 0x08, 0x06, ...new Array(28).fill(0)]),
      "PASS",
      "ARP",
    );
  }),
);

rootTest(
  "[root] XDP walks IPv6 extension headers to the ports and refuses chains too long to walk",
  withXdp(false, async (object) => {
    for (const extensions of [0, 1, 4]) {
      assert.equal(
        await xdpVerdict(object, [...MACS, ...IPV6, ...ipv6(extensions, 6, TCP_SYN_TO_22)]),
        "DROP",
        `${extensions} extension headers`,
      );
    }
    assert.equal(
      await xdpVerdict(object, [...MACS, ...IPV6, ...ipv6(5, 6, TCP_SYN_TO_22)]),
      "DROP",
      "5: refused",
    );
    const toPort80 = [...TCP_SYN_TO_22];
    toPort80[3] = 80;
    assert.equal(
      await xdpVerdict(object, [...MACS, ...IPV6, ...ipv6(1, 6, toPort80)]),
      "PASS",
      "other ports pass",
    );
  }),
);

const OTHER_V6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3];

/** An ICMPv6 message of `type` (with a target address, as neighbour discovery carries). */
function icmp6(type: number): number[] {
  return [type, 0, 0, 0, 0, 0, 0, 0, ...HOST_V6];
}

rootTest(
  "[root] XDP lets neighbour discovery with hop limit 255 through a default drop, but nothing else of ICMPv6",
  withXdp(true, async (object) => {
    const frame = (type: number, hopLimit: number) => [
      ...MACS,
      ...IPV6,
      ...ipv6(0, 58, icmp6(type), OTHER_V6, hopLimit),
    ];
    for (const type of [133, 134, 135, 136]) {
      assert.equal(await xdpVerdict(object, frame(type, 255)), "PASS", `type ${type}, hop limit 255`);
      assert.equal(
        await xdpVerdict(object, frame(type, 64)),
        "DROP",
        `type ${type} forwarded (hop limit 64)`,
      );
    }
    for (const type of [130, 131, 132, 143]) {
      assert.equal(await xdpVerdict(object, frame(type, 1)), "PASS", `listener message ${type}, hop limit 1`);
    }
    assert.equal(await xdpVerdict(object, frame(137, 255)), "DROP", "a Redirect follows the default");
    assert.equal(await xdpVerdict(object, frame(128, 255)), "DROP", "echo request: default drop");
  }),
);

rootTest(
  "[root] XDP drops a Router Advertisement and a Redirect from a denied source, and passes solicitation from an allowed one",
  withXdp(false, async (object) => {
    const from = (
      source: number[],
      type: number,
    ) => [...MACS, ...IPV6, ...ipv6(0, 58, icmp6(type), source, 255)];
    assert.equal(
      await xdpVerdict(object, from(DENIED_V6, 134)),
      "DROP",
      "Router Advertisement from the denied source",
    );
    assert.equal(await xdpVerdict(object, from(DENIED_V6, 137)), "DROP", "Redirect from the denied source");
    assert.equal(
      await xdpVerdict(object, from(DENIED_V6, 135)),
      "DROP",
      "even a solicitation from the denied source",
    );
    assert.equal(
      await xdpVerdict(object, from(OTHER_V6, 135)),
      "PASS",
      "solicitation from an allowed source",
    );
    assert.equal(
      await xdpVerdict(object, from(OTHER_V6, 134)),
      "PASS",
      "advertisement from an allowed source",
    );
  }, [ipv4Rule("2001:db8::1/128", 1)]),
);

rootTest(
  "[root] XDP matches an IPv4-mapped IPv6 source (::ffff:a.b.c.d) as the IPv4 address",
  withXdp(false, async (object) => {
    const mapped = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...DENIED_V4];
    assert.equal(await xdpVerdict(object, [...MACS, ...IPV6, ...ipv6(0, 6, TCP_SYN_TO_22, mapped)]), "DROP");
  }),
);

rootTest(
  "[root] XDP lets an unwalkable IPv6 chain through a default-pass interface unless a rule could be evaded",
  withXdp(false, async (object) => {
    const tooLong = [...MACS, ...IPV6, ...ipv6(5, 6, TCP_SYN_TO_22, HOST_V6)];
    assert.equal(await xdpVerdict(object, tooLong), "PASS", "no port rule to evade, default pass");
    const allowed = [...MACS, ...IPV6, ...ipv6(5, 6, TCP_SYN_TO_22, DENIED_V6)];
    assert.equal(await xdpVerdict(object, allowed), "PASS", "an address allow rule decides it");
  }, [ipv4Rule("2001:db8::1/128", 1, { action: "allow" })]),
);

/** IPv4 from the denied source carrying `payload` of `protocol`; `flags` is the fragment word (MF = 0x2000). */
function ipv4(protocol: number, payload: number[], flags = 0x4000): number[] {
  const length = 20 + payload.length;
  return [
    0x45,
    0,
    length >> 8,
    length & 0xff,
    0,
    0,
    flags >> 8,
    flags & 0xff,
    64,
    protocol,
    0,
    0,
    ...DENIED_V4,
    192,
    0,
    2,
    2,
    ...payload,
  ];
}

/** The first 8 bytes of a UDP-Lite, SCTP or DCCP header to `port` (all start with source and destination port). */
function portsTo(port: number): number[] {
  return [0x30, 0x39, port >> 8, port & 0xff, 0, 0, 0, 0, 0, 0, 0, 0];
}

const PORT_22_ANY_PROTOCOL = [
  ipv4Rule("192.0.2.0/24", 1, { port: 22 }),
  ipv4Rule("2001:db8::/64", 2, { port: 22 }),
];

rootTest(
  "[root] XDP reads the ports of UDP-Lite, SCTP and DCCP, so a port rule without protocol drops them",
  withXdp(false, async (object) => {
    for (const [name, protocol] of [["UDP-Lite", 136], ["SCTP", 132], ["DCCP", 33], ["TCP", 6]] as const) {
      assert.equal(
        await xdpVerdict(object, [...MACS, ...IPV4, ...ipv4(protocol, portsTo(22))]),
        "DROP",
        name,
      );
      assert.equal(
        await xdpVerdict(object, [...MACS, ...IPV6, ...ipv6(1, protocol, portsTo(22))]),
        "DROP",
        `${name} over IPv6`,
      );
      assert.equal(
        await xdpVerdict(object, [...MACS, ...IPV4, ...ipv4(protocol, portsTo(80))]),
        "PASS",
        `${name} to another port`,
      );
    }
  }, PORT_22_ANY_PROTOCOL),
);

rootTest(
  "[root] XDP refuses a first fragment cut before its ports where a port rule could be evaded",
  withXdp(false, async (object) => {
    const cut = [0x30, 0x39]; // the source port only
    for (const protocol of [6, 17, 136, 132]) {
      assert.equal(
        await xdpVerdict(object, [...MACS, ...IPV4, ...ipv4(protocol, cut, 0x2000)]),
        "DROP",
        `IPv4 first fragment of protocol ${protocol}`,
      );
    }
    const fragmentHeader = [17, 0, 0, 1, 0, 0, 0, 7]; // next header UDP, offset 0, more fragments
    const ip6 = ipv6(0, 44, [...fragmentHeader, ...cut]);
    assert.equal(await xdpVerdict(object, [...MACS, ...IPV6, ...ip6]), "DROP", "IPv6 first fragment");
    // The same fragment carrying its ports is decided by them.
    assert.equal(
      await xdpVerdict(object, [...MACS, ...IPV4, ...ipv4(17, portsTo(80), 0x2000)]),
      "PASS",
      "a first fragment with its ports",
    );
  }, PORT_22_ANY_PROTOCOL),
);

rootTest(
  "[root] XDP passes a cut first fragment on a default-pass interface with no port rule to evade",
  withXdp(false, async (object) => {
    assert.equal(await xdpVerdict(object, [...MACS, ...IPV4, ...ipv4(17, [0x30, 0x39], 0x2000)]), "PASS");
  }, [ipv4Rule("198.51.100.0/24", 1)]),
);
