import { breakGlassStatus } from "../../ops/break_glass.ts";
import { markerPath } from "../../state/break_glass_marker.ts";
import { defineCommand } from "../../cli/command.ts";

export const breakGlassStatusCommand = defineCommand({
  name: "status",
  summary: "whether break-glass is on, in the kernel and in the marker",
  description: "Reads the kernel's break-glass word through the pinned config map and the marker " +
    "<config-dir>/break_glass. Says when the two disagree (an agent not running, or a marker made by hand).",
  options: { json: { type: "boolean", description: "print one JSON object" } },
  args: [],
  examples: ["aegisbpf break-glass status", "aegisbpf break-glass status --json"],
  run(ctx, { flags }) {
    const status = breakGlassStatus(ctx.globals);
    const kernelOn = status.kernel?.on ?? false;
    if (flags.json) {
      ctx.stdout.line(JSON.stringify({
        active: kernelOn,
        pinned: status.kernel !== undefined,
        until: status.kernelUntilMs === undefined ? null : new Date(status.kernelUntilMs).toISOString(),
        marker: status.marker ?? null,
        expiredMarker: status.expiredMarker ?? null,
      }));
      return Promise.resolve(0);
    }
    const kernel = status.kernel === undefined
      ? `nothing of aegisbpf is pinned under ${ctx.globals.bpffs}`
      : kernelOn
      ? `on in the kernel${
        status.kernelUntilMs === undefined ? "" : ` until ${new Date(status.kernelUntilMs).toISOString()}`
      }: every hook audits`
      : "off in the kernel";
    ctx.stdout.line(`break-glass ${kernel}`);
    if (status.marker) {
      ctx.stdout.line(
        `marker: ${status.marker.reason ?? "(made by hand)"}${
          status.marker.since ? `, since ${status.marker.since}` : ""
        }`,
      );
    }
    if (status.marker?.problem) {
      ctx.log.warn(
        `marker ${markerPath(ctx.globals.configDir)}: ${status.marker.problem}: it still means on`,
      );
    }
    if (status.expiredMarker) ctx.stdout.line(`marker expired at ${status.expiredMarker.until}`);
    if (status.kernel !== undefined && kernelOn !== (status.marker !== undefined)) {
      ctx.log.warn(
        kernelOn
          ? "the kernel audits but there is no marker: a restarted agent would enforce again"
          : "the marker is there but the kernel enforces: start the agent, or run break-glass on",
      );
    }
    return Promise.resolve(0);
  },
});
