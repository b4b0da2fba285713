import assert from "node:assert/strict";
import type { RuleInfo } from "../../lib/policy/plan.ts";
import { connectBurst, tally } from "../support/loops.ts";
import { ruleSet, withPlane } from "../support/plane.ts";
import { rootTest } from "../support/privileged.ts";
import { ipv4Rule } from "../support/slice.ts";

const DENIED = "127.0.0.2";
const RULES: RuleInfo[] = [
  { id: "default", area: "ingress", action: "deny" },
  { id: "loopback2", area: "egress", action: "deny" },
];
const DENY_LOOPBACK2 = ruleSet({ mode: "enforce", rules: RULES, egress: [ipv4Rule(`${DENIED}/32`, 1)] });
/** More than one rate window (2^30 ns of CLOCK_BOOTTIME): every window of the flood has ended. */
const WINDOW_ENDED_MS = 1200;

rootTest(
  "[root] a two-CPU flood is accounted exactly: received counts plus lost equal the decisions",
  async () => {
    // One page holds 31 records: the flood overflows it, so losses happen.
    await withPlane({ areas: ["egress"], ringBufferBytes: 4096 }, async ({ plane, cgroup, server }) => {
      await plane.apply(DENY_LOOPBACK2);
      // CPU 0: a new pid per attempt, so the limiter admits each and the ring overflows. CPU 1: one pid,
      // so the limiter suppresses most and carries them in counts and summaries.
      const forked = connectBurst(DENIED, server.port, 300, { fork: true });
      const onePid = connectBurst(DENIED, server.port, 3000);
      const result = await cgroup.runBash(
        // Braces: runBash joins the cgroup with `&&`, which a bare `&` would send to the background too.
        `{ taskset -c 0 bash -c '${forked}' >/dev/null & taskset -c 1 bash -c '${onePid}'; wait; }`,
      );
      assert.equal(result.code, 0, result.stderr);
      assert.equal(tally(result.stdout).leaks, 0);

      let received = 0, records = 0;
      const stream = plane.events((event) => {
        received += event.count;
        records++;
      });
      try {
        stream.poll();
        await new Promise((resolve) => setTimeout(resolve, WINDOW_ENDED_MS));
        plane.flushRateLimits();
        stream.poll();
        assert.equal(stream.stats.errors, 0);
      } finally {
        stream.close();
      }

      const counters = plane.counters();
      const decisions = counters.decisions.connect.deny;
      assert.equal(decisions, 3300n, "every attempt was decided once");
      assert.ok(counters.eventsLost > 0n, "the flood overflowed the ring");
      assert.ok(counters.eventsSuppressed > 0n, "the one-pid loop was rate limited");
      assert.ok(records < received, "some records carried suppressed decisions");
      assert.equal(BigInt(received) + counters.eventsLost, decisions);
    });
  },
);
