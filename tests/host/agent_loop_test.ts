/**
 * The agent's loop against what a stalled outside or a tired operator does to it: a stdout nobody reads,
 * a full disk under the event log, a break-glass marker with bad content, SIGHUP and SIGTERM while it
 * starts, and a pick-up of another command's apply that keeps failing. Each test has its own bpffs, state
 * and config directories and test cgroup (tests/support/agent_host.ts); policies are scoped to that cgroup.
 */
import assert from "node:assert/strict";
import { eventLogPath, recentLines } from "../../lib/agent/event_log.ts";
import { bootTimeNs, readModeWords } from "../../lib/kernel/mode_words.ts";
import { appliedFile, readApplied, writeApplied } from "../../lib/state/apply_state.ts";
import { contentDir, listHistory } from "../../lib/state/history.ts";
import { type Host, policy, withHost, writePolicy } from "../support/agent_host.ts";
import { AgentRun, type Event } from "../support/agent_run.ts";
import { TestTmpfs } from "../support/bpffs.ts";
import { rootTest } from "../support/privileged.ts";

/** A high port outside the ephemeral range, different for each test process. */
const PORT = 62000 + (Deno.pid % 300);

const AUDIT_CONNECTS = `  network:
    egress:
      deny: [{ id: lo2, cidr: 127.0.0.2/32, ports: [${PORT}], protocol: tcp }]
`;

const isType = (type: string) => (event: Event) => event.type === type;

function spawn(host: Host, args: string[], options: { prefix?: string[] } = {}): AgentRun {
  return AgentRun.spawn(host, args, { env: host.env, ...options });
}

function auditPolicy(host: Host): string {
  return writePolicy(host, "policy.yaml", policy(host, AUDIT_CONNECTS, { mode: "audit" }));
}

/**
 * Starts bash in the test cgroup making audited connects for `seconds`, each from a new process (the
 * kernel's rate limit goes by pid): a flood of events.
 */
function eventFlood(host: Host, seconds: number): Promise<{ code: number }> {
  return host.cgroup.runBash(
    `while [ $SECONDS -lt ${seconds} ]; do (exec 3<>/dev/tcp/127.0.0.2/${PORT}) 2>/dev/null; done; true`,
  );
}

/** The events in the agent's event log, by type (a line a full disk cut short is left out). */
function loggedTypes(host: Host): string[] {
  return recentLines(eventLogPath(host.stateDir), Number.MAX_SAFE_INTEGER).flatMap((line) =>
    line.ok ? [String(line.event.type)] : []
  );
}

