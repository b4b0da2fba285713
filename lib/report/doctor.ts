/**
 * `doctor`: whether this host can run aegisbpf, and how well: a verdict per area from real probe loads,
 * and the host checks behind them.
 */

import {
  type AreaVerdicts,
  decideAreas,
  type LoadProbe,
  probeLoads,
  readHostFacts,
} from "../kernel/probe.ts";
import { PROGRAMS } from "../kernel/object.ts";
import { parsePtraceScope } from "../policy/facts.ts";
import { type Check, type CheckPaths, hostChecks } from "./host_checks.ts";

export type DoctorReport = {
  /** Every area can at least audit and no check failed. */
  ok: boolean;
  host: string;
  areas: AreaVerdicts;
  checks: Check[];
  probes: LoadProbe[];
};

export function runDoctor(paths: CheckPaths): DoctorReport {
  const facts = readHostFacts();
  const probes = probeLoads();
  const areas = decideAreas(probes, facts);
  const checks = [...hostChecks(paths, facts), ptraceGuardCheck(probes, facts.activeLsms, readPtraceScope())];
  const ok = Object.values(areas).every((area) => area.verdict !== "unavailable") &&
    checks.every((check) => check.status !== "fail");
  return { ok, host: Deno.hostname(), areas, checks, probes };
}

/** kernel.yama.ptrace_scope, or undefined without Yama. */
function readPtraceScope(): number | undefined {
  try {
    return parsePtraceScope(Deno.readTextFileSync("/proc/sys/kernel/yama/ptrace_scope"));
  } catch {
    return undefined;
  }
}

/**
 * Whether a policy with a scope gets the ptrace guard here (a BPF-LSM program, so only where BPF-LSM
 * loads and runs), and what kernel.yama.ptrace_scope does meanwhile. A warning, not a failure. Pure.
 */
export function ptraceGuardCheck(
  probes: readonly LoadProbe[],
  activeLsms: readonly string[] | undefined,
  ptraceScope: number | undefined,
): Check {
  const name = "ptrace guard";
  const probe = probes.find((entry) => entry.name === PROGRAMS.ptraceAccess);
  const yama = ptraceScope === undefined ? "Yama is not active" : `kernel.yama.ptrace_scope=${ptraceScope}`;
  if (probe?.ok && activeLsms?.includes("bpf")) {
    return { name, status: "ok", detail: `${PROGRAMS.ptraceAccess} loads: enforced with a scope; ${yama}` };
  }
  const why = !probe
    ? "not in the BPF object"
    : !probe.ok
    ? `${probe.name} ${probe.errnoName}`
    : "bpf is not an active LSM";
  const covered = ptraceScope !== undefined && ptraceScope >= 2;
  return {
    name,
    status: covered ? "ok" : "warn",
    detail: `not enforced (${why}): a task in a scope can trace, or write the memory of, a task outside ` +
      `it unless Yama refuses it; ${yama}${
        covered ? ", which refuses it to tasks without CAP_SYS_PTRACE" : ""
      }`,
    ...!covered && {
      remediation: "let BPF-LSM load (see the file area), or " +
        (ptraceScope === undefined
          ? "boot with Yama (yama in lsm=...) and kernel.yama.ptrace_scope=2"
          : "set kernel.yama.ptrace_scope=2 (sysctl -w kernel.yama.ptrace_scope=2; 1 leaves a task's own " +
            "descendants open)"),
    },
  };
}
