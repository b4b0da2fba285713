import assert from "node:assert/strict";
import { bootTimeNs, BpfError, lockDirectory } from "../../ffi/mod.ts";
import { DataPlane } from "../../lib/kernel/dataplane.ts";
import { CapacityError, type ResolvedRuleSet, ruleSetEntries } from "../../lib/kernel/entries.ts";
import { CGROUP_PROGRAMS, EGRESS_LSM_PROGRAMS, IDENTITY_PROGRAMS, probeLsm } from "../../lib/kernel/load.ts";
import type { NetRule, PortRule, RuleInfo } from "../../lib/policy/plan.ts";
import { TestBpffs } from "../support/bpffs.ts";
import { TestCgroup } from "../support/cgroup.ts";
import { startConnectLoop } from "../support/loops.ts";
import { drain, listen, ruleSet, withPlane } from "../support/plane.ts";
import { rootTest } from "../support/privileged.ts";
import { ipv4Rule } from "../support/slice.ts";

const AREAS = ["egress", "bind"] as const;
const DENIED = "127.0.0.2";
const CONNECT_HOOK = 2;
const DENY = 0;
const AUDIT = 1;

function rules(...ids: string[]): RuleInfo[] {
  return [
    { id: "default", area: "ingress", action: "deny" },
    ...ids.map((id) => ({ id, area: "egress" as const, action: "deny" as const })),
  ];
}

/** `count` port-less deny rules for 10.x.y.0/24 under one rule id: weight for a rule set. */
function fillerRules(count: number, ruleId: number): NetRule[] {
  return Array.from({ length: count }, (_, i) => ipv4Rule(`10.${i >> 8}.${i & 0xff}.0/24`, ruleId));
}

/** Entries each rule map should hold when only `set` is live in generation `gen`. */
function expectedFill(set: ResolvedRuleSet): Record<string, number> {
  const entries = ruleSetEntries(set);
  return {
    rules: entries.rules.count,
    net_rules: entries.net_rules.count,
    net_exact: entries.net_exact.count,
    ingress_session: 0,
    learned: 0,
  };
}

function fill(plane: DataPlane): Record<string, number> {
  return Object.fromEntries(plane.mapFill().map(({ map, entries }) => [map, entries]));
}

rootTest("[root] a generation flip under a connect loop never lets one through", async () => {
  await withPlane({ areas: AREAS }, async ({ plane, cgroup, server }) => {
    // Two shapes of "127.0.0.2 is denied": a port-less /32 deny among /24 fillers, and a /32 port
    // deny under a /8 allow that would let it through if the deny were missing for a moment.
    const setA = ruleSet({
      mode: "enforce",
      rules: rules("deny-a", "fillers"),
      egress: [ipv4Rule(`${DENIED}/32`, 1), ...fillerRules(300, 2)],
    });
    const setB = ruleSet({
      mode: "enforce",
      rules: rules("allow-loopback", "deny-b"),
      egress: [
        ipv4Rule("127.0.0.0/8", 1, { action: "allow" }),
        ipv4Rule(`${DENIED}/32`, 2, { port: server.port, protocol: "tcp" }),
      ],
    });
    await plane.apply(setA);
    const loop = await startConnectLoop(cgroup, DENIED, server.port);
    const generations: number[] = [plane.config().activeGen];
    let tally;
    try {
      for (let flip = 0; flip < 24; flip++) {
        generations.push(await plane.apply(flip % 2 === 0 ? setB : setA));
      }
    } finally {
      tally = await loop.stop();
    }
    assert.equal(tally.leaks, 0, `${tally.leaks} of ${tally.attempts} connects got through`);
    assert.ok(tally.attempts > 100, `the loop ran: ${tally.attempts} attempts`);
    generations.forEach((gen, i) => assert.equal(gen, (generations[0]! + i) % 2, `flip ${i}`));
    const { connect } = plane.counters().decisions;
    assert.equal(connect.deny, BigInt(tally.attempts), "every attempt was decided deny");
    assert.equal(connect.audit, 0n);
  });
});

