/**
 * Data-plane benchmarks (root): figures as ratios against a baseline taken in the same run.
 *   1. socket+connect+close with the egress hooks and 10,000 non-matching CIDR rules, against the same
 *      loop in a sibling cgroup without hooks (interleaved rounds, medians), TCP and UDP;
 *   2. TCP throughput through loopback in a cgroup under the packet backstop (cgroup_skb/egress, which
 *      returns at once for TCP) against a sibling cgroup without it (interleaved rounds, medians);
 *   3. writing 100,000 egress rules into the inactive generation with batch updates, and a whole apply.
 * Usage: deno task bench [--rounds N] [--iterations N] [--stream-mib N]
 */
import { parseArgs } from "node:util";
import { ruleSetEntries } from "../lib/kernel/entries.ts";
import { resolvePlan } from "../lib/kernel/resolve.ts";
import { emptyPlan, type NetRule } from "../lib/policy/plan.ts";
import { TestCgroup } from "../tests/support/cgroup.ts";
import { drain, withPlane } from "../tests/support/plane.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    rounds: { type: "string", default: "7" },
    iterations: { type: "string", default: "20000" },
    "stream-mib": { type: "string", default: "512" },
  },
});
const rounds = Number(values.rounds);
const iterations = Number(values.iterations);
const streamBytes = Number(values["stream-mib"]) * 2 ** 20;

/** Compiles bench/NAME.c into `dir`; returns the binary's path. */
async function build(dir: string, name: string): Promise<string> {
  const out = `${dir}/${name}`;
  const source = new URL(`./native/${name}.c`, import.meta.url).pathname;
  const result = await new Deno.Command("clang", { args: ["-O2", "-o", out, source], stderr: "piped" })
    .output();
  if (!result.success) throw new Error(`clang failed: ${new TextDecoder().decode(result.stderr)}`);
  return out;
}

/** `count` deny rules in 10.0.0.0/8 (/32 and /24, a third with a port): none matches 127.0.0.1. */
function rules(count: number): NetRule[] {
  return Array.from({ length: count }, (_, i) => ({
    ruleId: 1,
    action: "deny" as const,
    family: 4 as const,
    addr: new Uint8Array([10 + ((i >> 16) & 0x3f), (i >> 8) & 0xff, i & 0xff, 0]),
    prefixLength: i % 2 === 0 ? 32 : 24,
    ...(i % 3 === 0 ? { port: 443, protocol: "tcp" as const } : {}),
  }));
}

/**
 * The kernel's own accounting of a program's run time (kernel.bpf_stats_enabled), which the wall-clock
 * noise of a shared machine cannot blur. Restores the sysctl when read.
 */
