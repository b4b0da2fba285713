/**
 * The one-writer race (SPEC section 5): `policy apply` (a CLI process) against, in turn, the agent's rule
 * refresh (a denied file replaced by rename), a SIGHUP with policy.yaml rewritten, an API apply
 * (POST /v1/policy, a helper process) and a canary (`policy apply --canary`), with the agent running, and a
 * few rounds where the CLI is killed with SIGKILL at a random point. After every round the kernel's live
 * rules (read back from the active generation's maps), history's entry in force, applied.json, the status
 * report and agent.json must all name one policy, and that policy must be the last accepted change.
 */
import assert from "node:assert/strict";
import { encodeRuleKey, encodeU32, FdMap, RULE } from "../../ffi/mod.ts";
import { lockState } from "../../lib/ops/apply.ts";
import { checkHealth } from "../../lib/report/health.ts";
import { encodeNetRules, splitNetEntries } from "../../lib/kernel/entries.ts";
import { pinnedGenInfo } from "../../lib/kernel/inspect.ts";
import { readModeWords } from "../../lib/kernel/mode_words.ts";
import { currentIdentity } from "../../lib/kernel/resolve.ts";
import { readApplied } from "../../lib/state/apply_state.ts";
import { compilePolicy } from "../../lib/policy/compile.ts";
import { currentEntry, listHistory } from "../../lib/state/history.ts";
import { parsePolicy, policySha256 } from "../../lib/policy/parse.ts";
import { aegisbpf, spawnAegisbpf } from "../cli/cli.ts";
import type { AgentRun } from "../support/agent_run.ts";
import { type Host, policy, spawn, withHost, within } from "../support/agent_host.ts";
import { curl, waitForSocket } from "../support/api_client.ts";
import { rootTest } from "../support/privileged.ts";

const ROUNDS = Number(Deno.env.get("AEGISBPF_RACE_ROUNDS") ?? 100);
/**
 * Past this, no new round starts. A round takes about 2.9 s on a quiet two-core machine (a CLI process and
 * its program loads dominate): 100 rounds fit in 360 s there; a loaded machine runs fewer, and says so.
 */
const BUDGET_MS = Number(Deno.env.get("AEGISBPF_RACE_BUDGET_S") ?? 360) * 1000;
const PAIRINGS = ["refresh", "sighup", "api", "canary"] as const;
type Pairing = typeof PAIRINGS[number];
/** Every KILL_EVERY-th round (7: each pairing in turn), the CLI apply is killed with SIGKILL at a random point. */
const KILL_EVERY = 7;

type Known = { label: string; text: string; netKeys: Set<string> };

const hex = (bytes: Uint8Array) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The CIDR keys a policy compiles to (the `net_rules` trie's and the `net_exact` hash's), as the kernel should hold them. */
function netKeysOf(text: string): Set<string> {
  const split = splitNetEntries(encodeNetRules(compilePolicy(parsePolicy(text, "race"))));
  return new Set([split.net_rules, split.net_exact].flatMap(({ keys, count }) => {
    const size = keys.byteLength / Math.max(count, 1);
    return Array.from({ length: count }, (_, i) => hex(keys.subarray(i * size, (i + 1) * size)));
  }));
}

/** The inner map of rule map `name` installed for generation `gen` (read through the pinned outer map). */
function innerMap(host: Host, name: "net_rules" | "net_exact" | "rules", gen: number): FdMap | undefined {
  using outer = FdMap.open(`${host.bpffs}/aegisbpf/maps/${name}`);
  const id = outer.lookup(encodeU32(gen));
  return id && FdMap.fromId(new DataView(id.buffer).getUint32(0, true), `${name}[${gen}]`);
}

/** Everything that says which policy is live, read under the state lock so that no writer is mid-change. */
async function snapshot(host: Host, target: string) {
  using _lock = await lockState(host.stateDir, "writer race check", { wait: true, onWait: () => {} });
  const activeGen = readModeWords(host.bpffs)!.activeGen;
  const history = listHistory(host.stateDir);
  using net = innerMap(host, "net_rules", activeGen);
  using exact = innerMap(host, "net_exact", activeGen);
  using rules = innerMap(host, "rules", activeGen);
  // The file as the kernel names it (its superblock's dev), as the apply resolved it.
  const { dev, ino } = currentIdentity(target, Deno.readTextFileSync("/proc/self/mountinfo"))!;
  return {
    activeGen,
    genInfo: pinnedGenInfo(host.bpffs, activeGen),
    netKeys: new Set([...net?.keys() ?? [], ...exact?.keys() ?? []].map(hex)),
    // The file rule's inode live in the kernel: the target as it is now must be denied.
    targetDenied: rules?.lookup(encodeRuleKey({ kind: RULE.FILE, a: ino, b: dev })) !== undefined,
    entry: currentEntry(history),
    pending: history.filter((entry) => entry.outcome === "pending").length,
    applied: readApplied(host.stateDir),
    health: checkHealth(host, { requireEnforce: false, connections: false }),
    agentSha: agentSha(host),
  };
}