rootTest("[root] a failed apply leaves the live rules untouched", async () => {
  await withPlane({ areas: AREAS }, async ({ plane, cgroup, server }) => {
    const live = ruleSet({
      mode: "enforce",
      rules: rules("loopback2", "bind"),
      egress: [ipv4Rule(`${DENIED}/32`, 1)],
      bind: [{ ruleId: 2, port: 1, protocol: "tcp" }],
    });
    const gen = await plane.apply(live);
    // Its rules are written and installed in the inactive slots before the interface fails to attach:
    // the failure must take them back out, and never flip.
    const failing: ResolvedRuleSet = {
      ...ruleSet({ mode: "enforce", rules: rules("loopback3"), egress: [ipv4Rule("127.0.0.3/32", 1)] }),
      interfaces: [{ ifindex: 0x7fffffff, name: "no-such-interface", defaultDrop: true, ruleId: 0 }],
    };
    await assert.rejects(plane.apply(failing), BpfError);
    assert.equal(plane.config().activeGen, gen, "no flip");
    assert.equal(await cgroup.connect(DENIED, server.port), "EPERM", "the old rule still denies");
    assert.equal(await cgroup.connect("127.0.0.3", server.port), "connected", "the new rule never went live");
    assert.deepEqual(fill(plane), expectedFill(live), "the live generation is the old one");
    assert.deepEqual(plane.slots(), { [gen]: true, [gen ^ 1]: false }, "the inactive slots are empty again");
  });
});

rootTest(
  "[root] a rule set of 60% and of 100% of a map's capacity applies three times in a row",
  async () => {
    // Bind rules live in the `rules` map: every (port, protocol) pair, TCP and UDP, is 131,070 entries.
    const capacity = 131_070;
    await withPlane({ areas: AREAS, capacity: { rules: capacity } }, async ({ plane, cgroup }) => {
      const bind = (count: number): PortRule[] =>
        Array.from({ length: count }, (_, i) => ({
          ruleId: 1,
          port: 1 + (i >> 1),
          protocol: i % 2 === 0 ? "tcp" : "udp",
        }));
      for (const count of [capacity * 0.6, capacity]) {
        const set = ruleSet({ mode: "enforce", rules: rules("bind-all"), bind: bind(count) });
        for (let round = 0; round < 3; round++) {
          await plane.apply(set);
          assert.equal(plane.activeGenInfo().rulesEntries, count, `${count} entries, round ${round + 1}`);
        }
      }
      assert.equal(await cgroup.probe("bind", "tcp", "1000"), "EPERM", "bind to a denied port is refused");
      // One entry more than the map holds: every bind pair plus one file rule.
      const over = {
        ...ruleSet({ mode: "enforce", rules: rules("bind-all"), bind: bind(capacity) }),
        files: [{ dev: 1, ino: 1n, ruleId: 1 }],
      };
      await assert.rejects(plane.apply(over), (error) => {
        assert.ok(error instanceof CapacityError);
        assert.match(error.message, /131071 entries in map rules, which holds at most 131070/);
        return true;
      });
      assert.equal(plane.activeGenInfo().rulesEntries, capacity, "the live set is unchanged");
    });
  },
);

