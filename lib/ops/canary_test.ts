import assert from "node:assert/strict";
import { InputError } from "../errors.ts";
import { compilePolicy } from "../policy/compile.ts";
import { parsePolicy } from "../policy/parse.ts";
import { canaryCounts, canaryProgress, parseDenyRate, watchCanary } from "./canary.ts";

/** A fake clock: sleep advances it, the counter follows a script of denies per second. */
function fakeKernel(deniesPerSecond: (second: number) => number) {
  let t = 0;
  let total = 0n;
  return {
    now: () => t,
    sleep: (ms: number) => {
      for (let i = 0; i < ms; i += 1000) total += BigInt(deniesPerSecond(Math.floor((t + i) / 1000)));
      t += ms;
      return Promise.resolve();
    },
    readDenies: () => total,
  };
}

Deno.test("watchCanary() keeps a policy whose deny rate stays under the limit", async () => {
  const verdict = await watchCanary({ durationMs: 30_000, maxDenyRate: 2, ...fakeKernel(() => 1) });
  assert.deepEqual(verdict, { verdict: "kept", denies: 30n, elapsedMs: 30_000 });
});

Deno.test("watchCanary() rolls back the moment the windowed rate exceeds the limit", async () => {
  // Quiet for 20 s, then 50 denies a second: exceeded after the first loud second.
  const verdict = await watchCanary({
    durationMs: 60_000,
    maxDenyRate: 2,
    ...fakeKernel((s) => s >= 20 ? 50 : 0),
  });
  assert.equal(verdict.verdict, "exceeded");
  assert.equal(verdict.elapsedMs, 21_000);
  assert.ok(verdict.verdict === "exceeded" && verdict.rate > 2 && verdict.windowMs === 10_000);
});

Deno.test("watchCanary() judges the rate over the window since the last samples", async () => {
  // 15 denies in the first second: 15/s over one second exceeds 10/s.
  const burst = await watchCanary({
    durationMs: 5_000,
    maxDenyRate: 10,
    ...fakeKernel((s) => s === 0 ? 15 : 0),
  });
  assert.equal(burst.verdict, "exceeded");
  // 9/s steadily never exceeds 10/s.
  const steady = await watchCanary({ durationMs: 20_000, maxDenyRate: 10, ...fakeKernel(() => 9) });
  assert.equal(steady.verdict, "kept");
});

Deno.test("watchCanary() with a limit of 0 rolls back on the first deny", async () => {
  const verdict = await watchCanary({
    durationMs: 10_000,
    maxDenyRate: 0,
    ...fakeKernel((s) => s === 4 ? 1 : 0),
  });
  assert.equal(verdict.verdict, "exceeded");
  assert.equal(verdict.elapsedMs, 5_000);
});

Deno.test("watchCanary() ends aborted when interrupted or when the counters vanish", async () => {
  const controller = new AbortController();
  const kernel = fakeKernel(() => 0);
  const interrupted = await watchCanary({
    durationMs: 60_000,
    maxDenyRate: 1,
    ...kernel,
    sleep: (ms) => {
      if (kernel.now() >= 3000) controller.abort();
      return kernel.sleep(ms);
    },
    signal: controller.signal,
  });
  assert.equal(interrupted.verdict, "aborted");
  assert.ok(interrupted.verdict === "aborted" && interrupted.reason === "interrupted");
  let reads = 0;
  const gone = await watchCanary({
    durationMs: 60_000,
    maxDenyRate: 1,
    ...fakeKernel(() => 0),
    readDenies: () => (++reads > 2 ? undefined : 0n),
  });
  assert.ok(gone.verdict === "aborted" && /vanished/.test(gone.reason));
});

Deno.test("parseDenyRate() reads per second, per minute and per hour", () => {
  assert.equal(parseDenyRate("5"), 5);
  assert.equal(parseDenyRate("5/s"), 5);
  assert.equal(parseDenyRate("30/min"), 0.5);
  assert.equal(parseDenyRate("0"), 0);
  assert.equal(parseDenyRate("36/h"), 0.01);
  for (const bad of ["", "-1", "fast", "5/d", "1e3"]) {
    assert.throws(
      () => parseDenyRate(bad),
      (e: unknown) => e instanceof InputError && /--max-deny-rate/.test(e.message),
    );
  }
});

Deno.test("watchCanary() counts the denies made between the flip and its first sample", async () => {
  const kernel = fakeKernel(() => 0);
  // 30 denies happened after the baseline was read, before the watch began.
  const verdict = await watchCanary({
    durationMs: 10_000,
    maxDenyRate: 2,
    ...kernel,
    readDenies: () => kernel.readDenies() + 30n,
    baseline: { denies: 0n, at: kernel.now() },
  });
  assert.equal(verdict.verdict, "exceeded");
  assert.equal(verdict.elapsedMs, 1_000);
});

Deno.test("canaryCounts() counts every rule of the plan but ingress rules, and no unknown rule id", () => {
  const rules = compilePolicy(parsePolicy(SCOPED_WITH_INGRESS, "p.yaml")).rules;
  const counts = canaryCounts(rules);
  const counted = rules.flatMap((rule, id) => counts(id) ? [rule.id] : []);
  assert.ok(counted.includes("lo2") && counted.includes("bind"), counted.join(", "));
  assert.ok(counted.includes("scope.escape"), "a task in scope moving out of it counts");
  assert.ok(rules.some((rule) => rule.area === "ingress"));
  assert.deepEqual(
    rules.filter((_, id) => counts(id)).map((rule) => rule.area).filter((a) => a === "ingress"),
    [],
  );
  assert.equal(counts(rules.length + 5), false);
});

const SCOPED_WITH_INGRESS = `apiVersion: aegisbpf.io/v1
kind: Policy
metadata: { name: p, version: 1 }
spec:
  mode: enforce
  scope: { cgroups: [/canary.slice] }
  network:
    egress: { deny: [{ id: lo2, cidr: 127.0.0.2/32 }] }
    bind: { deny: [{ id: bind, port: 6667, protocol: tcp }] }
    ingress:
      interfaces: [lo]
      deny: [{ id: scanners, cidr: 203.0.113.0/24 }]
`;
Deno.test("canaryProgress() writes one line per 10 s of the watch, with the denies and the windowed rate", async () => {
  const kernel = fakeKernel((second) => (second < 12 ? 1 : 0));
  const lines: string[] = [];
  const verdict = await watchCanary({
    durationMs: 25_000,
    maxDenyRate: 5,
    readDenies: kernel.readDenies,
    now: kernel.now,
    sleep: kernel.sleep,
    onSample: canaryProgress({ durationText: "25s", limitText: "5/s", write: (line) => lines.push(line) }),
  });
  assert.equal(verdict.verdict, "kept");
  assert.deepEqual(lines, [
    "canary: 10s of 25s: 10 denies, 1.00/s over the last 10s (rolls back above 5/s)",
    "canary: 20s of 25s: 12 denies, 0.20/s over the last 10s (rolls back above 5/s)",
  ]);
});
