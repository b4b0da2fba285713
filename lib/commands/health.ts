import { checkHealth, type HealthReport, type RequireEnforce } from "../report/health.ts";
import { windowsNeedYaml } from "../report/windows_report.ts";
import { loadYaml } from "../policy/yaml.ts";
import { InputError } from "../errors.ts";
import { AREAS } from "../kernel/probe.ts";
import type { Area } from "../policy/plan.ts";
import { defineCommand } from "../cli/command.ts";
import { count } from "../text/diagnostics.ts";
import { table } from "../cli/output.ts";
import { type Palette, palette } from "../text/palette.ts";

export const health = defineCommand({
  name: "health",
  summary: "fast readiness: pins, attached programs, policy, mode, break-glass, deadman, agent, stale rules",
  description: "Reads the pins under <bpffs>/aegisbpf (nothing is loaded or attached, no lock taken), the " +
    "applied record, the break-glass marker and <state-dir>/agent.json, in well under a second: for " +
    "systemd ExecStartPost and Kubernetes probes. Unhealthy (exit 1): nothing pinned, a map or program " +
    "missing or detached, no policy applied, a dead agent, an agent that stopped making progress (no " +
    "heartbeat for 10 s), an expired deadman, hooks that audit where the policy and the agent's flags ask " +
    "for enforce with no break-glass to explain it (a forced-audit word no agent or command asked for, or a " +
    "break-glass word with no marker, counts as unexplained: written behind aegisbpf's back), or a stale " +
    "file or exec rule (its path now holds another file, or none; or the running agent cannot re-resolve " +
    "it). Tampering the running agent put back in the last 15 minutes is a warning, and so is a self-check " +
    "(spec.checks) a killed command left pending (the running agent or the next policy apply or rollback " +
    "finishes it). Connections to " +
    "denied destinations made before the apply and still open are a warning; they are listed (two " +
    "iterator programs loaded, about 0.4 s) only where the apply could have left some: a kernel before " +
    "6.5, or hooks that do not enforce now (audit, break-glass). On 6.5 and later an apply that enforces " +
    "closed them, and the hooks refuse new ones. --require-enforce " +
    "also makes anything but enforce unhealthy (break-glass, " +
    "policy audit, areas that only audit); --require-enforce AREAS (file, exec, egress, bind, ingress, " +
    "comma-separated) only the areas named not enforcing. The --json schema is " +
    "docs/schema/health.schema.json.",
  options: {
    json: { type: "boolean", description: "print one JSON object (docs/schema/health.schema.json)" },
    "require-enforce": {
      type: "string",
      optionalValue: true,
      valueName: "AREAS",
      description: "unhealthy unless every used area enforces; with AREAS (egress,bind), unless those do",
    },
  },
  args: [],
  examples: [
    "aegisbpf health",
    "aegisbpf health --json --require-enforce",
    "aegisbpf health --require-enforce egress,bind",
  ],
  async run(ctx, { flags }) {
    // A policy with time windows is parsed to list them: the YAML parser only then.
    if (windowsNeedYaml(ctx.globals.stateDir)) await loadYaml();
    const report = checkHealth(ctx.globals, { requireEnforce: requireEnforceOf(flags["require-enforce"]) });
    const code = report.healthy ? 0 : 1;
    if (flags.json) {
      const { counters: _counters, ...rest } = report;
      ctx.stdout.line(JSON.stringify({ schema: 1, ...rest }));
      return code;
    }
    const style = palette(ctx.color);
    for (const line of healthLines(report, style)) ctx.stdout.line(line);
    return code;
  },
});

/** `--require-enforce` alone: everything; `--require-enforce egress,bind`: those areas. */
export function requireEnforceOf(value: string | undefined): RequireEnforce {
  if (value === undefined) return false;
  if (value === "") return true;
  const areas = value.split(",").map((word) => word.trim());
  for (const area of areas) {
    if (!(AREAS as readonly string[]).includes(area)) {
      throw new InputError(
        `--require-enforce: unknown area "${area}"; name some of ${AREAS.join(", ")}, comma-separated`,
      );
    }
  }
  return [...new Set(areas)] as Area[];
}

/** The health report as text: a verdict line, one aligned row per fact, then problems and warnings. */
export function healthLines(report: HealthReport, style: Palette): string[] {
  const verdict = report.healthy ? style.green("healthy") : style.red("unhealthy");
  const lines = [`${verdict}: ${modeText(report, style)}`];
  lines.push(...table(factRows(report).map(([name, value]) => [`  ${name}`, value])));
  if (report.problems.length > 0) {
    lines.push(style.bold("problems:"));
    for (const problem of report.problems) lines.push(`  ${style.red("-")} ${problem}`);
  }
  if (report.warnings.length > 0) {
    lines.push(style.bold("warnings:"));
    for (const warning of report.warnings) lines.push(`  ${style.yellow("-")} ${warning}`);
  }
  return lines;
}

