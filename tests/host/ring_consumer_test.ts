import assert from "node:assert/strict";
import { AEGIS_EVENT, decodeEventAt, RawEvent } from "../../ffi/mod.ts";
import { RingBuffer } from "../../ffi/ring_buffer.ts";
import { EventStream } from "../../lib/kernel/events.ts";
import { TestCgroup } from "../support/cgroup.ts";
import { EventFlood } from "../support/event_flood.ts";
import { rootTest } from "../support/privileged.ts";

/**
 * One page holds 31 records of 120 bytes plus their 8-byte headers, not 32: the kernel refuses a
 * reservation that would make the unread span equal the ring size (kernel/bpf/ringbuf.c,
 * `new_prod_pos - cons_pos > rb->mask`).
 */
const PAGE_RING = 4096;
const RECORDS_PER_PAGE = Math.floor((PAGE_RING - 1) / (AEGIS_EVENT.size + 8));

/** A record handler that keeps the sequence numbers (the fixture writes them into `ino`). */
function sequenceReader(): {
  seqs: number[];
  onRecord: (view: DataView, offset: number, size: number) => void;
} {
  const seqs: number[] = [];
  return {
    seqs,
    onRecord: (view, offset, size) => {
      assert.equal(size, AEGIS_EVENT.size);
      seqs.push(Number(decodeEventAt(view, offset, size).ino));
    },
  };
}

function range(start: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => start + i);
}

rootTest("[root] RingBuffer hands out every record once, in order, across hundreds of wraps", () => {
  using flood = EventFlood.load(PAGE_RING);
  const { seqs, onRecord } = sequenceReader();
  using ring = new RingBuffer(flood.ring, onRecord);
  let produced = 0;
  for (let round = 0; round < 400; round++) {
    // 1 to 31 records: batches that end anywhere in the ring, up to a full one.
    const count = 1 + ((round * 7) % RECORDS_PER_PAGE);
    flood.produce(count);
    assert.equal(ring.consume(), count, `round ${round}`);
    produced += count;
  }
  assert.deepEqual(seqs, range(0, produced));
  assert.ok(produced * (AEGIS_EVENT.size + 8) > 100 * PAGE_RING, "the ring wrapped more than 100 times");
  assert.deepEqual(flood.stats(), { written: produced, discarded: 0, lost: 0 });
  assert.equal(ring.consume(), 0, "nothing is read twice");
});

rootTest("[root] RingBuffer skips discarded records and a full ring counts what it refused", () => {
  using flood = EventFlood.load(PAGE_RING);
  const { seqs, onRecord } = sequenceReader();
  using ring = new RingBuffer(flood.ring, onRecord);
  flood.produce(30, 3);
  assert.equal(ring.consume(), 20);
  assert.deepEqual(seqs, range(0, 30).filter((seq) => (seq + 1) % 3 !== 0));

  // Nothing consumed while 50 are written: the ring keeps 31, refuses (and counts) 19.
  seqs.length = 0;
  flood.produce(50);
  assert.equal(ring.consume(), RECORDS_PER_PAGE);
  assert.deepEqual(seqs, range(30, RECORDS_PER_PAGE));
  assert.deepEqual(flood.stats(), {
    written: 20 + RECORDS_PER_PAGE,
    discarded: 10,
    lost: 50 - RECORDS_PER_PAGE,
  });
});

rootTest(
  "[root] RingBuffer consume(limit) leaves the rest, and a throwing handler's record is consumed",
  () => {
    using flood = EventFlood.load(PAGE_RING);
    const seqs: number[] = [];
    let failOn = -1;
    using ring = new RingBuffer(flood.ring, (view, offset, size) => {
      const seq = Number(decodeEventAt(view, offset, size).ino);
      if (seq === failOn) throw new Error(`handler failed on ${seq}`);
      seqs.push(seq);
    });
    flood.produce(10);
    assert.equal(ring.consume(4), 4);
    assert.deepEqual(seqs, range(0, 4));
    failOn = 6;
    assert.throws(() => ring.consume(), /handler failed on 6/);
    assert.deepEqual(seqs, range(0, 6));
    assert.equal(ring.consume(), 3);
    assert.deepEqual(seqs, [...range(0, 6), 7, 8, 9]);
  },
);

rootTest("[root] RingBuffer close() from a handler ends the batch and unmaps after it", () => {
  using flood = EventFlood.load(PAGE_RING);
  let seen = 0;
  const ring: RingBuffer = new RingBuffer(flood.ring, () => {
    seen++;
    ring.close();
  });
  flood.produce(5);
  assert.equal(ring.consume(), 1);
  assert.equal(seen, 1);
  assert.throws(() => ring.consume(), /closed/);
  // The records left are still there for the next consumer.
  const { seqs, onRecord } = sequenceReader();
  using next = new RingBuffer(flood.ring, onRecord);
  assert.equal(next.consume(), 4);
  assert.deepEqual(seqs, range(1, 4));
});

rootTest("[root] EventStream decodes the records of write(2) calls with their process", async () => {
  const flood = EventFlood.load(1 << 16);
  const cgroup = TestCgroup.create();
  try {
    flood.floodOnWrite(BigInt(Deno.statSync(cgroup.path).ino ?? 0), 3);
    const events: RawEvent[] = [];
    using stream = new EventStream(flood.ring, (event) => events.push(event));
    const result = await cgroup.runBash(`echo "pid $$" >/dev/null; echo "pid $$"`);
    const pid = Number(/^pid (\d+)$/m.exec(result.stdout)?.[1]);
    stream.poll();
    assert.ok(events.length >= 6, `3 records per write, got ${events.length}`);
    assert.ok(events.every((event) => event instanceof RawEvent));
    const mine = events.filter((event) => event.pid === pid);
    assert.ok(mine.length >= 6);
    for (const event of mine) {
      assert.equal(event.comm, "bash");
      assert.equal(event.ppid, Deno.pid);
      assert.equal(event.cgroupId, BigInt(Deno.statSync(cgroup.path).ino ?? 0));
      assert.equal(event.uid, 0);
    }
    assert.deepEqual(stream.stats, { records: events.length, decisions: events.length, errors: 0 });
  } finally {
    flood.close();
    cgroup.remove();
  }
});