rootTest(
  "[root] an agent that exits leaves enforcement in place and a new one adopts it without a gap",
  async () => {
    const server = listen();
    const cgroup = TestCgroup.create();
    const bpffs = await TestBpffs.mount();
    try {
      const agentA = agent("apply", bpffs.path, cgroup.path).spawn();
      let applied;
      let statusA;
      let adopted;
      let tally;
      try {
        applied = await firstLine(agentA.stdout);
        assert.match(applied, /^applied [01]$/);
        const loop = await startConnectLoop(cgroup, DENIED, server.port);
        try {
          await agentA.stdin.close();
          statusA = await agentA.status;
          adopted = await agent("adopt", bpffs.path, cgroup.path).output();
        } finally {
          tally = await loop.stop();
        }
      } finally {
        if (!statusA) {
          agentA.kill();
          await agentA.status;
        }
      }
      assert.equal(tally.leaks, 0, `${tally.leaks} of ${tally.attempts} connects got through`);
      assert.ok(tally.attempts > 0, "the loop ran");
      assert.equal(statusA.code, 0, "agent A failed (its stderr is above)");
      assert.equal(adopted.code, 0, "agent B failed (its stderr is above)");
      assert.equal(new TextDecoder().decode(adopted.stdout).trim(), applied.replace("applied", "adopted"));
      assert.deepEqual(
        [...Deno.readDirSync(`${bpffs.path}/aegisbpf/links`)].map((entry) => entry.name).sort(),
        [
          ...CGROUP_PROGRAMS.egress,
          ...(probeLsm().ok ? EGRESS_LSM_PROGRAMS.lsm : EGRESS_LSM_PROGRAMS.fallback),
          ...(probeLsm().ok ? IDENTITY_PROGRAMS.lsm : IDENTITY_PROGRAMS.fallback),
        ].sort(),
        "the links agent A pinned are still there",
      );

      DataPlane.detach(bpffs.path);
      assert.equal(await cgroup.connect(DENIED, server.port), "connected");
      assert.throws(() => Deno.statSync(`${bpffs.path}/aegisbpf`), Deno.errors.NotFound);
    } finally {
      DataPlane.detach(bpffs.path);
      await bpffs.unmount();
      cgroup.remove();
      await server.stop();
    }
  },
);

rootTest("[root] break-glass and forced audit switch the mode at once", async () => {
  await withPlane({ areas: AREAS }, async ({ plane, cgroup, server }) => {
    await plane.apply(
      ruleSet({ mode: "enforce", rules: rules("loopback2"), egress: [ipv4Rule(`${DENIED}/32`, 1)] }),
    );
    const expectMode = async (mode: "enforce" | "audit", step: string) => {
      const result = await cgroup.connect(DENIED, server.port);
      const events = drain(plane);
      assert.equal(result, mode === "enforce" ? "EPERM" : "connected", step);
      assert.equal(events.length, 1, `${step}: one event`);
      assert.equal(events[0]?.hook, CONNECT_HOOK, step);
      assert.equal(events[0]?.decision, mode === "enforce" ? DENY : AUDIT, `${step}: decision`);
      assert.equal(events[0]?.mode, mode === "enforce" ? 1 : 0, `${step}: mode`);
    };
    await expectMode("enforce", "policy");
    plane.setConfig({ breakGlass: true });
    await expectMode("audit", "break-glass on");
    plane.setConfig({ breakGlass: false });
    await expectMode("enforce", "break-glass off");
    plane.setConfig({ forceAudit: true });
    await expectMode("audit", "forced audit on");
    plane.setConfig({ forceAudit: false });
    await expectMode("enforce", "forced audit off");
    plane.setConfig({ deadmanDeadlineNs: bootTimeNs() - 1n });
    await expectMode("audit", "deadman expired");
    plane.setConfig({ deadmanDeadlineNs: bootTimeNs() + 60_000_000_000n });
    await expectMode("enforce", "deadman refreshed");
  });
});

rootTest("[root] applies are serialized by a lock on the pin directory, across processes", async () => {
  await withPlane({ areas: AREAS }, async ({ plane }) => {
    // Another process's apply holds this lock while it writes, flips and clears.
    const held = await lockDirectory(plane.pinDir);
    let done = false;
    const applying = plane.apply(
      ruleSet({ mode: "enforce", rules: rules("a"), egress: [ipv4Rule(`${DENIED}/32`, 1)] }),
    )
      .then((gen) => {
        done = true;
        return gen;
      });
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(done, false, "apply waits for the lock");
    assert.equal(plane.config().activeGen, 0, "nothing flipped while the lock was held");
    held.release();
    assert.equal(await applying, 1);
  });
});