type Round = { round: number; pairing: Pairing; kill: boolean; expected: string; ms: number; note: string };

rootTest(
  "[root] one writer: policy apply raced against a rule refresh, a SIGHUP, an API apply and a canary (and kill -9): kernel, history, applied.json, status and agent agree on the last accepted change",
  async () => {
    await withHost(async (host) => {
      const target = `${host.dir}/target`;
      Deno.writeTextFileSync(target, "0\n");
      const known = new Map<string, Known>();
      const make = (label: string, version: number, cidr: string): Known & { sha256: string } => {
        const body = `  files: { deny: [{ id: target, path: ${target} }] }\n` +
          `  network: { egress: { deny: [{ id: marker, cidr: ${cidr} }] } }\n`;
        const text = policy(host, body, { mode: "audit", version });
        const sha256 = policySha256(text);
        const entry = { label, text, netKeys: netKeysOf(text) };
        known.set(sha256, entry);
        return { ...entry, sha256 };
      };
      const configured = `${host.configDir}/policy.yaml`;
      const initial = make("initial v1", 1, "240.255.0.1/32");
      Deno.writeTextFileSync(configured, initial.text);

      const socket = `${host.dir}/api.sock`;
      const agent = spawn(host, ["--api", `unix:${socket}`]);
      await using _ = agent;
      await agent.ready();
      assert.ok(await waitForSocket(socket), "the API socket");

      const rounds: Round[] = [];
      const disagreements: string[] = [];
      const tally = { refreshed: 0, reloadApplied: 0, reloadKept: 0, cliKilled: 0, cliFinishedFirst: 0 };
      const started = performance.now();
      let round = 0;
      for (; round < ROUNDS && performance.now() - started < BUDGET_MS; round++) {
        const pairing = PAIRINGS[round % PAIRINGS.length]!;
        const kill = round % KILL_EVERY === KILL_EVERY - 1;
        const mine = make(`round ${round} cli`, 1000 + 2 * round, `240.0.${round}.1/32`);
        const theirs = make(`round ${round} ${pairing}`, 1001 + 2 * round, `240.1.${round}.1/32`);
        const file = `${host.dir}/round.yaml`;
        Deno.writeTextFileSync(file, mine.text);
        if (pairing === "sighup") Deno.writeTextFileSync(configured, theirs.text);
        const from = agent.events.length;
        // Who starts first, and by how much: a CLI apply takes seconds to start and reach the lock here, so
        // the agent's own writers (refresh, SIGHUP) land before, during or after it, and the two commands
        // (API, canary) each get a head start half of the time.
        const lead = pairing === "refresh" || pairing === "sighup"
          ? Math.random() * 4000
          : Math.random() * 4000 - 2000;
        const t0 = performance.now();
        const cliDone = (async () => {
          await sleep(Math.max(0, -lead));
          const cli = spawnAegisbpf(["policy", "apply", file, "--json"], { env: host.env });
          // At a random point: starting, waiting for the lock, or mid-apply.
          const killer = kill
            ? setTimeout(() => {
              try {
                cli.kill("SIGKILL");
              } catch {
                // It has just exited.
              }
            }, 300 + Math.random() * 4000)
            : undefined;
          try {
            return await cli.output();
          } finally {
            clearTimeout(killer);
          }
        })();
        const racer = sleep(Math.max(0, lead)).then(() =>
          race(pairing, host, agent, { target, socket, theirs, round })
        );
        const [output, theirSeq] = await Promise.all([cliDone, racer]);
        const tRaced = performance.now();
        const cliJson = output.code === 0 ? JSON.parse(new TextDecoder().decode(output.stdout)) : undefined;
        let note = "";
        let expected: string;
        if (kill) {
          const killed = output.signal === "SIGKILL";
          if (killed) tally.cliKilled++;
          else tally.cliFinishedFirst++;
          note = killed ? "cli killed" : "cli finished before the kill";
          // The operator runs the apply again: it settles what the killed one left, and its policy wins.
          const again = await aegisbpf(["policy", "apply", file], { env: host.env });
          assert.equal(again.code, 0, again.stderr);
          expected = mine.sha256;
        } else {
          assert.equal(output.code, 0, `round ${round}: ${new TextDecoder().decode(output.stderr)}`);
          if (pairing === "refresh" || pairing === "sighup") expected = mine.sha256;
          else {
            // Two commands, both accepted: the one history ordered last is in force.
            assert.equal(typeof theirSeq, "number", `round ${round}: the ${pairing} apply`);
            expected = cliJson.seq > (theirSeq as number) ? mine.sha256 : theirs.sha256;
            note = cliJson.seq > (theirSeq as number) ? "cli last" : `${pairing} last`;
          }
        }
        // The agent takes the change over (its slow tick), and has told what its own writer did.
        await within(15_000, expected, () => Promise.resolve(agentSha(host))).catch(() => {}); // checked below
        // A rename after the apply is the agent's to cover, by its refresh: give it the time to run.
        await within(
          15_000,
          "covered",
          async () => (await snapshot(host, target)).targetDenied ? "covered" : "not",
        );
        const tAgent = performance.now();
        const events = agent.events.slice(from);
        tally.refreshed += events.filter((e) => e.type === "policy.refreshed").length;
        const reloads = events.filter((e) => e.type === "policy.applied" && e.reason === "reload");
        tally.reloadApplied += reloads.filter((e) => typeof e.history === "number").length;
        tally.reloadKept += reloads.filter((e) => e.choice?.kind === "kept").length;

        const seen = await snapshot(host, target);
        const problems = agreement(seen, expected, known);
        if (round % 10 === 0) {
          // The real command too, now and then (it reads what checkHealth read).
          const status = JSON.parse((await aegisbpf(["status", "--json"], { env: host.env })).stdout);
          if (status.policy?.sha256 !== expected || status.policy?.seq !== seen.entry?.seq) {
            problems.push(
              `status --json names ${status.policy?.seq}/${known.get(status.policy?.sha256)?.label}`,
            );
          }
        }
        for (const problem of problems) {
          disagreements.push(`round ${round} (${kill ? "kill, " : ""}${pairing}, ${note}): ${problem}`);
        }
        if (Deno.env.get("AEGISBPF_RACE_TRACE")) {
          const ms = (a: number, b: number) => (b - a).toFixed(0);
          console.error(
            `round ${round} ${pairing}${kill ? " kill" : ""} ${note} raced ${ms(t0, tRaced)} agent ` +
              `${ms(tRaced, tAgent)} checked ${ms(tAgent, performance.now())} ms ${problems.join("; ")}`,
          );
        }
        rounds.push({
          round,
          pairing,
          kill,
          expected: known.get(expected)!.label,
          ms: performance.now() - t0,
          note,
        });
      }

      const times = rounds.map((r) => r.ms);
      const per = Object.fromEntries(
        PAIRINGS.map((p) => [p, rounds.filter((r) => r.pairing === p).length]),
      );
      const lastWins = Object.fromEntries(
        ["api", "canary"].map((p) => [
          p,
          `${rounds.filter((r) => r.pairing === p && r.note === "cli last").length} cli last / ` +
          `${rounds.filter((r) => r.pairing === p && r.note === `${p} last`).length} ${p} last`,
        ]),
      );
      console.log(
        `writer race: ${rounds.length} of ${ROUNDS} rounds` +
          (rounds.length < ROUNDS ? ` (stopped by the ${BUDGET_MS / 1000} s budget)` : "") +
          ` in ${((performance.now() - started) / 1000).toFixed(1)} s; per pairing ${JSON.stringify(per)}; ` +
          `of which kill -9 ${rounds.filter((r) => r.kill).length}; round mean ${
            mean(times).toFixed(0)
          } ms, max ${Math.max(...times).toFixed(0)} ms; ` +
          `who was last ${JSON.stringify(lastWins)}; agent ${JSON.stringify(tally)}; ` +
          `disagreements ${disagreements.length}`,
      );
      assert.deepEqual(disagreements.slice(0, 10), [], `${disagreements.length} disagreements`);
      const least = Math.min(ROUNDS, PAIRINGS.length * 5);
      assert.ok(rounds.length >= least, `only ${rounds.length} rounds fit the budget`);
    });
  },
);

