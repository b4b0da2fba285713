/**
 * `aegisbpf run`: its declaration, and a start that costs nothing before the policy check process is on
 * its way. The agent's module graph (lib/commands/_run.ts) loads while that process starts on another
 * core (lib/ops/helper_process.ts); the API server and the metrics load after the first policy.
 */

import { CMDLINE_ENV, CMDLINE_FLAG } from "../state/break_glass_cmdline.ts";
import { defineCommand, type OptionValues } from "../cli/command.ts";
import type { OptionSpecs } from "../cli/specs.ts";
import { ENFORCE_SIGNALS } from "../kernel/mode_words.ts";
import { DEFAULT_API_SOCKET } from "../api/address.ts";
import { RunSignals } from "../agent/run_signals.ts";
import { HelperProcess } from "../ops/helper_process.ts";

const OPTIONS = {
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
    description: `serve the local API: unix:PATH (default ${DEFAULT_API_SOCKET}), tcp:HOST:PORT (loopback, ` +
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
} as const satisfies OptionSpecs;

/** The flags of `run`, as the agent's start reads them. */
export type RunFlags = OptionValues<typeof OPTIONS>;

export const run = defineCommand({
  name: "run",
  summary: "the agent, in the foreground: apply the policy, stream events, keep the mode words",
  description: "Loads the programs, or adopts the pinned ones with no gap, and applies the newest operator " +
    "intent: --policy FILE, else <config-dir>/policy.yaml unless a policy applied since it last changed is " +
    "in force (then that policy stays), else the policy already in force, else an embedded default audit " +
    "policy that shows real events at once and denies nothing. One agent per state directory: a second " +
    "run exits 3 naming the first. --audit is a floor held while the agent runs: nothing is denied, " +
    "whatever anyone applies. Streams every decision and agent event to stdout (one " +
    "line each, JSON with --log-format json, OCSF 1.3 JSON with --log-format ocsf: docs/events.md) and to <state-dir>/events.jsonl (8 MiB, then rotated to " +
    "events.jsonl.1), and describes itself in <state-dir>/agent.json. SIGHUP reads the policy again and " +
    "applies it only if it is valid (otherwise the old one stays and the event policy.reload_failed says " +
    "why). SIGUSR2 (the package's dpkg hook, after a dpkg run) resolves the policy in force again without " +
    "reading the file, so that exec.allow trust: dpkg takes the packages installed since. SIGTERM and " +
    "SIGINT stop the agent; enforcement stays pinned. The break-glass marker " +
    `<config-dir>/break_glass made or removed by hand takes effect within a second, and ${CMDLINE_FLAG} ` +
    `on the kernel command line (read from /proc/cmdline, or ${CMDLINE_ENV}) turns break-glass on at start. ` +
    "File and exec rule paths are watched: a file replaced by rename is denied again within a second. " +
    "Exits 3 when --enforce (or an enforce policy) needs an area this kernel can only audit, naming it, " +
    "unless --allow-partial.",
  options: OPTIONS,
  args: [],
  examples: [
    "aegisbpf run --audit",
    "aegisbpf run --enforce --policy /etc/aegisbpf/policy.yaml --deadman 30s",
    "aegisbpf run --ingress eth0 --log-format json",
    "aegisbpf run --audit --log-format ocsf",
    "aegisbpf run --enforce --enforce-signal kill --api unix:/run/aegisbpf/api.sock --api tcp:127.0.0.1:9180",
    "aegisbpf run --audit --metrics-textfile /var/lib/node_exporter/textfile_collector/aegisbpf.prom",
  ],
  async run(caller, { flags }) {
    // Listening first: a SIGHUP or SIGTERM while the agent starts is served once it can be, never fatal.
    using signals = new RunSignals();
    // Started before anything else loads; killed unless the start's policy check was sent to it.
    using helper = HelperProcess.spawn();
    const { runAgent } = await import("./_run.ts");
    return await runAgent(caller, flags, signals, helper);
  },
});
