import assert from "node:assert/strict";
import {
  answeredAddresses,
  decodeMessage,
  DnsWireError,
  encodeAnswer,
  encodeQuery,
  TYPE,
} from "./dns_wire.ts";

const a = (...bytes: number[]) => new Uint8Array(bytes);

Deno.test("decodeMessage() reads back a query and an answer; answeredAddresses() follows a CNAME chain", () => {
  const query = decodeMessage(encodeQuery(0x1234, "WWW.Test.Example.", TYPE.A));
  assert.deepEqual(query, {
    id: 0x1234,
    response: false,
    truncated: false,
    rcode: 0,
    question: { name: "www.test.example", type: TYPE.A },
    answers: [],
  });
  const cname = (target: string) => {
    const bytes = encodeQuery(0, target, 0);
    return bytes.subarray(12, bytes.length - 4);
  };
  const answer = decodeMessage(encodeAnswer({ id: 7, name: "alias.test.example", type: TYPE.A }, [
    { name: "alias.test.example", type: TYPE.CNAME, ttl: 300, data: cname("mid.test.example") },
    { name: "mid.test.example", type: TYPE.CNAME, ttl: 60, data: cname("end.test.example") },
    { name: "end.test.example", type: TYPE.A, ttl: 120, data: a(192, 0, 2, 7) },
    { name: "other.example", type: TYPE.A, ttl: 120, data: a(192, 0, 2, 99) },
  ]));
  assert.equal(answer.response, true);
  assert.deepEqual(answeredAddresses(answer, "Alias.test.example"), [{ addr: "192.0.2.7", ttl: 60 }]);
  assert.deepEqual(answeredAddresses(answer, "other.test.example"), []);
});

Deno.test("decodeMessage() refuses a truncated record and a pointer loop; says when the answer is truncated", () => {
  const full = encodeAnswer({ id: 1, name: "x.example", type: TYPE.AAAA }, [
    { name: "x.example", type: TYPE.AAAA, ttl: 5, data: new Uint8Array(16).fill(1) },
  ]);
  assert.throws(() => decodeMessage(full.subarray(0, full.length - 3)), DnsWireError);
  assert.throws(() => decodeMessage(a(0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12)), DnsWireError);
  assert.throws(() => decodeMessage(a(0, 1)), DnsWireError);
  const truncated = decodeMessage(
    encodeAnswer({ id: 1, name: "x.example", type: TYPE.A }, [], { truncated: true }),
  );
  assert.equal(truncated.truncated, true);
  assert.deepEqual(answeredAddresses(decodeMessage(full), "x.example"), [{
    addr: "101:101:101:101:101:101:101:101",
    ttl: 5,
  }]);
});
