import { runDoctor } from "../report/doctor.ts";
import { type CheckStatus, TEXTFILE_DIRS } from "../report/host_checks.ts";
import { defineCommand } from "../cli/command.ts";
import type { Palette } from "../text/palette.ts";
import { table } from "../cli/output.ts";
import { palette } from "../text/palette.ts";
import type { Verdict } from "../kernel/probe.ts";

export const doctor = defineCommand({
  name: "doctor",
  summary: "can this host enforce? a verdict per area from real probe loads",
  description: "Loads every program of the BPF object on its own (and the maps alone), without pinning or " +
    "attaching anything, and closes each at once; reads lockdown, BTF, bpffs, cgroup v2, the active LSMs, " +
    "libbpf, capabilities and who may write the state, config and key directories. Gives each area (file, " +
    "exec, egress, bind, ingress) a verdict: enforce, audit-only or unavailable, with the reason and what to " +
    "do. Exit 0 when every area can at least audit and no check failed, 1 otherwise. The --json schema is " +
    "docs/schema/doctor.schema.json.",
  options: {
    json: { type: "boolean", description: "print one JSON object (docs/schema/doctor.schema.json)" },
    "textfile-dir": {
      type: "string",
      valueName: "DIR",
      complete: "directory",
      description: `node_exporter's textfile directory to check (default: the first of ${
        TEXTFILE_DIRS.join(", ")
      } that exists)`,
    },
  },
  args: [],
  examples: ["aegisbpf doctor", "aegisbpf doctor --json"],
  run(ctx, { flags }) {
    const { bpffs, stateDir, configDir } = ctx.globals;
    const report = runDoctor({ bpffs, stateDir, configDir, textfileDir: flags["textfile-dir"] });
    const code = report.ok ? 0 : 1;
    if (flags.json) {
      ctx.stdout.line(JSON.stringify({ schema: 1, ...report }));
      return Promise.resolve(code);
    }
    const style = palette(ctx.color);
    const kernel = report.checks.find((check) => check.name === "kernel")?.detail ?? "";
    ctx.stdout.line(style.bold(`aegisbpf doctor on ${report.host} (kernel ${kernel})`));
    ctx.stdout.line();
    const areaRows = [["AREA", "VERDICT", "WHY"].map(style.bold)];
    for (const [area, { verdict, reason }] of Object.entries(report.areas)) {
      areaRows.push([area, verdictStyle(verdict, style)(verdict), reason]);
    }
    for (const line of table(areaRows)) ctx.stdout.line(line);
    for (const [area, { verdict, remediation }] of Object.entries(report.areas)) {
      if (verdict !== "enforce") ctx.stdout.line(`  ${area}: ${style.cyan("fix")}: ${remediation}`);
    }
    ctx.stdout.line();
    const checkRows = [["CHECK", "STATUS", "DETAIL"].map(style.bold)];
    for (const { name, status, detail } of report.checks) {
      checkRows.push([name, statusStyle(status, style)(status), detail]);
    }
    for (const line of table(checkRows)) ctx.stdout.line(line);
    for (const { name, status, remediation } of report.checks) {
      if (status !== "ok" && remediation) ctx.stdout.line(`  ${name}: ${style.cyan("fix")}: ${remediation}`);
    }
    ctx.stdout.line();
    const probeRows = [["PROBE LOAD", "TYPE", "RESULT", "MS"].map(style.bold)];
    for (const probe of report.probes) {
      const result = probe.ok ? style.green("loads") : style.red(`refused: ${probe.errnoName}`);
      probeRows.push([probe.name, probe.kind, result, probe.ms.toFixed(0)]);
    }
    for (const line of table(probeRows)) ctx.stdout.line(line);
    ctx.stdout.line();
    ctx.stdout.line(
      report.ok
        ? style.green("ready: every area can at least audit")
        : style.red("not ready: an area is unavailable or a check failed; see fix above"),
    );
    return Promise.resolve(code);
  },
});

function verdictStyle(verdict: Verdict, style: Palette) {
  return verdict === "enforce" ? style.green : verdict === "audit-only" ? style.yellow : style.red;
}

function statusStyle(status: CheckStatus, style: Palette) {
  return status === "ok" ? style.green : status === "warn" ? style.yellow : style.red;
}
