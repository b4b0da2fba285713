/**
 * connect() with rules by name (issue 20): the egress hooks with 10,000 names' rules and 10,000 learned
 * addresses (and again with each name's rule for one program, the loop's), against the same hooks without
 * names and against no program. The destination, 127.0.0.1, is one of the learned addresses (allowed by its
 * name), so every connect takes the whole names path: the CIDR match, the learned-address lookup and the
 * name's rule lookups (with exe: the task's program first). Run alone: `deno task bench --only names`.
 */
import { resolvePlan } from "../../lib/kernel/resolve.ts";
import { compilePolicy } from "../../lib/policy/compile.ts";
import type { Policy } from "../../lib/policy/schema.ts";
import { TestCgroup } from "../../tests/support/cgroup.ts";
import { withPinnedProgramStats } from "../lib/pinned_stats.ts";
import { type Cleanup, Netns, openTestPlane } from "../lib/net_peers.ts";
import { interleave, median, ratios } from "../lib/stats.ts";
import { suite } from "../lib/suite.ts";

const CLOSED_PORT = 9;
const TARGET_RATIO = 1.05;
const NAMES = 10_000;
const VARIANTS = ["none", "none-aa", "cidr", "names", "exe"] as const;
type Variant = typeof VARIANTS[number];
const LABELS: Record<Variant, string> = {
  none: "no program",
  "none-aa": "no program (A/A)",
  cidr: "aegisbpf, 10 CIDR rules, no names",
  names: `aegisbpf, 10 CIDR rules and ${NAMES.toLocaleString("en")} names learned`,
  exe: `aegisbpf, 10 CIDR rules and ${
    NAMES.toLocaleString("en")
  } names learned, every name's rule by program`,
};

/**
 * The policy: 10 CIDR denies in 10.0.0.0/8, and an allow for each name (`hostsByName`: learned below); with
 * `exe`, each name's allow is for that program only (the subject path: the task's program, then the name).
 */
function policy(names: number, exe?: string): Policy {
  const deny = Array.from({ length: 10 }, (_, i) => ({ cidr: `10.${i}.0.0/16` }));
  const allow = Array.from({ length: names }, (_, i) => ({ host: `n${i}.bench.example`, ...exe && { exe } }));
  return {
    apiVersion: "aegisbpf.io/v1",
    kind: "Policy",
    metadata: { name: "bench-names", version: 1 },
    spec: { mode: "enforce", network: { egress: { deny, ...names > 0 && { allow } } } },
  };
}