/** How old the newest event in the agent's event log is, in ms. */
function newestEventAgeMs(host: Host): number {
  const [last] = recentLines(eventLogPath(host.stateDir), 1);
  if (!last?.ok) return Infinity;
  return Date.now() - Date.parse(String(last.event.ts).replace(/(\.\d{3})\d*Z$/, "$1Z"));
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The process's anonymous resident memory (RssAnon of /proc/PID/status), in KiB. */
function rssAnonKiB(pid: number): number {
  const kib = /RssAnon:\s+(\d+) kB/.exec(Deno.readTextFileSync(`/proc/${pid}/status`))?.[1];
  assert.ok(kib !== undefined, `no RssAnon for ${pid}`);
  return Number(kib);
}

/**
 * Waits until `run` listens to its signals: it says so at debug level once its listeners are in (the
 * runtime's own handlers, installed earlier, still let an unlistened SIGHUP end the process).
 */
async function untilListening(agent: AgentRun): Promise<void> {
  for (let i = 0; i < 2000 && !agent.stderr.includes("signals: SIGHUP reloads"); i++) await sleep(5);
  assert.match(agent.stderr, /signals: SIGHUP reloads/, "the agent never said it listens");
}

rootTest(
  "[root] a stdout and stderr nobody reads for 60 s hold up neither the deadman refresh, nor break-glass, nor the ring",
  async () => {
    await withHost(async (host) => {
      const fifo = `${host.dir}/stdout`;
      await new Deno.Command("mkfifo", { args: [fifo] }).output();
      // The agent's stdout and stderr are one pipe (as journald's stream is) that this test opens and then
      // leaves unread until the end.
      const agent = spawn(host, ["--policy", auditPolicy(host), "--deadman", "10s"], {
        prefix: ["bash", "-c", `exec "$@" > '${fifo}' 2>&1`, "--"],
      });
      await using _agent = agent;
      const reader = await Deno.open(fifo, { read: true });
      // The test cgroup is removed after: a failed assertion first waits for the flood to end.
      let flooding: Promise<unknown> | undefined;
      try {
        for (let i = 0; i < 600 && !loggedTypes(host).includes("policy.applied"); i++) await sleep(50);
        assert.ok(loggedTypes(host).includes("policy.applied"), "never started");
        const flood = eventFlood(host, 62);
        flooding = flood;
        const start = performance.now();
        let minRemainingMs = Infinity;
        const lagsMs: number[] = [];
        let glassMs: number | undefined;
        let glassLogged = false;
        let rssAt20s: number | undefined;
        const seen = new Set<string>();
        while (performance.now() - start < 60_000) {
          const words = readModeWords(host.bpffs)!;
          const deadline = words.deadmanDeadlineNs;
          assert.ok(deadline !== undefined, "the deadman stays armed");
          minRemainingMs = Math.min(minRemainingMs, Number(deadline - bootTimeNs()) / 1e6);
          const elapsed = performance.now() - start;
          // The event log rotates many times over (8 MiB each): what it holds is read as it goes.
          for (const type of loggedTypes(host)) seen.add(type);
          if (lagsMs.length < Math.floor(elapsed / 10_000)) lagsMs.push(newestEventAgeMs(host));
          // By now the stdout queue is full: from here on its lines are dropped, not kept.
          if (rssAt20s === undefined && elapsed >= 20_000) rssAt20s = rssAnonKiB(agent.pid);
          if (glassMs === undefined && elapsed >= 30_000) {
            const touched = performance.now();
            // Not JSON: break-glass on, and a warning to the stalled stderr.
            Deno.writeTextFileSync(`${host.configDir}/break_glass`, "rescue");
            while (!readModeWords(host.bpffs)!.breakGlass.on && performance.now() - touched < 5000) {
              await sleep(10);
            }
            glassMs = performance.now() - touched;
            for (let i = 0; i < 20 && !glassLogged; i++, await sleep(100)) {
              glassLogged = loggedTypes(host).includes("break_glass.on");
            }
          }
          await sleep(100);
        }
        const rssAt60s = rssAnonKiB(agent.pid);
        assert.ok(
          rssAt20s !== undefined && rssAt60s - rssAt20s < 64 * 1024,
          `the unread stdout must not grow the agent's memory: RssAnon ${rssAt20s} KiB at 20 s, ${rssAt60s} KiB at 60 s`,
        );
        assert.ok(glassMs !== undefined && glassMs < 1000, `break-glass noticed after ${glassMs} ms`);
        assert.ok(minRemainingMs > 5000, `the kernel's deadman came within ${minRemainingMs} ms of expiring`);
        assert.ok(!seen.has("deadman.expired"), "no deadman.expired");
        assert.ok(glassLogged, "break_glass.on logged");
        // The ring is drained all along: every 10 s the newest logged event is a fresh one.
        assert.ok(
          lagsMs.length >= 5 && lagsMs.every((ms) => ms < 3000),
          `newest event ages: ${lagsMs.join(", ")} ms`,
        );
        assert.equal((await flood).code, 0);
        // The reader comes back: the queue drains and says what it dropped.
        let read = "";
        const draining = reader.readable.pipeThrough(new TextDecoderStream())
          .pipeTo(new WritableStream({ write: (text) => void (read += text) }));
        for (let i = 0; i < 100 && !/stdout: \d+ lines not written/.test(read); i++) await sleep(100);
        assert.match(
          read,
          /stdout: \d+ lines not written: its reader was too slow \(the event log has them\)/,
        );
        agent.kill("SIGTERM");
        assert.equal((await agent.exit()).code, 0);
        await draining;
      } finally {
        await flooding;
        try {
          reader.close();
        } catch {
          // Closed by the drain.
        }
      }
    });
  },
);

rootTest(
  "[root] the event log on a full disk: one warning, then events are written again once space is freed",
  async () => {
    const disk = await TestTmpfs.mountSized(64 * 1024);
    try {
      await withHost(async (host) => {
        // The state directory is the small disk.
        Deno.symlinkSync(disk.path, host.stateDir);
        const agent = spawn(host, ["--policy", auditPolicy(host)]);
        await using _agent = agent;
        await agent.ready();
        const filler = `${host.stateDir}/filler`;
        await new Deno.Command("dd", { args: ["if=/dev/zero", `of=${filler}`, "bs=4k"], stderr: "null" })
          .output();
        const connects = (n: number) =>
          host.cgroup.runBash(
            `for i in $(seq ${n}); do (exec 3<>/dev/tcp/127.0.0.2/${PORT}) 2>/dev/null; done; true`,
          );
        await connects(20);
        await agent.waitFor((event) => event.type === "net.connect" && event.decision === "audit");
        for (let i = 0; i < 50 && !/event log .*No space left on device/.test(agent.stderr); i++) {
          await sleep(100);
        }
        assert.match(
          agent.stderr,
          /event log .*events\.jsonl: .*No space left on device.*: events go to stdout only/,
        );
        const before = loggedTypes(host).filter((type) => type === "net.connect").length;
        Deno.removeSync(filler);
        const from = agent.events.length;
        await connects(5);
        await agent.waitFor(isType("net.connect"), 5000, from);
        for (let i = 0; i < 50 && !/writing again/.test(agent.stderr); i++) await sleep(100);
        assert.match(agent.stderr, /event log .*events\.jsonl: writing again; \d+ events were not written/);
        assert.equal(agent.stderr.match(/No space left on device/g)?.length, 1, "one warning per outage");
        for (
          let i = 0;
          i < 50 && loggedTypes(host).filter((t) => t === "net.connect").length === before;
          i++
        ) {
          await sleep(100);
        }
        assert.ok(loggedTypes(host).filter((type) => type === "net.connect").length > before, "logged again");
        agent.kill("SIGTERM");
        assert.equal((await agent.exit()).code, 0);
        assert.equal(loggedTypes(host).at(-1), "agent.stop");
      });
    } finally {
      await disk.unmount();
    }
  },
);

rootTest(
  "[root] a break-glass marker with bad content turns break-glass on, at start and while running, with a warning",
  async () => {
    await withHost(async (host) => {
      const marker = `${host.configDir}/break_glass`;
      Deno.writeTextFileSync(marker, '{"untilMs":"x"}');
      const agent = spawn(host, ["--policy", auditPolicy(host)]);
      await using _agent = agent;
      const on = await agent.waitFor(isType("break_glass.on"), 30_000);
      assert.equal(on.problem, 'untilMs "x" is not a time in epoch milliseconds (so no TTL)');
      assert.equal(on.until, undefined);
      await agent.ready();
      assert.deepEqual(readModeWords(host.bpffs)!.breakGlass, { on: true });
      assert.match(
        agent.stderr,
        new RegExp(
          `break-glass marker ${marker}: untilMs .* is not a time in epoch milliseconds .*: break-glass is on`,
        ),
      );
      let from = agent.events.length;
      Deno.removeSync(marker);
      await agent.waitFor(isType("break_glass.off"), 2000, from);
      from = agent.events.length;
      const written = performance.now();
      Deno.writeTextFileSync(marker, "not json at all");
      const again = await agent.waitFor(isType("break_glass.on"), 2000, from);
      assert.ok(performance.now() - written < 1500);
      assert.equal(again.problem, "not JSON (a marker made by hand may be empty)");
      assert.equal(readModeWords(host.bpffs)!.breakGlass.on, true);
      await sleep(1000);
      assert.equal(agent.stderr.match(/not JSON/g)?.length, 1, "warned once, not at every poll");
      agent.kill("SIGTERM");
      assert.equal((await agent.exit()).code, 0);
    });
  },
);

rootTest(
  "[root] SIGHUP while the agent starts is served as a reload after start; SIGTERM then stops it cleanly",
  async () => {
    await withHost(async (host) => {
      const agent = spawn(host, ["--log-level", "debug", "--policy", auditPolicy(host)]);
      await using _agent = agent;
      await untilListening(agent);
      try {
        for (let i = 0; i < 3; i++) {
          agent.kill("SIGHUP");
          await sleep(20);
        }
      } catch (error) {
        const { code, stderr } = await agent.exit();
        throw new Error(`the agent died of a SIGHUP during its start (exit ${code}): ${stderr}`, {
          cause: error,
        });
      }
      // The event log is written as events happen (stdout may lag): no apply yet, the start is going on.
      assert.ok(!loggedTypes(host).includes("policy.applied"), "the signals came before start ended");
      await agent.ready();
      const reload = await agent.waitFor((event) =>
        event.type === "policy.applied" && event.reason === "reload"
      );
      assert.equal(agent.events.filter(isType("policy.applied")).length, 2, "three SIGHUPs, one reload");
      assert.ok(reload);
      agent.kill("SIGTERM");
      assert.equal((await agent.exit()).code, 0);
      assert.equal(agent.events.at(-1)?.type, "agent.stop");
    });
  },
);

rootTest("[root] SIGTERM while the agent starts stops it cleanly once it has started", async () => {
  await withHost(async (host) => {
    const agent = spawn(host, ["--log-level", "debug", "--policy", auditPolicy(host)]);
    await using _agent = agent;
    await untilListening(agent);
    agent.kill("SIGTERM");
    const { code, stderr } = await agent.exit();
    assert.equal(code, 0, stderr);
    const stop = agent.events.find(isType("agent.stop"));
    assert.equal(stop?.signal, "SIGTERM");
    assert.throws(() => Deno.statSync(`${host.stateDir}/agent.json`), Deno.errors.NotFound);
  });
});

/** Pids of the agent's policy helper processes (`main.ts __prepare`) alive now. */
function helperPids(agentPid: number): number[] {
  const pids: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (parent !== agentPid) continue;
      if (Deno.readTextFileSync(`/proc/${entry.name}/cmdline`).includes("__prepare")) {
        pids.push(Number(entry.name));
      }
    } catch {
      // Gone meanwhile.
    }
  }
  return pids;
}

