import { Agent } from "../agent/run.ts";
import { eventText, isKernelEvent } from "../agent/agent_events.ts";
import { CMDLINE_ENV, CMDLINE_FLAG } from "../agent/break_glass_watch.ts";
import { defineCommand } from "../cli/command.ts";
import { parseDuration } from "../cli/duration.ts";
import { OutputClosedError, palette } from "../cli/output.ts";
import { InputError } from "../errors.ts";
import { hasInterface } from "../kernel/resolve.ts";
import { ENFORCE_SIGNALS } from "../kernel/mode_words.ts";
import { createApp } from "../api/app.ts";
import { EventHub } from "../api/event_hub.ts";
import {
  type ApiAddress,
  type ApiServer,
  DEFAULT_API_SOCKET,
  parseApiAddress,
  serveApi,
} from "../api/server.ts";
import { agentApiDeps } from "../agent/api_deps.ts";
import { collect, families } from "../metrics/collect.ts";
import { exposition } from "../metrics/exposition.ts";
import { checkTextfilePath, writeTextfile } from "./metrics.ts";

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
    "enforce-signal": {
      type: "string",
      valueName: "SIGNAL",
      choices: ENFORCE_SIGNALS,
      description: "kill on deny: signal a denied task (never PID 1, never an exempt cgroup); default none",
    },
    api: {
      type: "string",
      multiple: true,
      valueName: "ADDR",
      description:
        `serve the local API: unix:PATH (default ${DEFAULT_API_SOCKET}), tcp:HOST:PORT (loopback, ` +
        "read-only), or none; repeat for more",
    },
    "metrics-textfile": {
      type: "string",
      valueName: "PATH",
      complete: "file",
      description: "write the metrics atomically to PATH (a node_exporter textfile *.prom) every interval",
    },
    "metrics-interval": {
      type: "string",
      valueName: "DUR",
      description: "how often --metrics-textfile is rewritten (default 15s)",
    },
  },
  args: [],
  examples: [
    "aegisbpf run --audit",
    "aegisbpf run --enforce --policy /etc/aegisbpf/policy.yaml --deadman 30s",
    "aegisbpf run --ingress eth0 --log-format json",
    "aegisbpf run --enforce --enforce-signal kill --api unix:/run/aegisbpf/api.sock --api tcp:127.0.0.1:9180",
    "aegisbpf run --audit --metrics-textfile /var/lib/node_exporter/textfile_collector/aegisbpf.prom",
  ],
  async run(ctx, { flags }) {
    if (flags.audit && flags.enforce) {
      throw new InputError("--audit and --enforce exclude each other: pick one");
    }
    const deadmanMs = flags.deadman === undefined ? undefined : parseDuration(flags.deadman, "--deadman");
    for (const name of flags.ingress ?? []) checkInterface(name);
    const apiAddresses = apiAddressesOf(flags.api);
    const metricsPath = flags["metrics-textfile"];
    const metricsMs = flags["metrics-interval"] === undefined
      ? 15_000
      : parseDuration(flags["metrics-interval"], "--metrics-interval");
    if (flags["metrics-interval"] !== undefined && metricsPath === undefined) {
      throw new InputError("--metrics-interval needs --metrics-textfile PATH");
    }
    if (metricsMs < 1000) throw new InputError("--metrics-interval: give 1s or more");
    if (metricsPath !== undefined) checkTextfilePath(metricsPath);
    const hub = new EventHub();
    const json = ctx.globals.logFormat === "json";
    const style = palette(ctx.color);
    let stdoutClosed = false;
    // Listening before the start: a SIGTERM or SIGHUP that comes while the agent starts (it may wait for the
    // state lock) must not end it by the signal's default action; each is honoured once the agent is up.
    const starting: { agent?: Agent; reloadAsked: boolean } = { reloadAsked: false };
    let stop!: (signal: string) => void;
    const stopped = new Promise<string>((resolve) => (stop = resolve));
    const listeners: [Deno.Signal, () => void][] = [
      ...STOP_SIGNALS.map((name): [Deno.Signal, () => void] => [name, () => stop(name)]),
      ["SIGHUP", () => starting.agent ? void starting.agent.reload() : (starting.reloadAsked = true)],
    ];
    for (const [name, listener] of listeners) Deno.addSignalListener(name, listener);
    const unlisten = () => {
      for (const [name, listener] of listeners) Deno.removeSignalListener(name, listener);
    };
    let agent: Agent;
    try {
      agent = await Agent.start({
        ...ctx.globals,
        ...(flags.audit ? { requestedMode: "audit" } : flags.enforce ? { requestedMode: "enforce" } : {}),
        allowPartial: flags["allow-partial"] === true,
        ...(flags.policy === undefined ? {} : { policyFile: flags.policy }),
        ingress: flags.ingress ?? [],
        ...(deadmanMs === undefined ? {} : { deadmanMs }),
        ...(flags["enforce-signal"] === undefined ? {} : { enforceSignal: flags["enforce-signal"] }),
        log: ctx.log,
        emit: (event) => {
          hub.publish(JSON.stringify(event));
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
    } catch (error) {
      unlisten();
      throw error;
    }
    let api: ApiServer | undefined;
    const timers: ReturnType<typeof setInterval>[] = [];
    try {
      if (apiAddresses.length > 0) {
        const where = {
          bpffs: ctx.globals.bpffs,
          stateDir: ctx.globals.stateDir,
          configDir: ctx.globals.configDir,
        };
        const deps = agentApiDeps(where, hub, {
          add: (request) => Promise.resolve(agent.addIngressSession(request)),
          remove: (id) => Promise.resolve(agent.removeIngressSession(id)),
        }, (gen, ruleId) => agent.ruleName(gen, ruleId));
        api = await serveApi({
          app: createApp(deps, { readOnly: false }),
          readOnlyApp: createApp(deps, { readOnly: true }),
          addresses: apiAddresses,
          allowUids: [...new Set([0, Deno.uid() ?? 0])],
          onError: (error) => ctx.log.warn(`api: ${error instanceof Error ? error.message : error}`),
        });
        const listening = apiAddresses.map((a) =>
          a.transport === "unix" ? `unix:${a.path}` : `tcp:${a.hostname}:${a.port}`
        );
        ctx.log.info(`api: serving ${listening.join(", ")}`);
      }
      if (metricsPath !== undefined) {
        const write = () => {
          try {
            writeTextfile(
              metricsPath,
              exposition(families(collect(ctx.globals, { ruleName: (gen, id) => agent.ruleName(gen, id) }))),
            );
          } catch (error) {
            ctx.log.warn(
              `metrics textfile ${metricsPath}: ${error instanceof Error ? error.message : error}`,
            );
          }
        };
        write();
        timers.push(setInterval(write, metricsMs));
      }
    } catch (error) {
      unlisten();
      await agent.stop("startup failure");
      throw error;
    }
    starting.agent = agent;
    if (starting.reloadAsked) void agent.reload();
    let signal: string;
    try {
      signal = await stopped;
    } finally {
      unlisten();
    }
    for (const timer of timers) clearInterval(timer);
    hub.close();
    await api?.close();
    await agent.stop(signal);
    return 0;
  },
});

/** The API's listeners: the default Unix socket unless --api says otherwise; `none` serves nothing. */
function apiAddressesOf(values: readonly string[] | undefined): ApiAddress[] {
  if (values === undefined || values.length === 0) return [{ transport: "unix", path: DEFAULT_API_SOCKET }];
  if (values.includes("none")) {
    if (values.length > 1) throw new InputError("--api none excludes every other --api");
    return [];
  }
  return values.map(parseApiAddress);
}

function checkInterface(name: string): void {
  if (!hasInterface(name)) {
    throw new InputError(`--ingress ${name}: no such network interface here (see ip link)`);
  }
}