/** The racer of `pairing`; the API's or the canary's history seq. */
async function race(
  pairing: Pairing,
  host: Host,
  agent: AgentRun,
  how: { target: string; socket: string; theirs: Known; round: number },
): Promise<number | undefined> {
  if (pairing === "refresh") {
    // As an editor or package manager does: a new file renamed over the denied one.
    const next = `${how.target}.new`;
    Deno.writeTextFileSync(next, `${how.round}\n`);
    Deno.renameSync(next, how.target);
    return undefined;
  }
  if (pairing === "sighup") {
    agent.kill("SIGHUP");
    return undefined;
  }
  if (pairing === "api") {
    const posted = await curl(how.socket, [
      "--max-time",
      "60",
      "-X",
      "POST",
      "--data-binary",
      how.theirs.text,
      "http://aegisbpf/v1/policy",
    ]);
    assert.equal(posted.status, 200, posted.body);
    return JSON.parse(posted.body).seq;
  }
  const file = `${host.dir}/canary.yaml`;
  Deno.writeTextFileSync(file, how.theirs.text);
  const canary = await aegisbpf(
    ["policy", "apply", file, "--canary", "1s", "--max-deny-rate", "1000", "--json"],
    { env: host.env },
  );
  assert.equal(canary.code, 0, canary.stderr);
  const lines = canary.stdout.trim().split("\n");
  return JSON.parse(lines.at(-1)!).seq;
}

