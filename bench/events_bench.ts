/**
 * Event pipeline benchmark (root), on records the kernel wrote (tests/fixtures/event_flood.bpf.c):
 *   1. draining a ring prefilled with N records: (a) the raw drain with no decoding, (b) decoding each
 *      record to a RawEvent, (c) decoding and formatting each to a SPEC section 6 JSON line; medians of
 *      interleaved rounds, in events/s and as ratios to (a);
 *   2. a live flood: `dd bs=1` on CPU 1 makes every write(2) write records into a 4 MiB ring (the size of
 *      the product's `events` map) while this process, on CPU 0, decodes them to JSON lines: the kernel's
 *      production rate, the rate received, and the share lost (counted by the fixture, never silent).
 * Usage: deno run --allow-all bench/events_bench.ts [--records N] [--rounds N] [--seconds S] [--per-write K]
 */
import { parseArgs } from "node:util";
import { AEGIS_EVENT } from "../ffi/mod.ts";
import { RingBuffer } from "../ffi/ring_buffer.ts";
import { bootToWallOffsetNs, type EventContext, EventStream, formatEvent } from "../lib/kernel/events.ts";
import type { RuleInfo } from "../lib/policy/plan.ts";
import { RuleTable } from "../lib/policy/rule_table.ts";
import { TestCgroup } from "../tests/support/cgroup.ts";
import { EventFlood } from "../tests/support/event_flood.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    records: { type: "string", default: "400000" },
    rounds: { type: "string", default: "5" },
    seconds: { type: "string", default: "3" },
    "per-write": { type: "string", default: "1" },
  },
});
const records = Number(values.records);
const rounds = Number(values.rounds);
const seconds = Number(values.seconds);
const perWrite = Number(values["per-write"]);

const RULES: RuleInfo[] = [
  { id: "default", area: "ingress", action: "deny" },
  { id: "loopback2", area: "egress", action: "deny" },
];
const CONTEXT: EventContext = {
  host: Deno.hostname(),
  generations: [{
    rules: RuleTable.of(RULES),
    policy: { name: "bench", version: 1, sha256: "ab".repeat(32) },
  }, undefined],
  bootToWallNs: bootToWallOffsetNs(),
  cgroupPath: () => "/bench.slice",
};

function median(samples: number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function ringBytesFor(count: number): number {
  let bytes = 4096;
  while (bytes - 1 < count * (AEGIS_EVENT.size + 8)) bytes *= 2;
  return bytes;
}

type Stage = "raw" | "decode" | "json";

/** Drains `records` prefilled records through `stage`; returns events/s. */
function drainRate(flood: EventFlood, stage: Stage): number {
  flood.produce(records);
  let sink = 0;
  let read = 0;
  const start = performance.now();
  if (stage === "raw") {
    using ring = new RingBuffer(flood.ring, (view, offset) => {
      sink += view.getUint32(offset + AEGIS_EVENT.fields.count.offset, true);
    });
    while ((read += ring.consume()) < records) { /* until all are read */ }
  } else {
    const onEvent = stage === "decode"
      ? (event: { count: number }) => sink += event.count
      : (event: Parameters<typeof formatEvent>[0]) =>
        sink += JSON.stringify(formatEvent(event, CONTEXT)).length;
    using stream = new EventStream(flood.ring, onEvent);
    while ((read += stream.poll()) < records) { /* until all are read */ }
  }
  const elapsed = (performance.now() - start) / 1000;
  if (read !== records || sink === 0) throw new Error(`${stage}: read ${read} of ${records}`);
  return records / elapsed;
}

function drainBench(): void {
  using flood = EventFlood.load(ringBytesFor(records));
  const samples: Record<Stage, number[]> = { raw: [], decode: [], json: [] };
  drainRate(flood, "json"); // warm-up: compile every path once
  for (let round = 0; round < rounds; round++) {
    for (const stage of ["raw", "decode", "json"] as const) samples[stage].push(drainRate(flood, stage));
  }
  const stats = flood.stats();
  if (stats.lost !== 0) throw new Error(`the prefilled ring lost ${stats.lost} records`);
  const raw = median(samples.raw);
  console.log(`1. drain of ${records} prefilled records, median of ${rounds} rounds`);
  for (const stage of ["raw", "decode", "json"] as const) {
    const rate = median(samples[stage]);
    const label =
      { raw: "(a) raw drain", decode: "(b) decode to RawEvent", json: "(c) decode + JSON line" }[stage];
    console.log(
      `   ${label.padEnd(24)} ${Math.round(rate).toLocaleString("en").padStart(11)} events/s  ${
        (rate / raw).toFixed(2)
      } of (a)`,
    );
  }
}

async function floodBench(): Promise<void> {
  const ringBytes = 4 << 20;
  const flood = EventFlood.load(ringBytes);
  const cgroup = TestCgroup.create();
  try {
    flood.floodOnWrite(BigInt(Deno.statSync(cgroup.path).ino ?? 0), perWrite);
    let lines = 0, bytes = 0;
    using stream = new EventStream(flood.ring, (event) => {
      bytes += JSON.stringify(formatEvent(event, CONTEXT)).length + 1;
      lines++;
    });
    await new Deno.Command("taskset", { args: ["-a", "-p", "-c", "0", String(Deno.pid)], stdout: "null" })
      .output();
    const dd = cgroup.runBash(
      `exec taskset -c 1 timeout ${seconds} dd if=/dev/zero of=/dev/null bs=1 count=100000000000 status=none`,
    );
    let running = true;
    dd.then(() => running = false);
    const start = performance.now();
    while (running) {
      stream.poll();
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
    const elapsed = (performance.now() - start) / 1000;
    while (stream.poll() > 0) { /* the rest */ }
    const { written, lost } = flood.stats();
    const produced = written + lost;
    const { records: received, errors } = stream.stats;
    console.log(
      `2. live flood for ${
        elapsed.toFixed(1)
      } s (dd bs=1 on CPU 1, ${perWrite} record(s) per write; consumer on CPU 0, ` +
        `4 MiB ring)`,
    );
    console.log(
      `   kernel production        ${
        Math.round(produced / elapsed).toLocaleString("en").padStart(11)
      } events/s`,
    );
    console.log(
      `   received as JSON lines   ${
        Math.round(received / elapsed).toLocaleString("en").padStart(11)
      } events/s` +
        `  (${lines} lines, ${(bytes / 1e6).toFixed(0)} MB)`,
    );
    console.log(
      `   lost (counted)           ${lost.toLocaleString("en").padStart(11)}  ${
        (100 * lost / produced).toFixed(1)
      }%`,
    );
    if (received !== written || errors !== 0) {
      throw new Error(`accounting: written ${written}, received ${received}, errors ${errors}`);
    }
    console.log(
      `   accounting               received + lost = produced (${received} + ${lost} = ${produced})`,
    );
  } finally {
    flood.close();
    cgroup.remove();
  }
}

drainBench();
await floodBench();
