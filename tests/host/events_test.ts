import assert from "node:assert/strict";
import { bootToWallOffsetNs, formatEvent } from "../../lib/kernel/events.ts";
import type { RuleInfo } from "../../lib/policy/plan.ts";
import { RuleTable } from "../../lib/policy/rule_table.ts";
import { connectBurst, connectOnce, tally } from "../support/loops.ts";
import { drain, listen, ruleSet, withPlane } from "../support/plane.ts";
import { rootTest } from "../support/privileged.ts";
import { ipv4Rule } from "../support/slice.ts";

const DENIED = "127.0.0.2";
/** AEGIS_RATE_BURST in bpf/aegis.h: events admitted per (rule, pid) in one window. */
const RATE_BURST = 8;
const RULES: RuleInfo[] = [
  { id: "default", area: "ingress", action: "deny" },
  { id: "loopback2", area: "egress", action: "deny" },
];
const DENY_LOOPBACK2 = ruleSet({ mode: "enforce", rules: RULES, egress: [ipv4Rule(`${DENIED}/32`, 1)] });

/** The value a script printed as `NAME value` on a line of its own. */
function printed(stdout: string, name: string): number {
  const match = new RegExp(`^${name} (\\d+)$`, "m").exec(stdout);
  if (!match) throw new Error(`Script printed no ${name}: ${stdout.slice(-200)}`);
  return Number(match[1]);
}

rootTest("[root] rate limiting reports suppressed events in count", async () => {
  await withPlane({ areas: ["egress"] }, async ({ plane, cgroup, server }) => {
    await plane.apply(DENY_LOOPBACK2);
    // One shell, so one pid: a burst inside one window, then one more attempt after it.
    const result = await cgroup.runBash([
      `echo "pid $$"`,
      `start=\${EPOCHREALTIME/./}`,
      connectBurst(DENIED, server.port, 50),
      `echo "elapsed_us $((\${EPOCHREALTIME/./} - start))"`,
      "sleep 1.2",
      connectOnce(DENIED, server.port),
    ].join("; "));
    const burst = tally(result.stdout);
    assert.equal(burst.attempts, 50, "the shell survived every failed redirection");
    assert.equal(burst.leaks, 0, "no attempt connected");
    assert.ok(printed(result.stdout, "elapsed_us") < 900_000, "the burst fits in one rate window");

    const pid = printed(result.stdout, "pid");
    const events = drain(plane);
    assert.ok(events.every((event) => event.pid === pid && event.ruleId === 1));
    const suppressed = burst.attempts - RATE_BURST;
    assert.deepEqual(events.map((event) => event.count), [...Array(RATE_BURST).fill(1), 1 + suppressed]);
    const [first] = events;
    const last = events.at(-1);
    assert.ok(last!.tsBootNs - first!.tsBootNs > 1_000_000_000n, "the last event opens a new window");
    const counters = plane.counters();
    assert.equal(counters.eventsSuppressed, BigInt(suppressed));
    assert.equal(counters.eventsLost, 0n);
    assert.equal(counters.decisions.connect.deny, BigInt(burst.attempts + 1));
  });
});

rootTest("[root] a ring buffer flood is counted, never silent", async () => {
  const server = listen();
  try {
    // A one-page ring holds 31 records (the kernel refuses the reservation that would fill it) of 120 bytes plus an 8-byte header each.
    await withPlane({ areas: ["egress"], ringBufferBytes: 4096 }, async ({ plane, cgroup }) => {
      await plane.apply(DENY_LOOPBACK2);
      // A subshell per attempt: a new pid each time, so the rate limit admits every event.
      const result = await cgroup.runBash(connectBurst(DENIED, server.port, 100, { fork: true }));
      assert.deepEqual(tally(result.stdout), { attempts: 100, leaks: 0 });

      const received = drain(plane).length;
      const counters = plane.counters();
      assert.equal(counters.decisions.connect.deny, 100n);
      assert.equal(counters.eventsSuppressed, 0n);
      assert.ok(counters.eventsLost > 0n, "the flood overflowed the ring");
      assert.ok(received > 0, "the ring kept what fitted");
      assert.equal(BigInt(received) + counters.eventsLost, counters.decisions.connect.deny);
    });
  } finally {
    await server.stop();
  }
});

rootTest("[root] events carry a wall-clock timestamp and decode to the SPEC fields", async () => {
  await withPlane({ areas: ["egress"] }, async ({ plane, cgroup, server }) => {
    await plane.apply(DENY_LOOPBACK2);
    const result = await cgroup.runBash(`echo "pid $$"; ${connectOnce(DENIED, server.port)}`);
    const pid = printed(result.stdout, "pid");
    const cgroupId = BigInt(Deno.statSync(cgroup.path).ino ?? 0);
    const policy = { name: "events-test", version: 7, sha256: "ab".repeat(32) };

    const events = drain(plane).map((raw) =>
      formatEvent(raw, {
        host: "test-host",
        generations: [{ rules: RuleTable.of(RULES), policy }, { rules: RuleTable.of(RULES), policy }],
        bootToWallNs: bootToWallOffsetNs(),
        cgroupPath: (id) => id === Number(cgroupId) ? cgroup.relativePath : undefined,
      })
    );
    assert.equal(events.length, 1);
    const { ts, ...event } = events[0]!;
    assert.match(ts, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
    const ageMs = Date.now() - Date.parse(ts);
    assert.ok(ageMs >= -100 && ageMs < 5000, `ts ${ts} is ${ageMs} ms from now`);
    assert.deepEqual(event, {
      host: "test-host",
      type: "net.connect",
      decision: "deny",
      mode: "enforce",
      rule: "loopback2",
      policy,
      process: {
        pid,
        ppid: Deno.pid,
        uid: 0,
        gid: 0,
        comm: "bash",
        cgroup: { id: Number(cgroupId), path: cgroup.relativePath },
      },
      net: { family: "ipv4", protocol: "tcp", daddr: DENIED, dport: server.port },
      count: 1,
    });
  });
});

rootTest("[root] a failing event handler is reported and the stream keeps delivering", async () => {
  await withPlane({ areas: ["egress"] }, async ({ plane, cgroup, server }) => {
    await plane.apply(DENY_LOOPBACK2);
    const delivered: number[] = [];
    const errors: unknown[] = [];
    using stream = plane.events((event) => {
      if (delivered.length === 0 && errors.length === 0) throw new Error("handler failed");
      delivered.push(event.pid);
    });
    stream.start((error) => errors.push(error));
    await cgroup.connect(DENIED, server.port);
    await new Promise((resolve) => setTimeout(resolve, 150));
    await cgroup.connect(DENIED, server.port);
    await new Promise((resolve) => setTimeout(resolve, 150));
    assert.equal(errors.length, 1);
    assert.match(String(errors[0]), /handler failed/);
    assert.equal(delivered.length, 1, "the next event still arrives");
  });
});
