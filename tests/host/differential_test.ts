/**
 * The differential test of the decision function (issue 8 item 5): random policies are compiled and
 * applied to the kernel, and random connects, sendto's and binds performed from inside the test cgroup
 * must get from the kernel exactly the decision and the rule id that `decide()` predicts.
 *
 * Seeded and reproducible: policy i uses seed BASE_SEED + i; a failure names the seed and the case.
 * `AEGISBPF_DIFF_SEED=N` runs only seed N; `AEGISBPF_DIFF_POLICIES` and `AEGISBPF_DIFF_CASES` change how
 * many policies and how many cases each; `AEGISBPF_DIFF_REPORT=FILE` writes every disagreement to FILE.
 *
 * What this host can test: egress deny/allow rules, users entries (the worker sets the effective uid and
 * gid of every case) and bind rules, with and without `exe` and the egress default, rules by name (with
 * and without `exe`) with a learned-address table written for the seed (some entries expired), in enforce
 * mode, without a scope (files and exec need BPF-LSM). The
 * cases run in a private network namespace where only `lo` is up, routed by default through `lo`, so no
 * packet leaves the machine; the cgroup hooks decide before routing, so their EPERM is what is judged (a
 * UDP-Lite connect is judged on the datagram it sends after, which the packet hook decides). Every case runs in a process of its own, so the per-pid event rate limit never holds
 * an event back and each kernel event names its case by pid.
 */
import assert from "node:assert/strict";
import { bootTimeNs, encodeLearned, encodeLearnedKey, HOOK, type RawEvent } from "../../ffi/mod.ts";
import type { DataPlane } from "../../lib/kernel/dataplane.ts";
import { addressKey, learnedPattern } from "../../lib/kernel/learned.ts";
import { resolvePlan } from "../../lib/kernel/resolve.ts";
import { compilePolicy } from "../../lib/policy/compile.ts";
import { decide, type DecisionEvent, type LearnedAddress } from "../../lib/policy/decide.ts";
import type { RuleSetPlan } from "../../lib/policy/plan.ts";
import {
  ADDRESSES,
  Random,
  randomBindEvent,
  randomEgressEvent,
  randomPolicy,
} from "../../lib/policy/random_policy.ts";
import { drain, withPlane } from "../support/plane.ts";
import { rootTest } from "../support/privileged.ts";
import {
  buildSocketWorker,
  EPERM,
  type SocketCase,
  type SocketOutcome,
  SocketWorker,
} from "../support/sock_worker.ts";

const BASE_SEED = 0xd1ff0000;
const POLICIES = Number(Deno.env.get("AEGISBPF_DIFF_POLICIES") ?? 40);
const CASES_PER_POLICY = Number(Deno.env.get("AEGISBPF_DIFF_CASES") ?? 250);
const ONE_SEED = Deno.env.get("AEGISBPF_DIFF_SEED");
const IPPROTO = { tcp: 6, udp: 17, udplite: 136 } as const;
const JUDGED_HOOKS: readonly number[] = [HOOK.CONNECT, HOOK.SENDMSG, HOOK.BIND, HOOK.PACKET];

/**
 * A random policy this host can enforce: egress and bind rules and users entries, enforce mode; some
 * policies name programs (the worker, whose fork runs each case, and deno, which started the worker) and
 * some deny egress by default.
 */
function hostPolicy(seed: number, exes: readonly string[]): RuleSetPlan {
  // Odd seeds: programs and the default; one even seed in two: rules by name and the default, with
  // programs (rules by name with exe among them) in one of those two.
  const options = seed % 2
    ? { exes, egressDefault: true }
    : seed % 4
    ? {}
    : seed % 8
    ? { hosts: RULE_HOSTS, exes, egressDefault: true }
    : { hosts: RULE_HOSTS, egressDefault: true };
  const policy = randomPolicy(seed, options);
  policy.spec.mode = "enforce";
  // Packet sockets are refused by an LSM hook, which this host cannot load.
  delete policy.spec.network?.egress?.denyPacketSockets;
  return compilePolicy(policy);
}

type Case = { socket: SocketCase; event: DecisionEvent };

/** The names learned; their addresses from the generator's pool (see learnedFor). */
const HOSTS = ["a.test.example", "b.test.example", "c.test.example", "x.b.test.example"];
/**
 * The patterns rules by name are drawn from: names, and wildcards covering them (the kernel learns under the
 * most specific pattern, as decide() picks it: the name, else the longest wildcard).
 */
