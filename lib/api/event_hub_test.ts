import assert from "node:assert/strict";
import { EventHub, SubscriberOverflowError } from "./event_hub.ts";

async function take(iterator: AsyncIterator<{ id: number; data: string }>, n: number) {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const next = await iterator.next();
    if (next.done) break;
    out.push(next.value.id);
  }
  return out;
}

Deno.test("EventHub delivers published events to every subscriber in order", async () => {
  const hub = new EventHub();
  const a = hub.subscribe()[Symbol.asyncIterator]();
  const b = hub.subscribe()[Symbol.asyncIterator]();
  for (let i = 0; i < 3; i++) hub.publish(`{"n":${i}}`);
  assert.deepEqual(await take(a, 3), [1, 2, 3]);
  assert.deepEqual(await take(b, 3), [1, 2, 3]);
  hub.close();
  assert.equal((await a.next()).done, true);
});

Deno.test("EventHub resumes after Last-Event-ID and says how many are gone", async () => {
  const hub = new EventHub({ retain: 5 });
  for (let i = 0; i < 10; i++) hub.publish("{}");
  const resumed = hub.subscribe(7);
  assert.equal(resumed.missed, 0);
  assert.deepEqual(await take(resumed[Symbol.asyncIterator](), 3), [8, 9, 10]);
  const late = hub.subscribe(2);
  assert.equal(late.missed, 3, "events 3 to 5 are no longer retained");
  assert.deepEqual(await take(late[Symbol.asyncIterator](), 5), [6, 7, 8, 9, 10]);
  const future = hub.subscribe(99);
  assert.equal(future.missed, 0);
  hub.publish("{}");
  assert.deepEqual(await take(future[Symbol.asyncIterator](), 1), [11]);
});

Deno.test("EventHub cuts off a stalled subscriber instead of waiting for it", async () => {
  const hub = new EventHub({ queueLimit: 4 });
  const stalled = hub.subscribe()[Symbol.asyncIterator]();
  const healthy = hub.subscribe()[Symbol.asyncIterator]();
  for (let i = 0; i < 1_000; i++) {
    hub.publish("{}"); // never waits for the stalled one
    assert.equal((await healthy.next()).value?.id, i + 1);
  }
  assert.equal(hub.overflows, 1);
  assert.equal(hub.subscribers, 1, "the stalled one is gone");
  await assert.rejects(() => stalled.next(), SubscriberOverflowError);
});
