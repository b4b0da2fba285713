import assert from "node:assert/strict";
import {
  cidrContains,
  CidrError,
  clearHostBits,
  hasHostBits,
  isPlainIpv4Network,
  networkOf,
  parseCidr,
  unmapIpv4,
} from "./cidr.ts";

Deno.test("parseCidr() reads IPv4 networks and bare addresses", () => {
  assert.deepEqual(parseCidr("10.0.0.0/8"), {
    family: 4,
    addr: new Uint8Array([10, 0, 0, 0]),
    prefixLength: 8,
  });
  assert.deepEqual(parseCidr("169.254.169.254"), {
    family: 4,
    addr: new Uint8Array([169, 254, 169, 254]),
    prefixLength: 32,
  });
});

Deno.test("parseCidr() reads IPv6 with ::, full groups and a dotted IPv4 tail", () => {
  const doc = parseCidr("2001:db8::/32");
  assert.equal(doc.family, 6);
  assert.deepEqual([...doc.addr.subarray(0, 4)], [0x20, 0x01, 0x0d, 0xb8]);
  assert.equal(doc.prefixLength, 32);
  assert.deepEqual([...parseCidr("::1").addr], [...new Array(15).fill(0), 1]);
  assert.deepEqual(
    [...parseCidr("::ffff:10.1.2.3").addr],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3],
  );
  assert.deepEqual([...parseCidr("1:2:3:4:5:6:7:8/128").addr.subarray(14)], [0, 8]);
});

Deno.test("parseCidr() refuses malformed text with a CidrError naming it", () => {
  for (
    const bad of ["10.0.0/8", "10.0.0.256", "10.0.0.0/33", "10.0.0.0/-1", "1::2::3", "1:2:3", "::/129", "x"]
  ) {
    assert.throws(
      () => parseCidr(bad),
      (error: unknown) => error instanceof CidrError && error.message.includes(bad),
    );
  }
});

Deno.test("unmapIpv4() turns ::ffff:a.b.c.d networks into IPv4 and leaves others alone", () => {
  assert.deepEqual(unmapIpv4(parseCidr("::ffff:10.0.0.0/104")), parseCidr("10.0.0.0/8"));
  assert.deepEqual(unmapIpv4(parseCidr("::ffff:127.0.0.2")), parseCidr("127.0.0.2/32"));
  const wide = parseCidr("::ffff:0:0/95");
  assert.deepEqual(unmapIpv4(wide), wide);
  const v6 = parseCidr("2001:db8::/32");
  assert.deepEqual(unmapIpv4(v6), v6);
});

Deno.test("networkOf() clears the host bits", () => {
  assert.deepEqual(networkOf(parseCidr("10.1.2.3/8")), parseCidr("10.0.0.0/8"));
  assert.deepEqual(networkOf(parseCidr("10.1.2.255/31")), parseCidr("10.1.2.254/31"));
  assert.deepEqual(networkOf(parseCidr("2001:db8::1/32")), parseCidr("2001:db8::/32"));
  assert.deepEqual(networkOf(parseCidr("1.2.3.4/0")), parseCidr("0.0.0.0/0"));
});

Deno.test("cidrContains() holds for sub-networks and addresses of the same family only", () => {
  assert.ok(cidrContains(parseCidr("10.0.0.0/8"), parseCidr("10.200.0.0/16")));
  assert.ok(cidrContains(parseCidr("10.0.0.0/9"), parseCidr("10.127.1.1")));
  assert.ok(!cidrContains(parseCidr("10.0.0.0/9"), parseCidr("10.128.1.1")));
  assert.ok(!cidrContains(parseCidr("10.0.0.0/16"), parseCidr("10.0.0.0/8")));
  assert.ok(cidrContains(parseCidr("0.0.0.0/0"), parseCidr("255.255.255.255")));
  assert.ok(!cidrContains(parseCidr("::/0"), parseCidr("10.0.0.1")));
  assert.ok(cidrContains(parseCidr("2001:db8::/33"), parseCidr("2001:db8:7fff::1")));
  assert.ok(!cidrContains(parseCidr("2001:db8::/33"), parseCidr("2001:db8:8000::1")));
});

