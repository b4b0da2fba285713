/**
 * The agent waits on events instead of polling: inotify for changes only (not the opens and reads of every
 * exec on the host), epoll on the ring buffer (a record delivered as it comes, with no timer), and the
 * break-glass marker noticed within SPEC's second although the agent's only periodic tick is two seconds.
 */
import assert from "node:assert/strict";
import { DirWatch } from "../../lib/agent/dir_watch.ts";
import { EventStream } from "../../lib/kernel/events.ts";
import { spawn, withHost } from "../support/agent_host.ts";
import { EventFlood } from "../support/event_flood.ts";
import { rootTest } from "../support/privileged.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `test` every 10 ms for at most `ms`; whether it came true. */
async function eventually(ms: number, test: () => boolean): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (test()) return true;
    await sleep(10);
  }
  return test();
}

rootTest("[root] DirWatch reports an entry replaced by rename, and not a file opened and read", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-test-watch-" });
  let changes = 0;
  const errors: unknown[] = [];
  try {
    Deno.writeTextFileSync(`${dir}/applied.json`, "{}");
    using _watch = new DirWatch(
      dir,
      (name) => name === "applied.json",
      () => changes++,
      (e) => errors.push(e),
    );
    for (let i = 0; i < 20; i++) Deno.readTextFileSync(`${dir}/applied.json`);
    Deno.writeTextFileSync(`${dir}/other`, "x");
    await sleep(200);
    assert.equal(changes, 0, "opens, reads and other names are not changes of applied.json");
    Deno.writeTextFileSync(`${dir}/.tmp`, "{}");
    Deno.renameSync(`${dir}/.tmp`, `${dir}/applied.json`);
    assert.ok(await eventually(2000, () => changes > 0), "the rename over applied.json is reported");
    assert.deepEqual(errors, []);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

rootTest(
  "[root] a started EventStream delivers records as they come, and close() ends its wait",
  async () => {
    using flood = EventFlood.load(1 << 16);
    const seen: number[] = [];
    const errors: unknown[] = [];
    const stream = new EventStream(flood.ring, (event) => seen.push(event.count));
    try {
      stream.start((error) => errors.push(error));
      await sleep(100);
      assert.equal(seen.length, 0, "nothing before the kernel writes");
      flood.produce(3);
      assert.ok(await eventually(2000, () => seen.length === 3), `3 records delivered (got ${seen.length})`);
      flood.produce(2);
      assert.ok(await eventually(2000, () => seen.length === 5), `2 more delivered (got ${seen.length})`);
    } finally {
      stream.close();
    }
    assert.deepEqual(errors, []);
  },
);

rootTest(
  "[root] a started EventStream reads a flood turn by turn: timers run between its turns, no record is lost",
  async () => {
    using flood = EventFlood.load(1 << 21);
    const records = 10_000;
    const seen: number[] = [];
    const errors: unknown[] = [];
    const between: number[] = [];
    const stream = new EventStream(flood.ring, (event) => seen.push(Number(event.ino)));
    const timer = setInterval(() => between.push(seen.length), 0);
    try {
      flood.produce(records);
      stream.start((error) => errors.push(error));
      assert.ok(await eventually(5000, () => seen.length === records), `all delivered (got ${seen.length})`);
    } finally {
      clearInterval(timer);
      stream.close();
    }
    assert.deepEqual(errors, []);
    assert.deepEqual(seen, Array.from({ length: records }, (_, i) => seen[0]! + i), "each once, in order");
    assert.ok(
      between.some((count) => count > 0 && count < records),
      "a timer ran while the flood was still being read (the writes of its lines are not held up)",
    );
  },
);

rootTest(
  "[root] the running agent notices a break-glass marker within a second, with no polling",
  async () => {
    await withHost(async (host) => {
      await using agent = spawn(host, ["--audit"]);
      await agent.ready();
      Deno.writeTextFileSync(`${host.configDir}/break_glass`, "");
      const since = agent.events.length;
      const started = performance.now();
      await agent.waitFor((event) => event.type === "break_glass.on", 5_000, since);
      const tookMs = performance.now() - started;
      assert.ok(tookMs < 1000, `noticed in ${tookMs.toFixed(0)} ms (SPEC: within one second)`);
      Deno.removeSync(`${host.configDir}/break_glass`);
      await agent.waitFor((event) => event.type === "break_glass.off", 5_000, since);
    });
  },
);
