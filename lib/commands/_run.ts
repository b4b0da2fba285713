/**
 * The agent in the foreground, for `aegisbpf run` (lib/commands/run.ts imports this once the policy check
 * process is started): starts the agent, then serves the API and the metrics textfile, whose modules load
 * only then, after the first policy is applied.
 */

import { Agent } from "../agent/run.ts";
import { eventLine } from "../agent/event_text.ts";
import { ocsfEvent } from "../agent/event_ocsf.ts";
import type { RunSignals } from "../agent/run_signals.ts";
import type { Context } from "../cli/command.ts";
import { LineQueue } from "../cli/line_queue.ts";
import { queuedLogger } from "../cli/log.ts";
import { parseDuration } from "../text/duration.ts";
import { OutputClosedError } from "../cli/output.ts";
import { palette } from "../text/palette.ts";
import { InputError, messageOf } from "../errors.ts";
import { jsonText } from "../text/printable.ts";
import { hasInterface } from "../kernel/resolve.ts";
import { EventHub } from "../api/event_hub.ts";
import { type ApiAddress, DEFAULT_API_SOCKET, parseApiAddress } from "../api/address.ts";
import type { ApiServer } from "../api/server.ts";
import { guardProcess } from "../agent/process_guard.ts";
import type { HelperProcess } from "../ops/helper_process.ts";
import type { RunFlags } from "./run.ts";

export async function runAgent(
  caller: Context,
  flags: RunFlags,
  signals: RunSignals,
  helper: HelperProcess,
): Promise<number> {
  // Neither stdout nor stderr may hold the agent up: both are queued and written asynchronously.
  const log = queuedLogger(
    { format: caller.globals.logFormat, level: caller.globals.logLevel, palette: palette(caller.color) },
    caller.stderr.sink,
  );
  const ctx: Context = { ...caller, log };
  log.debug("signals: SIGHUP reloads, SIGUSR2 refreshes the rules, SIGTERM and SIGINT stop, from now on");
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
  // The metrics modules load only for an agent that writes the textfile.
  const textfile = metricsPath === undefined ? undefined : await import("./metrics.ts");
  if (metricsPath !== undefined) textfile!.checkTextfilePath(metricsPath);
  using _guard = guardProcess((message) => ctx.log.error(message));
  // Events are kept for the API's streams only where an API serves them.
  const hub = apiAddresses.length > 0 ? new EventHub() : undefined;
  const format = ctx.globals.logFormat;
  const json = format === "json";
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
      helper,
      ...(deadmanMs === undefined ? {} : { deadmanMs }),
      ...(flags["enforce-signal"] === undefined ? {} : { enforceSignal: flags["enforce-signal"] }),
      log: ctx.log,
      emit: (event, line) => {
        hub?.publish(line);
        // The agent's own events (rare: starts, applies, drop reports) are never dropped for a flood's lines.
        const shown = json
          ? line
          : format === "ocsf"
          ? jsonText(ocsfEvent(event) ?? event)
          : eventLine(event, style);
        stdout(shown, !("decision" in event));
      },
      // JSON lines with no API to publish them: kernel events are written straight from the record as bytes.
      ...(json && hub === undefined ? { emitJson: (line: Uint8Array) => stdout.bytes(line) } : {}),
    });
    const running = agent;
    // Stopped while starting: no API, no timers, straight to the stop.
    if (signals.stopSignal === undefined) {
      if (hub !== undefined) api = await serveAgentApi(ctx, running, hub, apiAddresses);
      if (metricsPath !== undefined) timers.push(await textfileTimer(ctx, running, metricsPath, metricsMs));
      signals.serveReloads(() => void running.reload());
      signals.serveRefreshes(() => void running.refreshPackages());
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
}

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
  const [{ agentApiDeps }, { createApp }, { serveApi }] = await Promise.all([
    import("../agent/api_deps.ts"),
    import("../api/app.ts"),
    import("../api/server.ts"),
  ]);
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
async function textfileTimer(
  ctx: Context,
  agent: Agent,
  path: string,
  intervalMs: number,
): Promise<ReturnType<typeof setInterval>> {
  const [{ writeTextfile }, { collect, families }, { exposition }] = await Promise.all([
    import("./metrics.ts"),
    import("../metrics/collect.ts"),
    import("../metrics/exposition.ts"),
  ]);
  const write = () => {
    try {
      writeTextfile(
        path,
        exposition(families(collect(ctx.globals, {
          ruleName: (gen, id) => agent.ruleName(gen, id),
          ruleTags: (gen, id) => agent.ruleTags(gen, id),
        }))),
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