await suite("names", "connect() with rules by name", async (ctx) => {
  const rounds = ctx.pick(31, 3);
  const iterations = ctx.pick(20_000, 4_000);
  const loop = await ctx.native("connect_loop");
  ctx.method(
    `TCP socket + connect + close to 127.0.0.1:${CLOSED_PORT} (refused at once), ${iterations} per sample ` +
      `(bench/native/connect_loop.c); ${rounds} interleaved rounds, medians and the median of per-round ratios.`,
  );
  ctx.method(
    `names: ${NAMES.toLocaleString("en")} allow rules by name and ${NAMES.toLocaleString("en")} learned ` +
      `addresses (the table written as apply writes it), 127.0.0.1 among them; cidr: the same 10 CIDR rules ` +
      "without names (the hooks never read the table).",
  );
  const cleanup: Cleanup = [];
  try {
    const plain = TestCgroup.create();
    cleanup.push(() => plain.remove());
    const ns = await Netns.create();
    cleanup.push(() => ns.remove());
    const cidr = await openTestPlane({ areas: ["egress"] }, cleanup);
    await cidr.plane.apply(resolvePlan(compilePolicy(policy(0))));
    const answers = Array.from({ length: NAMES }, (_, i) => ({
      name: `n${i}.bench.example`,
      addr: i === 0 ? "127.0.0.1" : `172.16.${i >> 8}.${i & 0xff}`,
      ttl: 86_400,
    }));
    const namedPlane = async (exe?: string) => {
      const opened = await openTestPlane({ areas: ["egress"] }, cleanup);
      const plan = compilePolicy(policy(NAMES, exe));
      opened.plane.learn(plan.egressHosts ?? [], answers);
      await opened.plane.apply(resolvePlan(plan));
      return opened;
    };
    const named = await namedPlane();
    // The loop's own program: the rule of 127.0.0.1's name is its, so every connect takes the subject path.
    const byProgram = await namedPlane(Deno.realPathSync(loop));
    const run = async (cgroup: TestCgroup) => {
      const result = await cgroup.runBash(
        `exec ${ns.exec([loop]).join(" ")} tcp ${CLOSED_PORT} ${iterations}`,
      );
      const value = Number(result.stdout);
      if (result.code !== 0 || !(value > 0)) throw new Error(`connect_loop failed: ${result.stderr.trim()}`);
      return value;
    };
    const samples = await interleave(rounds, {
      none: () => run(plain),
      "none-aa": () => run(plain),
      cidr: () => run(cidr.cgroup),
      names: () => run(named.cgroup),
      exe: () => run(byProgram.cgroup),
    } as Record<Variant, () => Promise<number>>);
    for (const variant of VARIANTS) {
      ctx.figure(
        `tcp.${variant}`,
        `TCP socket+connect+close, ${LABELS[variant]}`,
        "ns/op",
        samples[variant],
        variant === "none" ? {} : { ratioTo: "tcp.none" },
      );
    }
    const overhead = ratios(samples.names, samples.none).median;
    const aa = ratios(samples["none-aa"], samples.none).median;
    const decidable = Math.abs(aa - 1) <= TARGET_RATIO - 1;
    ctx.target({
      name: `TCP connect with ${NAMES.toLocaleString("en")} learned names`,
      want: `<= ${TARGET_RATIO}x the baseline`,
      got: `${overhead.toFixed(3)}x (${median(samples.names).toFixed(0)} ns; without names ${
        ratios(samples.cidr, samples.none).median.toFixed(3)
      }x; A/A ${aa.toFixed(3)}x${decidable ? "" : `: past the ${TARGET_RATIO}x margin, undecided`})`,
      met: decidable && overhead <= TARGET_RATIO,
    });
    const exeOverhead = ratios(samples.exe, samples.none).median;
    ctx.target({
      name: `TCP connect with ${NAMES.toLocaleString("en")} exe-scoped name rules and as many learned names`,
      want: `<= ${TARGET_RATIO}x the baseline`,
      got: `${exeOverhead.toFixed(3)}x (${median(samples.exe).toFixed(0)} ns; A/A ${aa.toFixed(3)}x${
        decidable ? "" : `: past the ${TARGET_RATIO}x margin, undecided`
      })`,
      met: decidable && exeOverhead <= TARGET_RATIO,
    });
    // The kernel's own run time of connect4 on each path (the wall clock above is noisy on a shared host).
    const paths = [
      { plane: named, phase: "names path" },
      { plane: byProgram, phase: "names path, every name's rule by program" },
    ];
    for (const { plane, phase } of paths) {
      const stats = await withPinnedProgramStats(
        { aegis_connect4: `${plane.plane.pinDir}/progs/aegis_connect4` },
        () => run(plane.cgroup).then(() => {}),
      );
      for (const stat of stats) ctx.programStat({ ...stat, phase: `${iterations} TCP connects, ${phase}` });
    }
    for (const { plane } of [named, byProgram]) {
      const decided = plane.counters().decisions.connect;
      if (decided.deny + decided.audit !== 0n) throw new Error("a connect to the learned address was denied");
    }
    ctx.note(
      "The receive-path DNS parser (addresses learned from the answers programs receive) is measured in the " +
        "dns section (deno task bench --only dns).",
    );
  } finally {
    for (const step of cleanup.reverse()) await step();
  }
});
