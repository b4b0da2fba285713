/**
 * A VM test whose policy is scoped to a cgroup of its own (so that the test runner and the guest's shell keep
 * running under exec and file denies), over the file's shared data plane (tests/support/shared_plane.ts).
 * Outside the qemu guest, where BPF-LSM does not load, the test is ignored.
 */
import assert from "node:assert/strict";
import { cgroup2Root } from "../../lib/kernel/cgroup.ts";
import type { DataPlane } from "../../lib/kernel/dataplane.ts";
import { exists } from "../../lib/kernel/pin_dir.ts";
import { resolvePlan } from "../../lib/kernel/resolve.ts";
import { parseExecutableMappings } from "../../lib/policy/facts.ts";
import {
  type AllowTarget,
  type Area,
  emptyPlan,
  type RuleInfo,
  type RuleSetPlan,
} from "../../lib/policy/plan.ts";
import { type Outcome, run } from "./outcome.ts";
import type { SharedPlane } from "./shared_plane.ts";

const inVm = Deno.env.get("AEGIS_IN_VM") === "1";
let counter = 0;

export type ScopedFixture = {
  plane: DataPlane;
  /** A directory of the test's own, readable by all, removed at its end. */
  dir: string;
  /** The test's scope, as a plan names it. */
  scope: RuleSetPlan["scope"];
  /** Runs argv inside the test's scope cgroup (moved there by a shell, which then execs it). */
  inScope: (...argv: string[]) => Promise<Outcome>;
  /** Applies an enforce plan of the test's rules in its scope, with `parts` over it. */
  apply: (parts: Partial<RuleSetPlan>) => Promise<void>;
};

export type ScopedOptions = {
  shared: SharedPlane;
  /** The start of the test's directory and cgroup names, one per test file. */
  prefix: string;
  /** The areas the plane opens; each must come up in enforce. */
  areas: Area[];
  rules: RuleInfo[];
};

/** A test that runs `fn` with a fresh directory, scope cgroup and plane, and removes them after. */
export function scopedVmTest(
  name: string,
  options: ScopedOptions,
  fn: (fixture: ScopedFixture) => Promise<void>,
): void {
  const { shared, prefix, areas, rules } = options;
  Deno.test({
    name,
    ignore: !inVm,
    fn: async () => {
      counter++;
      const dir = Deno.makeTempDirSync({ prefix: `${prefix}-` });
      Deno.chmodSync(dir, 0o755);
      const cgroup = `${cgroup2Root()}/${prefix}-${counter}`;
      if (exists(cgroup)) Deno.removeSync(cgroup);
      Deno.mkdirSync(cgroup);
      try {
        const plane = shared.open({ areas });
        try {
          for (const area of areas) {
            assert.equal(plane.status[area].mode, "enforce", `${area} area: ${plane.status[area].reason}`);
          }
          const scope = { include: [cgroup.slice(cgroup2Root().length)], exempt: [] };
          await fn({
            plane,
            dir,
            scope,
            inScope: (...argv) =>
              run("sh", ["-c", `echo $$ > '${cgroup}/cgroup.procs' && exec "$@"`, "sh", ...argv]),
            apply: async (parts) => {
              await plane.apply(resolvePlan({ ...emptyPlan(), mode: "enforce", rules, scope, ...parts }));
            },
          });
        } finally {
          await shared.release(plane);
        }
      } finally {
        Deno.removeSync(cgroup);
        Deno.removeSync(dir, { recursive: true });
      }
    },
  });
}

/** The file's last test: the shared plane goes, with everything it pinned and attached. */
export function detachTest(shared: SharedPlane, what: string): void {
  Deno.test({
    name: `[vm] the ${what} tests' shared data plane detaches: nothing of it stays pinned`,
    ignore: !inVm,
    fn: () => {
      shared.detach();
      assert.equal(exists(shared.bpffs), false);
    },
  });
}

/**
 * What this runtime maps executable (the loader and libc among them), what a probe needs too, as allow
 * entries of `ruleId` (optional: one gone from the disk is passed over).
 */
export function runtimeAllowed(ruleId: number): AllowTarget[] {
  return parseExecutableMappings(Deno.readTextFileSync("/proc/self/maps")).map((path) => ({
    ruleId,
    path,
    optional: true,
  }));
}