Deno.test("parseCidr() reads plain IPv4 the same on its fast path as on the general one", () => {
  // A leading space is trimmed by the general path and refused by the fast one: the same text, both paths.
  const rng = (() => {
    let state = 7;
    return (n: number) => (state = (Math.imul(state, 1103515245) + 12345) >>> 0) % n;
  })();
  const pieces = [
    "0",
    "1",
    "9",
    "10",
    "255",
    "256",
    "007",
    "1000",
    ".",
    "/",
    "/0",
    "/32",
    "/33",
    "/08",
    "a",
    ":",
  ];
  for (let i = 0; i < 20_000; i++) {
    const text = Array.from({ length: 1 + rng(9) }, () => pieces[rng(pieces.length)]).join("");
    const outcome = (input: string) => {
      try {
        const { family, addr, prefixLength } = parseCidr(input);
        return { family, addr: [...addr], prefixLength };
      } catch (error) {
        return { error: (error as Error).name };
      }
    };
    assert.deepEqual(outcome(text), outcome(` ${text}`), text);
  }
  assert.deepEqual(parseCidr("10.1.2.3/8").addr, new Uint8Array([10, 1, 2, 3]));
});

Deno.test("hasHostBits() and clearHostBits() agree with networkOf()", () => {
  for (
    const text of [
      "10.1.2.3/8",
      "10.0.0.0/8",
      "10.128.0.0/9",
      "10.64.0.0/9",
      "0.0.0.0/0",
      "1.2.3.4/32",
      "2001:db8::1/64",
      "2001:db8::/32",
      "::/0",
    ]
  ) {
    const cidr = parseCidr(text);
    const network = networkOf(cidr);
    assert.equal(hasHostBits(cidr), network.addr.some((byte, i) => byte !== cidr.addr[i]), text);
    const cleared = new Uint8Array(cidr.addr);
    clearHostBits(cleared, cidr.prefixLength);
    assert.deepEqual(cleared, network.addr, text);
  }
});

Deno.test("isPlainIpv4Network() is true exactly for plain IPv4 text without host bits", () => {
  for (
    const [text, plain] of [
      ["10.0.0.0/8", true],
      ["10.1.0.0/8", false],
      ["0.0.0.0/0", true],
      ["1.0.0.0/0", false],
      ["1.2.3.4", true],
      ["1.2.3.4/32", true],
      ["1.2.3.5/31", false],
      ["1.2.3.4/31", true],
      ["255.255.255.255/32", true],
      [" 10.0.0.0/8", false],
      ["10.0.0.0/33", false],
      ["2001:db8::/32", false],
    ] as const
  ) {
    assert.equal(isPlainIpv4Network(text), plain, text);
    if (plain) assert.equal(hasHostBits(parseCidr(text)), false, text);
  }
});

Deno.test("parseCidr() gives each address bytes of its own, however many are read", () => {
  const cidrs = Array.from({ length: 3000 }, (_, i) => parseCidr(`10.${i >> 8}.${i & 255}.1/32`));
  cidrs[0]!.addr.fill(0xff);
  cidrs[1024]!.addr[3] = 7;
  assert.deepEqual([...cidrs[1]!.addr], [10, 0, 1, 1]);
  assert.deepEqual([...cidrs[1023]!.addr], [10, 3, 255, 1]);
  assert.deepEqual([...cidrs[1025]!.addr], [10, 4, 1, 1]);
  assert.deepEqual([...cidrs[2999]!.addr], [10, 11, 183, 1]);
  assert.ok(cidrs.every((cidr) => cidr.addr.length === 4));
});