function modeText(report: HealthReport, style: Palette): string {
  if (report.mode.effective === "none") return "nothing enforcing";
  const mode = report.mode.effective === "enforce" ? style.green("enforce") : style.yellow("audit");
  const why = report.mode.reasons.length > 0 ? ` (${report.mode.reasons.join("; ")})` : "";
  const partial = report.mode.effective === "enforce" && report.partial.length > 0
    ? `, but ${report.partial.map(({ area }) => area).join(" and ")} only audit${
      report.partial.length === 1 ? "s" : ""
    }`
    : "";
  return `mode ${mode}${why}${partial}`;
}

/** The facts both `health` and `status` print, as [name, value] rows. */
export function factRows(report: HealthReport): [string, string][] {
  const { pins, policy, breakGlass, deadman, agent, staleRules } = report;
  const attached = report.links.filter((link) => link.attached).length;
  const rows: [string, string][] = [];
  rows.push([
    "pins",
    pins.present
      ? `${pins.dir}: ${report.links.length} links (${attached} attached)${
        pins.missingMaps.length ? `, maps missing: ${pins.missingMaps.join(", ")}` : ""
      }`
      : `none under ${pins.dir}`,
  ]);
  rows.push([
    "policy",
    policy
      ? `${policy.name} version ${policy.version} sha256 ${
        policy.sha256.slice(0, 12)
      } (history entry ${policy.seq}, ${policy.appliedAt})`
      : "none applied",
  ]);
  rows.push(["policy mode", report.mode.policy ?? "-"]);
  rows.push([
    "break-glass",
    breakGlass.on
      ? `on${breakGlass.until ? ` until ${breakGlass.until}` : ""}${
        breakGlass.reason ? ` (${breakGlass.reason})` : ""
      }`
      : breakGlass.marker
      ? "off in the kernel, but the marker is there"
      : "off",
  ]);
  const exceptions = report.exceptions;
  const expired = exceptions.list.length - exceptions.active;
  rows.push([
    "exceptions",
    exceptions.list.length === 0
      ? "none"
      : `${exceptions.active} active${
        exceptions.active > 0
          ? ` (${
            Object.entries(exceptions.byKind).filter(([, n]) => n > 0).map(([kind, n]) => `${kind} ${n}`)
              .join(", ")
          })`
          : ""
      }${expired > 0 ? `, ${expired} expired or gone (exception remove --expired)` : ""}`,
  ]);
  rows.push([
    "deadman",
    !deadman.armed
      ? "off"
      : deadman.expired
      ? "expired"
      : `${Math.ceil((deadman.remainingMs ?? 0) / 1000)} s left`,
  ]);
  rows.push([
    "agent",
    agent.state === "running"
      ? `running, pid ${agent.pid} since ${agent.startedAt}${agent.mode ? `, mode ${agent.mode}` : ""}${
        agent.heartbeatAgeMs === undefined
          ? ""
          : agent.stalled
          ? `, stalled: no heartbeat for ${Math.round(agent.heartbeatAgeMs / 1000)} s`
          : `, heartbeat ${Math.round(agent.heartbeatAgeMs / 1000)} s ago`
      }`
      : agent.state === "died"
      ? `died (${agent.why})`
      : agent.state === "unreadable"
      ? `unknown (${agent.why})`
      : "not running",
  ]);
  rows.push([
    "partial",
    report.partial.length === 0
      ? "none"
      : report.partial.map(({ area, reason }) => `${area}${reason ? ` (${reason})` : ""}`).join("; "),
  ]);
  for (const window of report.windows) {
    const days = window.days ? ` ${window.days.join(",")}` : "";
    const next = window.next ? `, ${window.open ? "closes" : "opens"} ${window.next}` : "";
    rows.push([
      `window ${window.rule}`,
      `${window.open ? "open" : "closed"}${next} (${window.from}-${window.to}${days} ${window.tz ?? "UTC"})`,
    ]);
  }
  rows.push([
    "stale rules",
    staleRules === null
      ? "not checked"
      : !staleRules.known
      ? "unknown (re-apply to record inodes)"
      : staleRules.stale.length === 0
      ? `none (${count(staleRules.checked, "inode")} checked)`
      : `${staleRules.stale.length + staleRules.omitted} (see problems)`,
  ]);
  if (report.connections) {
    rows.push([
      "old conns",
      report.connections.open === 0
        ? "none to denied destinations"
        : `${count(report.connections.open, "connection")} made before the apply still open (see warnings)`,
    ]);
  }
  rows.push([
    "events",
    `${report.events.lost} lost, ${report.events.suppressed} suppressed by the rate limit`,
  ]);
  return rows;
}
