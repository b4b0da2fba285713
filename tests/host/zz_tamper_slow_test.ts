/**
 * Tampering behind the agent's back (issue 17 item 9): root writes a mode word with `bpftool map update` or
 * removes a link's pin. The running agent restores the word or re-pins the link within a second or two, and
 * reports `tamper.detected` (event, metric, health); `health` is unhealthy while the kernel audits where
 * nothing asked for audit, with or without an agent. break-glass on (lib/ops/break_glass.ts, what the command
 * runs) is never reverted, even when
 * written while the agent hangs. One agent and one host for the whole file (tests/support/agent_host.ts).
 */
import assert from "node:assert/strict";
import { CFG } from "../../ffi/mod.ts";
import { bootTimeNs, readModeWords } from "../../lib/kernel/mode_words.ts";
import { PROGRAMS } from "../../lib/kernel/object.ts";
import {
  connect,
  type Host,
  NET,
  policy,
  spawn,
  withHost,
  within,
  writePolicy,
} from "../support/agent_host.ts";
import type { AgentRun, Event } from "../support/agent_run.ts";
import { must, rootTest } from "../support/privileged.ts";
import { checkHealth, type HealthReport } from "../../lib/report/health.ts";
import { collect, families } from "../../lib/metrics/collect.ts";
import { exposition } from "../../lib/metrics/exposition.ts";
import { breakGlassOff, breakGlassOn } from "../../lib/ops/break_glass.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** `aegisbpf ARGS` on the host's directories: exit code and stdout. */
async function cli(host: Host, args: string[]): Promise<{ code: number; stdout: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "--quiet", MAIN, ...args],
    env: { ...host.env, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: output.code, stdout: new TextDecoder().decode(output.stdout) };
}

/** `health` in this process (what the command prints as JSON); the last check runs the command itself. */
function health(host: Host): Promise<{ code: number; report: HealthReport }> {
  const report = checkHealth(host, { requireEnforce: false, connections: false, staleRules: false });
  return Promise.resolve({ code: report.healthy ? 0 : 1, report });
}

/** Writes config word `index` of the pinned config map with bpftool, as an attacker with root would. */
async function bpftoolWord(host: Host, index: number, value: bigint): Promise<void> {
  const bytes = (n: bigint, size: number) =>
    Array.from({ length: size }, (_, i) => String(Number((n >> BigInt(8 * i)) & 0xffn)));
  await must("bpftool", [
    "map",
    "update",
    "pinned",
    `${host.bpffs}/aegisbpf/maps/aegis_cfg`,
    "key",
    ...bytes(BigInt(index), 4),
    "value",
    ...bytes(value, 8),
  ]);
}

/**
 * Health once it is healthy, waiting up to 5 s: an agent's first heartbeat comes 2 s after its start and the
 * next one after a SIGSTOP when it resumes, and a loaded host starts agents slowly.
 */
async function untilHealthy(host: Host): Promise<{ code: number; report: HealthReport }> {
  let result = await health(host);
  for (let i = 0; i < 50 && result.code !== 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    result = await health(host);
  }
  assert.equal(result.code, 0, `healthy: ${JSON.stringify(result.report.problems)}`);
  return result;
}

const tamperOf = (what: string) => (event: Event) => event.type === "tamper.detected" && event.what === what;

function metric(host: Host, what: string): number {
  const text = exposition(families(collect(host)));
  const line = text.split("\n").find((text) =>
    text.startsWith(`aegisbpf_tamper_detected_total{what="${what}"}`)
  );
  return line === undefined ? 0 : Number(line.split(" ").at(-1));
}

const stopAgent = async (agent: AgentRun) => {
  agent.kill("SIGTERM");
  assert.equal((await agent.exit()).code, 0);
};

