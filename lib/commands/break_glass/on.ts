import { breakGlassOn } from "../../ops/break_glass.ts";
import { defineCommand } from "../../cli/command.ts";
import { parseDuration } from "../../text/duration.ts";

export const breakGlassOnCommand = defineCommand({
  name: "on",
  summary: "audit everywhere now, with or without a running agent",
  description: "Writes the marker <config-dir>/break_glass (a restarted agent honours it) and flips the " +
    "kernel's break-glass word through the pinned config map: every hook audits at once, whatever the policy " +
    "says. With --ttl it ends by itself, also with no agent running (the kernel keeps the deadline).",
  options: {
    reason: { type: "string", valueName: "TEXT", required: true, description: "why, for the record" },
    ttl: { type: "string", valueName: "DUR", description: "end it after this long, e.g. 30m or 2h" },
  },
  args: [],
  examples: [
    "aegisbpf break-glass on --reason INC-4711",
    "aegisbpf break-glass on --reason deploy-window --ttl 30m",
  ],
  run(ctx, { flags }) {
    const ttlMs = flags.ttl === undefined ? undefined : parseDuration(flags.ttl, "--ttl");
    const { marker, kernel } = breakGlassOn(
      ctx.globals,
      ttlMs === undefined ? { reason: flags.reason } : { reason: flags.reason, ttlMs },
    );
    const until = marker.until ? ` until ${marker.until}` : " until turned off";
    if (kernel === undefined) {
      ctx.stdout.line(`break-glass on${until}: marker written`);
      ctx.log.warn(
        `no aegisbpf programs are pinned under ${ctx.globals.bpffs}: nothing was enforcing; an agent that starts ` +
          "will audit until break-glass is off",
      );
    } else {
      ctx.stdout.line(`break-glass on${until}: every hook audits now (reason: ${marker.reason})`);
    }
    return Promise.resolve(0);
  },
});
