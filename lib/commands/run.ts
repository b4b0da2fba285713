import { Agent } from "../agent/run.ts";
import { eventLine } from "../agent/event_text.ts";
import { RunSignals } from "../agent/run_signals.ts";
import { CMDLINE_ENV, CMDLINE_FLAG } from "../agent/break_glass_watch.ts";
import { type Context, defineCommand } from "../cli/command.ts";
import { LineQueue } from "../cli/line_queue.ts";
import { queuedLogger } from "../cli/log.ts";
import { parseDuration } from "../text/duration.ts";
import { OutputClosedError } from "../cli/output.ts";
import { palette } from "../text/palette.ts";
import { InputError, messageOf } from "../errors.ts";
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
import { guardProcess } from "../agent/process_guard.ts";
import { collect, families } from "../metrics/collect.ts";
import { exposition } from "../metrics/exposition.ts";
import { checkTextfilePath, writeTextfile } from "./metrics.ts";

export const run = defineCommand({
  name: "run",
  summary: "the agent, in the foreground: apply the policy, stream events, keep the mode words",
  description: "Loads the programs, or adopts the pinned ones with no gap, and applies the newest operator " +
    "intent: --policy FILE, else <config-dir>/policy.yaml unless a policy applied since it last changed is " +
    "in force (then that policy stays), else the policy already in force, else an embedded default audit " +
    "policy that shows real events at once and denies nothing. One agent per state directory: a second " +
    "run exits 3 naming the first. --audit is a floor held while the agent runs: nothing is denied, " +
    "whatever anyone applies. Streams every decision and agent event to stdout (one " +
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
    audit: {
      type: "boolean",
      description: "hold audit while this agent runs, whatever the policy or anyone applying one says",
    },
    enforce: { type: "boolean", description: "enforce the policies this agent applies, whatever their mode" },
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
  async run(caller, { flags }) {
    // Listening first: a SIGHUP or SIGTERM while the agent starts is served once it can be, never fatal.
    using signals = new RunSignals();
    // Neither stdout nor stderr may hold the agent up: both are queued and written asynchronously.
    const log = queuedLogger(
      { format: caller.globals.logFormat, level: caller.globals.logLevel, palette: palette(caller.color) },
      caller.stderr.sink,
    );
    const ctx: Context = { ...caller, log };
    log.debug("signals: SIGHUP reloads, SIGTERM and SIGINT stop, from now on");
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
    using _guard = guardProcess((message) => ctx.log.error(message));
    // Events are kept for the API's streams only where an API serves them.
    const hub = apiAddresses.length > 0 ? new EventHub() : undefined;
    const json = ctx.globals.logFormat === "json";
    const style = palette(ctx.color);
    const stdout = eventStdout(ctx);
    let agent: Agent | undefined;
    let api: ApiServer | undefined;
    const timers: ReturnType<typeof setInterval>[] = [];
    let stopReason = "startup failure";
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
        emit: (event, line) => {
          hub?.publish(line);
          // The agent's own events (rare: starts, applies, drop reports) are never dropped for a flood's lines.
          stdout(json ? line : eventLine(event, style), !("decision" in event));
        },
        // JSON lines with no API to publish them: kernel events are written straight from the record as bytes.
        ...(json && hub === undefined ? { emitJson: (line: Uint8Array) => stdout.bytes(line) } : {}),
      });
      const running = agent;
      // Stopped while starting: no API, no timers, straight to the stop.
      if (signals.stopSignal === undefined) {
        if (hub !== undefined) api = await serveAgentApi(ctx, running, hub, apiAddresses);
        if (metricsPath !== undefined) timers.push(textfileTimer(ctx, running, metricsPath, metricsMs));
        signals.serveReloads(() => void running.reload());
      }
      stopReason = await signals.stopped;
    } finally {
      for (const timer of timers) clearInterval(timer);
      hub?.close();
      try {
        await api?.close();
      } catch (error) {
        ctx.log.warn(`api: ${messageOf(error)}`);
      }
      await agent?.stop(stopReason);
      await Promise.all([stdout.flush(FLUSH_MS), log.flush(FLUSH_MS)]);
    }
    return 0;
  },
});

/** How long a stopping agent waits for a slow stdout or stderr reader to take the last lines. */
const FLUSH_MS = 2000;

/**
 * Events to stdout (coloured text, or JSON lines) through a bounded queue written asynchronously: a pipe
 * nobody reads, or a stalled journald, never holds up the agent's loop. Lines the queue had no room for
 * are counted and reported when the reader catches up; every event is in the event log regardless.
 */
function eventStdout(
  ctx: Context,
): ((line: string, keep: boolean) => void) & {
  bytes(line: Uint8Array): void;
  flush(ms: number): Promise<boolean>;
} {
  const queue = new LineQueue(ctx.stdout.sink, {
    onDropped: (count) =>
      ctx.log.warn(`stdout: ${count} lines not written: its reader was too slow (the event log has them)`),
    onClosed: (error) =>
      // `run | head`: the reader left; the agent goes on, events still reach the event log.
      ctx.log.warn(
        error instanceof OutputClosedError
          ? "stdout closed: events now go to the event log only"
          : `stdout: ${messageOf(error)}: events now go to the event log only`,
      ),
  });
  return Object.assign((line: string, keep: boolean) => void queue.line(line, keep), {
    bytes: (line: Uint8Array) => void queue.bytes(line),
    flush: (ms: number) => queue.flush(ms),
  });
}

async function serveAgentApi(
  ctx: Context,
  agent: Agent,
  hub: EventHub,
  addresses: ApiAddress[],
): Promise<ApiServer> {
  const where = {
    bpffs: ctx.globals.bpffs,
    stateDir: ctx.globals.stateDir,
    configDir: ctx.globals.configDir,
  };
  const deps = agentApiDeps(where, hub, {
    add: (request) => Promise.resolve(agent.addIngressSession(request)),
    remove: (id) => Promise.resolve(agent.removeIngressSession(id)),
  }, (gen, ruleId) => agent.ruleName(gen, ruleId));
  const api = await serveApi({
    app: createApp(deps, { readOnly: false }),
    readOnlyApp: createApp(deps, { readOnly: true }),
    addresses,
    allowUids: [...new Set([0, Deno.uid() ?? 0])],
    onError: (error) => ctx.log.warn(`api: ${messageOf(error)}`),
  });
  const listening = addresses.map((a) =>
    a.transport === "unix" ? `unix:${a.path}` : `tcp:${a.hostname}:${a.port}`
  );
  ctx.log.info(`api: serving ${listening.join(", ")}`);
  return api;
}

/** Writes the metrics textfile now and every `intervalMs`; a failed write is a warning, not an end. */
function textfileTimer(
  ctx: Context,
  agent: Agent,
  path: string,
  intervalMs: number,
): ReturnType<typeof setInterval> {
  const write = () => {
    try {
      writeTextfile(
        path,
        exposition(families(collect(ctx.globals, { ruleName: (gen, id) => agent.ruleName(gen, id) }))),
      );
    } catch (error) {
      ctx.log.warn(`metrics textfile ${path}: ${messageOf(error)}`);
    }
  };
  write();
  return setInterval(write, intervalMs);
}

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
