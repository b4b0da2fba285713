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
  const checks = hostChecks(paths, facts);
  const ok = Object.values(areas).every((area) => area.verdict !== "unavailable") &&
    checks.every((check) => check.status !== "fail");
  return { ok, host: Deno.hostname(), areas, checks, probes };
}