const RULE_HOSTS = [
  "a.test.example",
  "b.test.example",
  "c.test.example",
  "*.test.example",
  "*.b.test.example",
];

/**
 * The learned-address table of a policy with rules by name: each name gets up to three addresses of the
 * pool, an address one name at most (the kernel holds one per address), one name in four expired.
 */
function learnedFor(seed: number): LearnedAddress[] {
  const random = new Random(seed ^ 0x1ea2);
  const addresses = random.subset(ADDRESSES.filter((addr) => !addr.startsWith("::ffff:")), 0, 9);
  return addresses.map((addr, i) => ({
    addr,
    host: HOSTS[i % HOSTS.length]!,
    ...i % HOSTS.length === 0 && random.chance(0.25) && { expired: true },
  }));
}

/** Writes `learned` into the kernel's table (expired entries with an expiry already past). */
function writeLearned(plane: DataPlane, plan: RuleSetPlan, learned: readonly LearnedAddress[]): void {
  const map = plane.map("learned");
  for (const key of map.keys()) map.delete(key);
  const now = bootTimeNs();
  for (const entry of learned) {
    const pattern = learnedPattern(plan.egressHosts ?? [], entry.host);
    if (!pattern) continue;
    // A second past: the kernel judges expiry by a clock read this tick (boot_ns_this_tick), up to a tick behind.
    const expiresBootNs = entry.expired ? now - 1_000_000_000n : now + 3_600_000_000_000n;
    map.update(
      encodeLearnedKey(addressKey(String(entry.addr))),
      encodeLearned({ expiresBootNs, ...pattern }),
    );
  }
}

/** A case from the generator's pools: connect or sendto (IPv4, IPv6, `::ffff:` mapped), or bind. */
function randomCase(random: Random): Case {
  if (random.chance(0.2)) {
    const bind = randomBindEvent(random);
    const addr = random.chance(0.5) ? "0.0.0.0" : "::";
    return {
      socket: { op: "bind", protocol: bind.protocol, addr, port: bind.port, uid: 0, gid: 0 },
      event: bind,
    };
  }
  let egress = randomEgressEvent(random);
  // ICMP needs ping sockets, which a fresh namespace allows no group: draw again.
  while (egress.protocol === "icmp") egress = randomEgressEvent(random);
  const protocol = egress.protocol as "tcp" | "udp" | "udplite";
  // IPv4 also in its IPv6 forms, through an IPv6 socket: mapped, NAT64 (the well-known prefix every
  // compiled policy lists) and IPv4-compatible.
  const addr = !egress.addr.includes(":") && random.chance(0.45)
    ? `${random.pick(["::ffff:", "64:ff9b::", "::"])}${egress.addr}`
    : egress.addr;
  // A UDP-Lite "connect" connects and sends: its connect never reaches the connect hooks, so the packet
  // hook (cgroup_skb/egress) decides its datagram.
  const op = protocol === "tcp" || random.chance(0.4) ? "connect" : "sendto";
  return {
    socket: { op, protocol, addr, port: egress.port, uid: egress.uid, gid: egress.gid },
    event: { ...egress, addr, protocol },
  };
}

function casesFor(seed: number): Case[] {
  const random = new Random(seed ^ 0x5eed5eed);
  return Array.from({ length: CASES_PER_POLICY }, () => randomCase(random));
}

function describe(seed: number, index: number, c: Case, detail: string): string {
  return `seed ${seed} (rerun: AEGISBPF_DIFF_SEED=${seed}) case ${index}: ` +
    `${JSON.stringify(c.socket)}: ${detail}`;
}