async function programStats(
  pin: string,
): Promise<{ read: () => Promise<{ runs: number; nsPerRun: number }> }> {
  const sysctl = "/proc/sys/kernel/bpf_stats_enabled";
  const before = Deno.readTextFileSync(sysctl).trim();
  Deno.writeTextFileSync(sysctl, "1");
  const show = async () => {
    const out = await new Deno.Command("bpftool", {
      args: ["--json", "prog", "show", "pinned", pin],
      stdout: "piped",
    })
      .output();
    const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
      run_time_ns?: number;
      run_cnt?: number;
    };
    return { time: info.run_time_ns ?? 0, runs: info.run_cnt ?? 0 };
  };
  const start = await show();
  return {
    read: async () => {
      const end = await show();
      Deno.writeTextFileSync(sysctl, before);
      const runs = end.runs - start.runs;
      return { runs, nsPerRun: runs > 0 ? (end.time - start.time) / runs : 0 };
    },
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/**
 * TCP throughput (sender and receiver in the same cgroup, so data and ACKs both pass the egress program)
 * with and without the packet backstop: the "TCP pays nothing measurable" as a same-run ratio.
 */
async function streamBench(stream: string): Promise<void> {
  const plain = TestCgroup.create();
  try {
    await withPlane({ areas: ["egress"] }, async ({ plane, cgroup: hooked, bpffs }) => {
      await plane.apply(resolvePlan({ ...emptyPlan(), mode: "enforce", egress: rules(10_000) }));
      const run = async (cgroup: TestCgroup) => {
        const result = await cgroup.runBash(`exec '${stream}' ${streamBytes}`);
        const ns = Number(result.stdout);
        if (result.code !== 0 || !(ns > 0)) throw new Error(`tcp stream failed: ${result.stderr}`);
        return streamBytes / ns; // GB/s
      };
      await run(plain); // warm-up
      await run(hooked);
      const base: number[] = [];
      const withBackstop: number[] = [];
      for (let i = 0; i < rounds; i++) {
        base.push(await run(plain));
        withBackstop.push(await run(hooked));
      }
      const ratios = base.map((rate, i) => withBackstop[i]! / rate);
      // The program's own cost in one more round, apart: the kernel's accounting slows every run it counts.
      const stats = await programStats(`${bpffs.path}/aegisbpf/progs/aegis_skb_egress`);
      await run(hooked);
      const program = await stats.read();
      console.log(
        `tcp throughput over loopback: baseline ${median(base).toFixed(2)} GB/s, under the packet backstop ` +
          `${median(withBackstop).toFixed(2)} GB/s; median per-round ratio ${median(ratios).toFixed(3)}x ` +
          `(${rounds} interleaved rounds x ${streamBytes / 2 ** 20} MiB); skb_egress program ` +
          `${program.nsPerRun.toFixed(0)} ns per run over ${program.runs} packets`,
      );
    });
  } finally {
    plain.remove();
  }
}

async function connectBench(loop: string): Promise<void> {
  const plain = TestCgroup.create();
  const port = 1 + (Deno.pid % 1000); // a closed low port on loopback: refused at once
  try {
    await withPlane({ areas: ["egress"] }, async ({ plane, cgroup: hooked, bpffs }) => {
      await plane.apply(resolvePlan({ ...emptyPlan(), mode: "enforce", egress: rules(10_000) }));
      const stats = await programStats(`${bpffs.path}/aegisbpf/progs/aegis_connect4`);
      const run = async (cgroup: TestCgroup, protocol: string) => {
        const result = await cgroup.runBash(`exec '${loop}' ${protocol} ${port} ${iterations}`);
        const ns = Number(result.stdout);
        if (result.code !== 0 || !(ns > 0)) throw new Error(`connect loop failed: ${result.stderr}`);
        return ns;
      };
      for (const protocol of ["tcp", "udp"]) {
        await run(plain, protocol); // warm-up
        await run(hooked, protocol);
        const base: number[] = [];
        const withHooks: number[] = [];
        for (let i = 0; i < rounds; i++) {
          base.push(await run(plain, protocol));
          withHooks.push(await run(hooked, protocol));
        }
        const ratios = base.map((ns, i) => withHooks[i]! / ns);
        console.log(
          `connect (${protocol}): baseline ${median(base).toFixed(0)} ns, with egress hooks + 10,000 rules ` +
            `${median(withHooks).toFixed(0)} ns; median per-round ratio ${median(ratios).toFixed(3)}x ` +
            `(${rounds} interleaved rounds x ${iterations} connects)`,
        );
      }
      const program = await stats.read();
      console.log(
        `connect4 program (kernel bpf_stats): ${
          program.nsPerRun.toFixed(0)
        } ns per run over ${program.runs} runs`,
      );
      const counters = plane.counters();
      const decided = counters.decisions.connect.deny + counters.decisions.connect.audit;
      console.log(
        `connect: unmatched decisions counted ${decided}, events emitted ${
          drain(plane).length
        } (both must be 0)`,
      );
    });
  } finally {
    plain.remove();
  }
}

/**
 * Issue 6's figures: encoding 100,000 rules, applying them twice in a row (a replace of a live 100k set),
 * then one rule after them (the old 100k generation is dropped, never walked).
 */
async function writeBench(): Promise<void> {
  await withPlane({ areas: ["egress"] }, async ({ plane }) => {
    const big = resolvePlan({ ...emptyPlan(), mode: "enforce", egress: rules(100_000) });
    const small = resolvePlan({ ...emptyPlan(), mode: "enforce", egress: rules(1) });
    let t = performance.now();
    const entries = ruleSetEntries(big);
    const encodeMs = performance.now() - t;
    const timed = async (label: string, set: typeof big) => {
      const start = performance.now();
      await plane.apply(set);
      return `${label} ${(performance.now() - start).toFixed(0)} ms`;
    };
    const results = [
      await timed("first apply of 100,000 rules", big),
      await timed("replace of a live 100,000-rule set", big),
      await timed("1 rule after 100,000", small),
    ];
    t = performance.now();
    const rss = Deno.memoryUsage().rss;
    console.log(
      `write: ${entries.net_rules.count} trie entries for 100,000 rules; encode ${encodeMs.toFixed(0)} ms ` +
        `(${(performance.now() - t).toFixed(0)} ms to read rss ${(rss / 2 ** 20).toFixed(0)} MiB); ` +
        results.join("; "),
    );
  });
}

const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-bench-" });
try {
  await connectBench(await build(dir, "connect_loop"));
  await streamBench(await build(dir, "tcp_stream"));
  await writeBench();
} finally {
  Deno.removeSync(dir, { recursive: true });
}