function agentSha(host: Host): string {
  try {
    return JSON.parse(Deno.readTextFileSync(`${host.stateDir}/agent.json`)).policy.sha256;
  } catch {
    return "";
  }
}

/** What disagrees, if anything: each a line. */
function agreement(
  seen: Awaited<ReturnType<typeof snapshot>>,
  expected: string,
  known: Map<string, Known>,
): string[] {
  const problems: string[] = [];
  const name = (sha: string | undefined) => (sha && known.get(sha)?.label) ?? `unknown ${sha}`;
  const { entry, applied, health } = seen;
  if (seen.pending > 0) problems.push(`${seen.pending} pending history entries`);
  if (entry?.sha256 !== expected) {
    problems.push(`history's entry in force is ${entry?.seq} ${name(entry?.sha256)}, not ${name(expected)}`);
  }
  if (applied?.seq !== entry?.seq || applied?.sha256 !== entry?.sha256) {
    problems.push(`applied.json names ${applied?.seq} ${name(applied?.sha256)}, history ${entry?.seq}`);
  }
  if (applied?.generation !== seen.activeGen) {
    problems.push(`applied.json names generation ${applied?.generation}, the kernel's is ${seen.activeGen}`);
  }
  const live = [...known].filter(([, policy]) => sameSet(policy.netKeys, seen.netKeys)).map(([sha]) => sha);
  if (live.length !== 1 || live[0] !== expected) {
    problems.push(
      `the kernel's live net rules are those of ${live.map(name).join(", ") || "no known policy"}`,
    );
  }
  const counted = seen.genInfo && seen.genInfo.netRulesEntries + seen.genInfo.netExactEntries;
  if (counted !== seen.netKeys.size) {
    problems.push(`gen_info counts ${counted} net rules, the maps hold ${seen.netKeys.size}`);
  }
  if (!seen.targetDenied) problems.push("the kernel does not deny the target file as it is now");
  if (health.policy?.sha256 !== expected || health.policy?.seq !== entry?.seq) {
    problems.push(`status names ${health.policy?.seq} ${name(health.policy?.sha256)}`);
  }
  if (seen.agentSha !== expected) problems.push(`agent.json names ${name(seen.agentSha)}`);
  if (health.staleRules === null) problems.push("status did not check stale rules");
  else if (health.staleRules.stale.length > 0) {
    problems.push(`status reports stale rules: ${JSON.stringify(health.staleRules.stale)}`);
  }
  return problems;
}

function sameSet(a: Set<string>, b: Set<string>): boolean {
  return a.size === b.size && [...a].every((key) => b.has(key));
}

function mean(values: number[]): number {
  return values.reduce((sum, value) => sum + value, 0) / Math.max(values.length, 1);
}