/** Compares one case's syscall result and kernel events with the prediction; a message when they differ. */
function judge(
  plan: RuleSetPlan,
  c: Case,
  outcome: SocketOutcome,
  events: readonly RawEvent[],
  learned: readonly LearnedAddress[],
): string | undefined {
  const predicted = decide(plan, c.event, { mode: "enforce", learned });
  if (outcome.stage !== "op") return `the case could not run: ${JSON.stringify(outcome)}`;
  const denied = outcome.errno === EPERM;
  if (denied !== (predicted.decision === "deny")) {
    return `kernel ${denied ? "denied (EPERM)" : `allowed (errno ${outcome.errno})`}, decide() ` +
      `${JSON.stringify(predicted)}; kernel events ${JSON.stringify(events.map(summary))}`;
  }
  if (!denied) {
    return events.length === 0
      ? undefined
      : `allowed but the kernel reported ${JSON.stringify(events.map(summary))}`;
  }
  if (events.length !== 1) return `denied with ${events.length} kernel events, expected 1`;
  const [event] = events as [RawEvent];
  if (event.ruleId !== predicted.ruleId) {
    return `kernel rule id ${event.ruleId} (${plan.rules[event.ruleId]?.id}), decide() ${predicted.ruleId} ` +
      `(${predicted.ruleName})`;
  }
  const hook = c.socket.op === "bind"
    ? HOOK.BIND
    : c.socket.op === "sendto"
    ? HOOK.SENDMSG
    : c.socket.protocol !== "udplite"
    ? HOOK.CONNECT
    // An IPv6 socket connected to a mapped peer sends through the IPv4 path: the sendmsg4 hook decides.
    : c.socket.addr.startsWith("::ffff:")
    ? HOOK.SENDMSG
    : HOOK.PACKET;
  if (event.hook !== hook) return `kernel event from hook ${event.hook}, expected ${hook}`;
  if (event.protocol !== IPPROTO[c.socket.protocol]) return `kernel event protocol ${event.protocol}`;
  const port = c.socket.op === "bind" ? event.sport : event.dport;
  if (port !== c.socket.port) return `kernel event port ${port}, expected ${c.socket.port}`;
  if (c.socket.op !== "bind" && (event.uid !== c.socket.uid || event.gid !== c.socket.gid)) {
    return `kernel event uid/gid ${event.uid}/${event.gid}`;
  }
  return undefined;
}

function summary(event: RawEvent) {
  return { hook: event.hook, ruleId: event.ruleId, dport: event.dport, sport: event.sport, pid: event.pid };
}

rootTest("[root] differential: random policies and sockets get decide()'s decision and rule id", async () => {
  const seeds = ONE_SEED !== undefined
    ? [Number(ONE_SEED)]
    : Array.from({ length: POLICIES }, (_, i) => (BASE_SEED + i) >>> 0);
  const buildDir = await Deno.makeTempDir({ prefix: "aegisbpf-diff-" });
  const failures: string[] = [];
  let cases = 0;
  let denied = 0;
  const started = performance.now();
  try {
    const binary = await buildSocketWorker(buildDir);
    await withPlane({ areas: ["egress", "bind"] }, async ({ plane, cgroup }) => {
      for (const seed of seeds) {
        const plan = hostPolicy(seed, [binary, Deno.execPath()]);
        const learned = plan.egressHosts ? learnedFor(seed) : [];
        writeLearned(plane, plan, learned);
        await plane.apply(resolvePlan(plan));
        drain(plane);
        const batch = casesFor(seed);
        const worker = await SocketWorker.start(binary, cgroup.path);
        let outcomes: SocketOutcome[];
        try {
          outcomes = await worker.run(batch.map((c) => c.socket));
        } finally {
          const stderr = await worker.close();
          if (stderr.trim()) failures.push(`seed ${seed}: socket worker: ${stderr.trim()}`);
        }
        const byPid = new Map<number, RawEvent[]>();
        for (const event of drain(plane)) {
          if (JUDGED_HOOKS.includes(event.hook)) {
            byPid.set(event.pid, [...byPid.get(event.pid) ?? [], event]);
          }
        }
        batch.forEach((c, index) => {
          // Each case runs in a fork of the worker, which deno started.
          if (c.event.area === "egress" || c.event.area === "bind") {
            c.event = { ...c.event, exe: binary, ancestors: [binary, Deno.execPath()] };
          }
          const outcome = outcomes[index]!;
          const mismatch = judge(plan, c, outcome, byPid.get(outcome.pid) ?? [], learned);
          if (mismatch) failures.push(describe(seed, index, c, mismatch));
          if (outcome.stage === "op" && outcome.errno === EPERM) denied++;
        });
        cases += batch.length;
      }
      const { eventsLost } = plane.counters();
      assert.equal(eventsLost, 0n, "no event may be lost, or rule ids could not be compared");
    });
  } finally {
    await Deno.remove(buildDir, { recursive: true });
  }
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  console.log(
    `differential: ${cases} cases (${denied} denied) over ${seeds.length} policies ` +
      `(seeds ${seeds[0]}..${seeds.at(-1)}) in ${seconds} s; ${failures.length} disagreements`,
  );
  const report = Deno.env.get("AEGISBPF_DIFF_REPORT");
  if (report) await Deno.writeTextFile(report, failures.map((line) => `${line}\n`).join(""));
  assert.deepEqual(failures.slice(0, 20), [], `${failures.length} disagreements between kernel and decide()`);
});
