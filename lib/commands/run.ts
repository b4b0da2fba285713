import { Agent } from "../agent/run.ts";
import { eventText, isKernelEvent } from "../agent/agent_events.ts";
import { CMDLINE_ENV, CMDLINE_FLAG } from "../agent/break_glass_watch.ts";
import { defineCommand } from "../cli/command.ts";
import { parseDuration } from "../cli/duration.ts";
import { OutputClosedError, palette } from "../cli/output.ts";
import { InputError } from "../errors.ts";
import { hasInterface } from "../kernel/resolve.ts";

const STOP_SIGNALS = ["SIGTERM", "SIGINT"] as const;

export const run = defineCommand({
  name: "run",
  summary: "the agent, in the foreground: apply the policy, stream events, keep the mode words",
  description: "Loads the programs, or adopts the pinned ones with no gap, and applies --policy FILE, else " +
    "<config-dir>/policy.yaml, else the policy already in force, else an embedded default audit policy that " +
    "shows real events at once and denies nothing. Streams every decision and agent event to stdout (one " +
    "line each, JSON with --log-format json) and to <state-dir>/events.jsonl (8 MiB, then rotated to " +
    "events.jsonl.1), and describes itself in <state-dir>/agent.json. SIGHUP reads the policy again and " +
    "applies it only if it is valid (otherwise the old one stays and the event policy.reload_failed says " +
    "why). SIGTERM and SIGINT stop the agent; enforcement stays pinned. The break-glass marker " +
    `<config-dir>/break_glass made or removed by hand takes effect within a second, and ${CMDLINE_FLAG} ` +
    `on the kernel command line (read from /proc/cmdline, or ${CMDLINE_ENV}) turns break-glass on at start. ` +
    "File and exec rule paths are watched: a file replaced by rename is denied again within a second. " +
    "Exits 3 when --enforce (or an enforce policy) needs an area this kernel can only audit, naming it, " +
    "unless --allow-partial.",
  options: {
    audit: { type: "boolean", description: "audit everything, whatever the policy's mode says" },
    enforce: { type: "boolean", description: "enforce, whatever the policy's mode says" },
    "allow-partial": {
      type: "boolean",
      description: "enforce where this kernel can, audit the areas it cannot enforce",
    },
    policy: {
      type: "string",
      valueName: "FILE",
      complete: "file",
      description: "the policy or signed bundle to apply (default <config-dir>/policy.yaml)",
    },
    ingress: {
      type: "string",
      multiple: true,
      valueName: "IFACE",
      description: "filter ingress on this interface too (XDP); repeat for more",
    },
    deadman: {
      type: "string",
      valueName: "DUR",
      description: "the kernel falls back to audit when the agent stops refreshing for this long",
    },
  },
  args: [],
  examples: [
    "aegisbpf run --audit",
    "aegisbpf run --enforce --policy /etc/aegisbpf/policy.yaml --deadman 30s",
    "aegisbpf run --ingress eth0 --log-format json",
  ],
  async run(ctx, { flags }) {
    if (flags.audit && flags.enforce) {
      throw new InputError("--audit and --enforce exclude each other: pick one");
    }
    const deadmanMs = flags.deadman === undefined ? undefined : parseDuration(flags.deadman, "--deadman");
    for (const name of flags.ingress ?? []) checkInterface(name);
    const json = ctx.globals.logFormat === "json";
    const style = palette(ctx.color);
    let stdoutClosed = false;
    const agent = await Agent.start({
      ...ctx.globals,
      ...(flags.audit ? { requestedMode: "audit" } : flags.enforce ? { requestedMode: "enforce" } : {}),
      allowPartial: flags["allow-partial"] === true,
      ...(flags.policy === undefined ? {} : { policyFile: flags.policy }),
      ingress: flags.ingress ?? [],
      ...(deadmanMs === undefined ? {} : { deadmanMs }),
      log: ctx.log,
      emit: (event) => {
        if (stdoutClosed) return;
        try {
          if (json) return ctx.stdout.line(JSON.stringify(event));
          const line = eventText(event);
          ctx.stdout.line(
            isKernelEvent(event) ? (event.decision === "deny" ? style.red(line) : line) : style.cyan(line),
          );
        } catch (error) {
          if (!(error instanceof OutputClosedError)) throw error;
          // `run | head`: the reader left; the agent goes on, events still reach the event log.
          stdoutClosed = true;
          ctx.log.warn("stdout closed: events now go to the event log only");
        }
      },
    });
    let stop!: (signal: string) => void;
    const stopped = new Promise<string>((resolve) => (stop = resolve));
    const listeners: [Deno.Signal, () => void][] = [
      ...STOP_SIGNALS.map((name): [Deno.Signal, () => void] => [name, () => stop(name)]),
      ["SIGHUP", () => void agent.reload()],
    ];
    for (const [name, listener] of listeners) Deno.addSignalListener(name, listener);
    let signal: string;
    try {
      signal = await stopped;
    } finally {
      for (const [name, listener] of listeners) Deno.removeSignalListener(name, listener);
    }
    await agent.stop(signal);
    return 0;
  },
});

function checkInterface(name: string): void {
  if (!hasInterface(name)) {
    throw new InputError(`--ingress ${name}: no such network interface here (see ip link)`);
  }
}