rootTest("[root] detach while an agent still holds its links leaves them deciding nothing", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-detach-" });
  try {
    const secret = `${dir}/secret`;
    Deno.writeTextFileSync(secret, "s");
    // A ring buffer size other than the object's default: pins this object could not load as they are.
    await withPlane({ areas: ["file"], lsm: "off", ringBufferBytes: 1 << 16 }, async ({ plane, bpffs }) => {
      await plane.apply(ruleSet({
        mode: "enforce",
        rules: [...rules(), { id: "secret", area: "file", action: "deny" }],
        files: [{ ruleId: 1, path: secret }],
      }));
      Deno.readTextFileSync(secret);
      assert.equal(plane.counters().decisions.file_open.audit, 1n, "the held tracepoint audits the open");
      drain(plane);

      // Tracepoint (and LSM) links cannot be detached while this plane holds them.
      DataPlane.detach(bpffs.path);
      Deno.readTextFileSync(secret);
      assert.equal(plane.counters().decisions.file_open.audit, 1n, "no decision after detach");
      assert.deepEqual(drain(plane), [], "no event after detach");
      assert.equal(plane.config().forceAudit, true);
    });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

rootTest("[root] a closed plane refuses to touch the maps libbpf freed with it", async () => {
  await withPlane({ areas: AREAS }, ({ plane }) => {
    const cachedMap = plane.map("counters");
    plane.close();
    assert.throws(() => plane.config(), /BPF object is closed/);
    assert.throws(() => cachedMap.lookup(new Uint8Array(4)), /BPF object is closed: map counters is gone/);
    assert.throws(() => plane.counters(), /BPF object is closed/);
  });
});

/** tests/support/agent_process.ts as its own process; `apply` keeps running until its stdin closes. */
function agent(command: "apply" | "adopt", bpffs: string, cgroupPath: string): Deno.Command {
  const script = new URL("../support/agent_process.ts", import.meta.url).pathname;
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "--quiet", script, command, bpffs, cgroupPath],
    stdin: command === "apply" ? "piped" : "null",
    stdout: "piped",
    stderr: "inherit",
  });
}

/** The first line a child prints; the rest of its output is left unread. */
async function firstLine(stream: ReadableStream<Uint8Array>): Promise<string> {
  const decoder = new TextDecoder();
  let text = "";
  for await (const chunk of stream) {
    text += decoder.decode(chunk, { stream: true });
    const newline = text.indexOf("\n");
    if (newline >= 0) return text.slice(0, newline);
  }
  throw new Error(`Agent exited before printing a line: ${JSON.stringify(text)}`);
}

rootTest(
  "[root] an apply drops the old generation's inner maps from every rule map, and keeps the new ones",
  async () => {
    await withPlane({ areas: AREAS }, async ({ plane, cgroup, server }) => {
      const slot = (map: string, gen: number) =>
        plane.map(map).lookup(new Uint8Array(new Uint32Array([gen]).buffer));
      const set = (address: string) =>
        ruleSet({
          mode: "enforce",
          rules: rules("deny", "bind"),
          // A whole address (the net_exact hash) and a network (the net_rules trie).
          egress: [ipv4Rule(`${address}/32`, 1), ipv4Rule("10.9.8.0/24", 1)],
          bind: [{ ruleId: 2, port: 1, protocol: "tcp" }],
        });
      const first = await plane.apply(set(DENIED));
      const second = await plane.apply(set("127.0.0.3"));
      assert.equal(second, first ^ 1);
      for (const map of ["rules", "net_rules", "net_exact"]) {
        assert.ok(slot(map, second), `${map}: the live generation's inner map is installed`);
        assert.equal(slot(map, first), undefined, `${map}: the old one is dropped`);
      }
      assert.equal(await cgroup.connect("127.0.0.3", server.port), "EPERM");
      assert.equal(await cgroup.connect(DENIED, server.port), "connected");
    });
  },
);
