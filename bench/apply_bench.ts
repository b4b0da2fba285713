/**
 * `policy apply` end to end, by stage (root): read, parse and validate, compile, resolve, encode the map
 * entries, kernel write and flip, for JSON policies of 1,000 / 10,000 / 100,000 egress CIDR rules
 * (addresses in 240.0.0.0/4, which nothing routes), on a test cgroup and a private bpffs; and the resident
 * memory of the process after each. Each size is applied twice: a first apply and a replace of the live set.
 * Usage: deno task bench:apply
 */
import { readPolicyFile } from "../lib/policy/parse.ts";
import { parsePolicySource } from "../lib/policy/parse.ts";
import { compilePolicy } from "../lib/policy/compile.ts";
import { resolvePlan } from "../lib/kernel/resolve.ts";
import { encodeNetRules } from "../lib/kernel/entries.ts";
import { withPlane } from "../tests/support/plane.ts";
import { fleetPolicyJson, unroutedDenies } from "../tests/support/fleet.ts";

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;

await withPlane({ areas: ["egress"] }, async ({ plane }) => {
  const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-bench-apply-" });
  try {
    for (const rules of [1_000, 10_000, 100_000]) {
      const path = `${dir}/policy-${rules}.json`;
      Deno.writeTextFileSync(
        path,
        fleetPolicyJson(`bench-${rules}`, unroutedDenies(rules), { mode: "enforce" }),
      );
      for (const round of ["first", "replace"]) {
        const times: [string, number][] = [];
        let t = performance.now();
        const step = (name: string) => {
          const now = performance.now();
          times.push([name, now - t]);
          t = now;
        };
        const file = await readPolicyFile(path);
        step("read");
        const source = parsePolicySource(file.text, path);
        step("parse+validate");
        const plan = compilePolicy(source.policy);
        step("compile");
        const resolved = resolvePlan(plan);
        step("resolve");
        // As the agent holds a plan: the CIDR rules encoded once into their entries' bytes.
        plan.encodedNet = encodeNetRules(plan);
        step("encode");
        await plane.apply(resolved);
        step("kernel write+flip+drop old");
        const total = times.reduce((sum, [, ms]) => sum + ms, 0);
        console.log(
          `apply ${rules} rules (${round}): total ${total.toFixed(0)} ms; ` +
            times.map(([name, ms]) => `${name} ${ms.toFixed(0)} ms`).join(", ") +
            `; rss ${mib(Deno.memoryUsage().rss)}`,
        );
      }
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
