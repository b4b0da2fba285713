/**
 * Data-plane benchmarks (root): figures as ratios against a baseline taken in the same run.
 *   1. socket+connect+close with the egress hooks and 10,000 non-matching CIDR rules, against the same
 *      loop in a sibling cgroup without hooks (interleaved rounds, medians);
 *   2. writing 100,000 egress rules into the inactive generation with batch updates, and a whole apply.
 * Usage: deno task bench [--rounds N] [--iterations N]
 */
import { parseArgs } from "node:util";
import { DataPlane } from "../lib/kernel/dataplane.ts";
import { resolvePlan } from "../lib/kernel/resolve.ts";
import { ruleSetEntries } from "../lib/kernel/entries.ts";
import { emptyPlan, type NetRule } from "../lib/policy/plan.ts";
import { TestBpffs } from "../tests/support/bpffs.ts";
import { TestCgroup } from "../tests/support/cgroup.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { rounds: { type: "string", default: "7" }, iterations: { type: "string", default: "20000" } },
});
const rounds = Number(values.rounds);
const iterations = Number(values.iterations);

async function buildLoop(): Promise<string> {
  const out = `${Deno.makeTempDirSync({ prefix: "aegisbpf-bench-" })}/connect_loop`;
  const source = new URL("./connect_loop.c", import.meta.url).pathname;
  const result = await new Deno.Command("clang", { args: ["-O2", "-o", out, source], stderr: "piped" })
    .output();
  if (!result.success) throw new Error(`clang failed: ${new TextDecoder().decode(result.stderr)}`);
  return out;
}

function rules(count: number, first: number): NetRule[] {
  // 10.x.y.z/32 and /24 prefixes: none matches 127.0.0.1, so every connect walks the tries and passes.
  return Array.from({ length: count }, (_, i) => ({
    ruleId: 1,
    action: "deny" as const,
    family: 4 as const,
    addr: new Uint8Array([10 + ((first + i) >> 16 & 0x3f), ((first + i) >> 8) & 0xff, (first + i) & 0xff, 0]),
    prefixLength: i % 2 === 0 ? 32 : 24,
    ...(i % 3 === 0 ? { port: 443, protocol: "tcp" as const } : {}),
  }));
}

function drainCount(plane: DataPlane): number {
  let n = 0;
  using stream = plane.events(() => n++);
  stream.poll();
  return n;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function connectBench(loop: string): Promise<void> {
  const parent = TestCgroup.create();
  const hooked = parent.child("hooked");
  const plain = parent.child("plain");
  const bpffs = await TestBpffs.mount();
  const port = 1 + (Deno.pid % 1000); // a closed low port on loopback: refused at once
  try {
    const plane = DataPlane.open({ bpffs: bpffs.path, cgroupPath: hooked.path, areas: ["egress"] });
    try {
      await plane.apply(resolvePlan({ ...emptyPlan(), mode: "enforce", egress: rules(10_000, 0) }));
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
        console.log(
          `connect (${protocol}): baseline ${median(base).toFixed(0)} ns, with egress hooks + 10,000 rules ` +
            `${median(withHooks).toFixed(0)} ns = ${(median(withHooks) / median(base)).toFixed(3)}x ` +
            `(median of ${rounds} interleaved rounds x ${iterations} connects)`,
        );
      }
      const counters = plane.counters();
      const decided = counters.decisions.connect.deny + counters.decisions.connect.audit;
      console.log(
        `connect: unmatched decisions counted ${decided}, events emitted ${
          drainCount(plane)
        } (both must be 0)`,
      );
    } finally {
      plane.close();
      DataPlane.detach(bpffs.path);
    }
  } finally {
    await bpffs.unmount();
    parent.remove();
  }
}

async function writeBench(): Promise<void> {
  const parent = TestCgroup.create();
  const bpffs = await TestBpffs.mount();
  try {
    const plane = DataPlane.open({ bpffs: bpffs.path, cgroupPath: parent.path, areas: ["egress"] });
    try {
      const set = resolvePlan({ ...emptyPlan(), mode: "enforce", egress: rules(100_000, 0) });
      let t = performance.now();
      const entries = ruleSetEntries(set, 1);
      const encodeMs = performance.now() - t;
      const map = plane.map("egress_any");
      const { keys, values } = entries.egress_any;
      const keyBytes = new Uint8Array(keys.length * map.keySize);
      const valueBytes = new Uint8Array(values.length * map.valueSize);
      keys.forEach((key, i) => keyBytes.set(key, i * map.keySize));
      values.forEach((value, i) => valueBytes.set(value, i * map.valueSize));
      t = performance.now();
      map.updateBatch(keyBytes, valueBytes, keys.length);
      const batchMs = performance.now() - t;
      for (const key of keys) map.delete(key);
      t = performance.now();
      await plane.apply(set);
      const applyMs = performance.now() - t;
      const written = Object.values(entries).reduce((sum, e) => sum + e.keys.length, 0);
      console.log(
        `write: ${written} entries for 100,000 rules; encode ${encodeMs.toFixed(0)} ms; ` +
          `batch write of ${keys.length} trie entries ${
            batchMs.toFixed(0)
          } ms; whole apply (write, flip, clear old) ${applyMs.toFixed(0)} ms`,
      );
    } finally {
      plane.close();
      DataPlane.detach(bpffs.path);
    }
  } finally {
    await bpffs.unmount();
    parent.remove();
  }
}

const loop = await buildLoop();
await connectBench(loop);
await writeBench();
Deno.removeSync(loop.slice(0, loop.lastIndexOf("/")), { recursive: true });
