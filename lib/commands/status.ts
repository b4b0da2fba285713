import { checkHealth, type HealthReport } from "../report/health.ts";
import { defineCommand } from "../cli/command.ts";
import { table } from "../cli/output.ts";
import { type Palette, palette } from "../text/palette.ts";
import type { Hook } from "../kernel/inspect.ts";
import { PROGRAMS } from "../kernel/object.ts";
import { factRows } from "./health.ts";

/** Which pinned links serve each hook of the counters. */
const HOOK_LINKS: Record<Hook, (name: string) => boolean> = {
  file_open: (name) => name === PROGRAMS.fileOpen || name.startsWith("aegis_tp_open"),
  exec: (name) => name === PROGRAMS.exec || name === PROGRAMS.execAudit,
  connect: (name) => name === PROGRAMS.connect4 || name === PROGRAMS.connect6,
  sendmsg: (name) => name === PROGRAMS.sendmsg4 || name === PROGRAMS.sendmsg6,
  bind: (name) =>
    name === PROGRAMS.bind4 || name === PROGRAMS.bind6 || name === PROGRAMS.socketBind ||
    name === PROGRAMS.sctpBindx,
  ingress: (name) => name.startsWith(`${PROGRAMS.ingress}@`),
  scope: (name) => name === PROGRAMS.scopeGuard,
  packet: (name) => name === PROGRAMS.packetEgress,
  socket: (name) => name === PROGRAMS.packetSocket || name === PROGRAMS.packetSocketAudit,
  ptrace: (name) => name === PROGRAMS.ptraceAccess || name === PROGRAMS.ptraceTraceme,
  file_change: (name) =>
    name === PROGRAMS.inodeRename || name === PROGRAMS.inodeSetattr || name === PROGRAMS.inodeUnlink ||
    name === PROGRAMS.inodeLink || name === PROGRAMS.inodeSetxattr || name === PROGRAMS.inodeRemovexattr ||
    name === PROGRAMS.inodeSetAcl || name === PROGRAMS.inodeRemoveAcl,
  route: (name) => name === PROGRAMS.setsockopt,
  file_write: (name) =>
    name === PROGRAMS.fileOpen || name === PROGRAMS.fileOpenAudit || name === PROGRAMS.inodeRename ||
    name === PROGRAMS.inodeSetattr || name === PROGRAMS.inodeUnlink || name === PROGRAMS.inodeLink ||
    name === PROGRAMS.inodeSetxattr || name === PROGRAMS.inodeRemovexattr || name === PROGRAMS.inodeCreate ||
    name === PROGRAMS.inodeMkdir || name === PROGRAMS.inodeSymlink || name === PROGRAMS.inodeMknod ||
    name === PROGRAMS.inodeRmdir || name === PROGRAMS.sbMount || name === PROGRAMS.moveMount ||
    name === PROGRAMS.inodeSetAcl || name === PROGRAMS.inodeRemoveAcl,
  forward: (name) => name.startsWith(`${PROGRAMS.forward}@`),
  identity: (name) => name === PROGRAMS.taskPrctl || name === PROGRAMS.prctlAudit,
};

export const status = defineCommand({
  name: "status",
  summary: "one screen: mode, policy, attached hooks, counters, drops, stale rules, break-glass, agent",
  description: "What health reads (pins, links, the applied record, mode words, break-glass, deadman, " +
    "agent.json, stale rules), plus the decisions counted per hook since the programs were loaded (deny: " +
    "refused, or a packet dropped; audit: allowed and reported) and the events lost or folded by the rate " +
    "limit. Reads the pins only. Exit 0 whenever it could read them.",
  options: {
    json: { type: "boolean", description: "print one JSON object: health's fields and the counters" },
  },
  args: [],
  examples: ["aegisbpf status", "aegisbpf status --json"],
  run(ctx, { flags }) {
    const report = checkHealth(ctx.globals, { requireEnforce: false });
    if (flags.json) {
      ctx.stdout.line(JSON.stringify({ ...report, counters: hookRows(report) }));
      return Promise.resolve(0);
    }
    const style = palette(ctx.color);
    for (const line of statusLines(report, style)) ctx.stdout.line(line);
    return Promise.resolve(0);
  },
});

type HookRow = { hook: Hook; links: string[]; deny: number; audit: number };

function hookRows(report: HealthReport): HookRow[] {
  return (Object.keys(HOOK_LINKS) as Hook[]).map((hook) => ({
    hook,
    links: report.links.filter((link) => link.attached && HOOK_LINKS[hook](link.name)).map((link) =>
      link.name
    ),
    deny: Number(report.counters?.decisions[hook].deny ?? 0n),
    audit: Number(report.counters?.decisions[hook].audit ?? 0n),
  }));
}

function statusLines(report: HealthReport, style: Palette): string[] {
  const mode = report.mode.effective === "enforce"
    ? style.green("enforce")
    : report.mode.effective === "audit"
    ? style.yellow("audit")
    : style.red("nothing pinned");
  const verdict = report.healthy ? style.green("healthy") : style.red("unhealthy");
  const lines = [`${style.bold("aegisbpf")}  mode ${mode}  ${verdict}`];
  lines.push(...table(factRows(report).map(([name, value]) => [`  ${name}`, value])));
  lines.push("");
  const rows = [["HOOK", "ATTACHED", "DENY", "AUDIT"].map(style.bold)];
  for (const { hook, links, deny, audit } of hookRows(report)) {
    rows.push([hook, links.length > 0 ? links.join(", ") : style.dim("-"), String(deny), String(audit)]);
  }
  lines.push(...table(rows));
  const ingress = report.counters?.decisions.ingress.deny ?? 0n;
  lines.push(
    `packets dropped by XDP: ${ingress}; events lost: ${report.events.lost}; ` +
      `suppressed by the rate limit: ${report.events.suppressed}`,
  );
  if (report.problems.length > 0) {
    lines.push("", style.bold("problems:"));
    for (const problem of report.problems) lines.push(`  ${style.red("-")} ${problem}`);
  }
  if (report.warnings.length > 0) {
    lines.push("", style.bold("warnings:"));
    for (const warning of report.warnings) lines.push(`  ${style.yellow("-")} ${warning}`);
  }
  return lines;
}