rootTest(
  "[root] a pick-up of another command's apply that keeps failing backs off and reports one agent.error",
  async () => {
    await withHost(async (host) => {
      const agent = spawn(host, ["--policy", auditPolicy(host)]);
      await using _agent = agent;
      await agent.ready();
      // Another command "applied": applied.json written again, naming an entry whose stored text is garbage.
      const entry = listHistory(host.stateDir).at(-1)!;
      Deno.writeTextFileSync(`${contentDir(host.stateDir)}/${entry.contentSha256}`, "{ not: a policy");
      const from = agent.events.length;
      writeApplied(host.stateDir, { ...readApplied(host.stateDir)!, time: new Date().toISOString() });
      const helpers = new Set<number>();
      const start = performance.now();
      while (performance.now() - start < 10_000) {
        for (const pid of helperPids(agent.pid)) helpers.add(pid);
        await sleep(25);
      }
      const errors = agent.events.slice(from).filter(isType("agent.error"));
      assert.equal(errors.length, 1, JSON.stringify(errors));
      assert.match(errors[0]!.error, /^picking up another command's apply failed: /);
      assert.equal(errors[0]!.retryInMs, 1000);
      // Tries at about 0, 1, 3 and 7 s (1 s doubling): never one a second.
      assert.ok(helpers.size >= 2 && helpers.size <= 5, `${helpers.size} helpers in 10 s`);
      assert.ok(Deno.statSync(appliedFile(host.stateDir)).isFile);
      agent.kill("SIGTERM");
      assert.equal((await agent.exit()).code, 0);
    });
  },
);
