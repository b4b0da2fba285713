import assert from "node:assert/strict";
import { AEGIS_EVENT, decodeEvent, EVENT, FAMILY, HOOK } from "../../ffi/mod.ts";
import { type EventContext, formatEvent } from "../kernel/events.ts";
import type { RuleInfo } from "../policy/plan.ts";
import { RuleTable } from "../policy/rule_table.ts";
import { jsonText } from "../text/printable.ts";
import { ByteLine, EventJsonWriter } from "./event_json.ts";

const F = AEGIS_EVENT.fields;
const utf8 = new TextEncoder();

/** A small deterministic generator (mulberry32): the same records on every run. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Text that needs every kind of care: quotes, backslashes, C0, DEL, C1, format characters, non-ASCII. */
const NASTY = [
  '"',
  "\\",
  "\n",
  "\x00",
  "\x1b",
  "\x7f",
  "\u009b",
  "\u202e",
  "\u2028",
  "\ufeff",
  "é",
  "😀",
  "/",
];

function text(next: () => number, max: number): string {
  const length = Math.floor(next() * (max + 1));
  let value = "";
  for (let i = 0; i < length; i++) {
    value += next() < 0.2
      ? NASTY[Math.floor(next() * NASTY.length)]
      : String.fromCharCode(0x20 + Math.floor(next() * 95));
  }
  return value;
}

/** A record of random bytes with its enum fields mostly valid (and now and then not). */
function record(next: () => number): Uint8Array {
  const bytes = new Uint8Array(AEGIS_EVENT.size);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(next() * 256);
  const view = new DataView(bytes.buffer);
  const pick = <T>(values: readonly T[]): T => values[Math.floor(next() * values.length)]!;
  const rare = () => next() < 0.03;
  view.setUint8(F.hook.offset, rare() ? 200 : Math.floor(next() * HOOK.COUNT));
  view.setUint8(F.decision.offset, rare() ? 9 : pick([0, 1]));
  view.setUint8(F.mode.offset, rare() ? 9 : pick([0, 1]));
  view.setUint8(F.gen.offset, rare() ? 2 : pick([0, 1]));
  view.setUint8(
    F.flags.offset,
    rare() ? 0x80 : pick([0, 0, 0, EVENT.SUMMARY, EVENT.SRCROUTE, EVENT.RTHDR, EVENT.EXE]),
  );
  view.setUint8(F.signal.offset, rare() ? 3 : pick([0, 0, 15, 9]));
  view.setUint8(F.family.offset, rare() ? 3 : pick([FAMILY.IPV4, FAMILY.IPV6, FAMILY.IPV6]));
  view.setUint8(F.op.offset, rare() ? 99 : Math.floor(next() * 18));
  // Small numbers too (digits by hand), and zero addresses now and then.
  if (next() < 0.5) view.setUint32(F.pid.offset, Math.floor(next() * 100), true);
  if (next() < 0.3) view.setUint32(F.count.offset, 1, true);
  if (next() < 0.2) view.setUint32(F.ino.offset + 4, 0, true);
  if (next() < 0.2) bytes.fill(0, F.daddr.offset, F.daddr.offset + 16);
  if (next() < 0.2) bytes.fill(0, F.daddr.offset + 2, F.daddr.offset + 14);
  if (next() < 0.3) view.setUint32(F.ifindex.offset, 0, true);
  // comm: as a task name holds it (NUL-terminated, up to 16 bytes), or raw bytes with no NUL at all.
  if (next() < 0.7) {
    const comm = utf8.encode(text(next, 8)).subarray(0, 15);
    bytes.fill(0, F.comm.offset, F.comm.offset + 16);
    bytes.set(comm, F.comm.offset);
  }
  return bytes;
}

function context(next: () => number): EventContext {
  const rules: RuleInfo[] = [];
  for (let i = 0; i < 6; i++) {
    const rule: RuleInfo = { id: next() < 0.5 ? `rule-${i}` : text(next, 12), area: "file", action: "deny" };
    if (next() < 0.5) rule.path = next() < 0.5 ? `/etc/file${i}` : `/${text(next, 40)}`;
    if (i % 3 === 0) rule.exe = i === 0 ? "/usr/bin/curl" : `/opt/${text(next, 10)}`;
    rules.push(rule);
  }
  const table = RuleTable.of(rules);
  // Lookups answer the same each time they are asked (as the agent's caches do).
  const paths = [undefined, "/bench.slice", `/${text(next, 20)}`, `/${text(next, 20)}`];
  const names = [undefined, "eth0", text(next, 15), text(next, 15)];
  return {
    host: next() < 0.5 ? "host-1" : text(next, 10),
    generations: [
      { rules: table, policy: { name: text(next, 6), version: 7, sha256: "ab".repeat(32) } },
      next() < 0.5 ? undefined : { rules: table },
    ],
    bootToWallNs: BigInt(Math.floor(next() * 2 ** 52)) * 1000n,
    cgroupPath: (id) => paths[id % 4],
    interfaceName: (ifindex) => names[ifindex % 4],
  };
}

Deno.test("EventJsonWriter writes the bytes of jsonText(formatEvent()) for every record it covers", () => {
  const next = random(18);
  const decoder = new TextDecoder();
  let written = 0, left = 0;
  for (let round = 0; round < 50; round++) {
    const ctx = context(next);
    // The rule ids of the records land on the table's rules, past them, and far off.
    const writer = new EventJsonWriter(ctx);
    for (let i = 0; i < 400; i++) {
      const bytes = record(next);
      new DataView(bytes.buffer).setUint32(F.rule_id.offset, Math.floor(next() * 8), true);
      const raw = decodeEvent(bytes);
      let expected: string | undefined;
      try {
        expected = `${jsonText(formatEvent(raw, ctx))}\n`;
      } catch {
        expected = undefined;
      }
      if (!writer.write(raw)) {
        left++;
        // Left to formatEvent: only what it does not cover, and what formatEvent refuses.
        assert.ok(
          expected === undefined || raw.hook === HOOK.SOCKET || raw.hook === HOOK.SCOPE ||
            raw.hook === HOOK.PTRACE || raw.hook === HOOK.IDENTITY,
          `not covered: ${expected}`,
        );
        continue;
      }
      assert.notEqual(expected, undefined, "written, but formatEvent refuses it");
      assert.deepEqual(decoder.decode(writer.line.view()), expected);
      assert.deepEqual(writer.line.view(), utf8.encode(expected));
      written++;
    }
  }
  assert.ok(written > 10_000 && left > 1000, `${written} written, ${left} left`);
});

Deno.test("ByteLine.number writes what String writes, digits by hand or not", () => {
  const line = new ByteLine();
  for (const value of [0, 7, 10, 99, 100, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 53 - 1, 2 ** 64, 1e21]) {
    line.length = 0;
    line.number(value);
    assert.equal(new TextDecoder().decode(line.view()), JSON.stringify(value));
  }
});

Deno.test("ByteLine.string escapes as jsonText escapes, and grows past its first buffer", () => {
  const line = new ByteLine();
  const long = `${"a".repeat(3000)}"\u009b\x01é`;
  for (const value of ["", "plain", 'a"b', "a\\b", "\x00\x1f\x7f", "\u2028", "é😀", "\ud800", long]) {
    line.length = 0;
    line.bytes(new Uint8Array([0x5b]));
    line.string(value);
    assert.equal(new TextDecoder().decode(line.view()), `[${jsonText(value)}`);
  }
});