rootTest(
  "[root] tamper: mode words written by bpftool and a link unpinned behind the running agent are restored and reported",
  async () => {
    await withHost(async (host) => {
      const file = writePolicy(host, "policy.yaml", policy(host, NET));
      await using agent = spawn(host, ["--enforce", "--deadman", "30s", "--policy", file]);
      await agent.ready(240_000);
      assert.equal(await connect(host), "EPERM", "enforcing at start");
      await untilHealthy(host);

      // Force-audit written while the agent is stopped (SIGSTOP): health names it at once; the kernel audits.
      agent.kill("SIGSTOP");
      await bpftoolWord(host, CFG.FORCE_AUDIT, 1n);
      assert.equal(await connect(host), "allowed", "the forced-audit word lets the connect through");
      const meanwhile = await health(host);
      assert.equal(meanwhile.code, 1, "unhealthy while the word is set");
      assert.match(
        meanwhile.report.problems.join("\n"),
        /force-audit word set but no agent or command asked/,
      );
      agent.kill("SIGCONT");
      const restored = await agent.waitFor(tamperOf("force_audit"), 5_000);
      assert.deepEqual([restored.found, restored.restored], [1, 0]);
      await within(2_000, "EPERM", () => connect(host));
      assert.equal(readModeWords(host.bpffs)?.forceAudit, false);
      // Healthy again once restored (and once the heartbeat the stop held back has come).
      const after = await untilHealthy(host);
      assert.equal(after.report.tamper.recent[0]?.what, "force_audit");
      assert.match(after.report.warnings.join("\n"), /tampering: the force-audit word was 1, restored to 0/);
      assert.equal(metric(host, "force_audit"), 1);

      // Break-glass word set with no marker: cleared again and reported.
      await bpftoolWord(host, CFG.BREAK_GLASS, 1n);
      const glass = await agent.waitFor(tamperOf("break_glass"), 5_000);
      assert.deepEqual([glass.found, glass.restored], [1, 0]);
      assert.equal(readModeWords(host.bpffs)?.breakGlass.on, false);
      assert.equal(await connect(host), "EPERM");

      // A deadman deadline in the past (the hooks would audit) and a kill-on-deny word the agent did not set.
      await bpftoolWord(host, CFG.DEADMAN, 1n);
      await bpftoolWord(host, CFG.ENFORCE_SIGNAL, 9n);
      const deadman = await agent.waitFor(tamperOf("deadman"), 5_000);
      assert.equal(deadman.found, 1);
      assert.ok(BigInt(deadman.restored) > bootTimeNs(), "a deadline ahead again");
      const signal = await agent.waitFor(tamperOf("enforce_signal"), 5_000);
      assert.deepEqual([signal.found, signal.restored], [9, 0]);
      assert.equal(await connect(host), "EPERM");

      // Break-glass through the CLI while the agent hangs: kept when the agent comes back.
      agent.kill("SIGSTOP");
      breakGlassOn(host, { reason: "tamper-test" });
      agent.kill("SIGCONT");
      await agent.waitFor((event) => event.type === "break_glass.on", 5_000);
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      assert.equal(readModeWords(host.bpffs)?.breakGlass.on, true, "the CLI's break-glass is not reverted");
      assert.equal(await connect(host), "allowed");
      assert.equal(agent.events.filter(tamperOf("break_glass")).length, 1, "no tamper reported for the CLI");
      breakGlassOff(host);
      await within(2_000, "EPERM", () => connect(host));

      // A link's pin removed: pinned again, so enforcement outlives the agent.
      const pin = `${host.bpffs}/aegisbpf/links/${PROGRAMS.connect4}`;
      Deno.removeSync(pin);
      const link = await agent.waitFor(tamperOf("link"), 5_000);
      assert.equal(link.link, PROGRAMS.connect4);
      assert.ok(Deno.statSync(pin).isFile, "re-pinned");
      await stopAgent(agent);
      assert.equal(await connect(host), "EPERM", "the re-pinned link enforces after the agent stopped");

      // No agent: the word set by hand with an enforce policy is unhealthy.
      await bpftoolWord(host, CFG.FORCE_AUDIT, 1n);
      const alone = await cli(host, ["health", "--json"]);
      assert.equal(alone.code, 1, "the command exits 1");
      assert.match(
        JSON.parse(alone.stdout).problems.join("\n"),
        /force-audit word set but no agent or command asked/,
      );
      assert.equal(await connect(host), "allowed");
      await bpftoolWord(host, CFG.FORCE_AUDIT, 0n);
      await bpftoolWord(host, CFG.BREAK_GLASS, 1n);
      const glassAlone = await health(host);
      assert.equal(glassAlone.code, 1, "a break-glass word with no marker excuses nothing");
      assert.match(glassAlone.report.problems.join("\n"), /break-glass word set but no marker/);
    });
  },
);
