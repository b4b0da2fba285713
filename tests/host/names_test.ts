/**
 * Egress rules by host name on the host's cgroup hooks (bpf/name_guard.bpf.h): the names of a policy are
 * resolved at apply with the test's own DNS server and their addresses written into the learned-address
 * table, which the connect hooks consult. Loopback addresses stand for the zone's hosts: a deny of
 * 127.0.0.0/8 makes them refused unless a name says otherwise.
 */
import assert from "node:assert/strict";
import { DECISION, EVENT, HOOK } from "../../ffi/mod.ts";
import type { DataPlane } from "../../lib/kernel/dataplane.ts";
import { resolvePlan } from "../../lib/kernel/resolve.ts";
import { resolvePlanNames } from "../../lib/ops/learn_names.ts";
import { compilePolicy } from "../../lib/policy/compile.ts";
import { parsePolicy } from "../../lib/policy/parse.ts";
import type { TestCgroup } from "../support/cgroup.ts";
import { type DnsServer, startDnsServer } from "../support/dns_server.ts";
import { drain, withPlane } from "../support/plane.ts";
import { rootTest } from "../support/privileged.ts";
import { checkHealth } from "../../lib/report/health.ts";

const ZONE = {
  "api.test.example": [{ type: "A" as const, addr: "127.0.0.5", ttl: 1 }],
  "alias.test.example": [{ type: "CNAME" as const, target: "edge.cdn.example", ttl: 300 }],
  "edge.cdn.example": [{ type: "A" as const, addr: "127.0.0.6", ttl: 300 }],
  "evil.test.example": [{ type: "A" as const, addr: "127.0.0.8", ttl: 300 }],
};

/** Resolves the policy's names with `dns`, learns them, and applies the policy: what `policy apply` does. */
async function apply(plane: DataPlane, dns: DnsServer, mode: "enforce" | "audit", egress: string) {
  const text = `apiVersion: aegisbpf.io/v1\nkind: Policy\nmetadata: { name: names, version: 1 }\n` +
    `spec:\n  mode: ${mode}\n  network:\n    egress:\n${egress}`;
  const plan = compilePolicy(parsePolicy(text, "names.yaml"));
  const warnings: string[] = [];
  const answers = await resolvePlanNames(plan, {
    servers: [{ addr: dns.addr, port: dns.port }],
    warn: (message) => warnings.push(message),
  });
  plane.learn(plan.egressHosts ?? [], answers, plan.nameTtlFloor);
  await plane.apply(resolvePlan(plan));
  return { plan, warnings };
}

const PYTHON = Deno.realPathSync("/usr/bin/python3");

/** A UDP DNS query for `name` to 127.0.0.1:53 (sendto, then through a connected socket): "sent" or the error. */
const query = (name: string) =>
  `'${PYTHON}' -c "
import socket, struct
q = struct.pack('>HHHHHH', 7, 0x0100, 1, 0, 0, 0) + b''.join(bytes([len(l)]) + l.encode() for l in '${name}'.split('.')) + b'\\x00\\x00\\x01\\x00\\x01'
out = []
for connected in (False, True):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if connected:
            s.connect(('127.0.0.1', 53)); s.send(q)
        else:
            s.sendto(q, ('127.0.0.1', 53))
        out.append('sent')
    except PermissionError:
        out.append('EPERM')
print(' '.join(out))
"`;

for (const mode of ["enforce", "audit"] as const) {
  rootTest(
    `[root] names (${mode}): an allowed name's address connects over a wider deny, a CNAME chain is the name's, an address never answered is not, the entry expires`,
    async () => {
      const dns = await startDnsServer(ZONE);
      try {
        await withPlane({ areas: ["egress"] }, async ({ plane, cgroup, server }) => {
          const port = server.port;
          const { warnings } = await apply(
            plane,
            dns,
            mode,
            `      nameTtlFloor: 1\n      deny: [{ id: lo8, cidr: 127.0.0.0/8 }]\n      allow:\n` +
              `        - { id: api, host: api.test.example, port: ${port} }\n` +
              `        - { id: alias, host: alias.test.example }\n        - { id: gone, host: gone.test.example }\n`,
          );
          assert.deepEqual(warnings, [
            "gone.test.example has no address (A or AAAA) now: its rules decide nothing",
          ]);
          const refused = mode === "enforce" ? /Operation not permitted|EPERM/ : /^connected$/;
          assert.equal(await cgroup.connect("127.0.0.5", port), "connected", "the name's address");
          assert.equal(await cgroup.connect("127.0.0.6", port), "connected", "the end of the CNAME chain");
          drain(plane);
          assert.match(await cgroup.connect("127.0.0.7", port), refused, "never answered: the /8 decides");
          const events = drain(plane);
          assert.deepEqual(events.map((e) => [e.hook, e.ruleId, e.decision]), [[
            HOOK.CONNECT,
            1,
            mode === "enforce" ? DECISION.DENY : DECISION.AUDIT,
          ]]);
          // A burst right after the apply: every connect is decided by the learned address.
          const loop = await cgroup.runBash(
            `ok=0; for i in $(seq 1 200); do exec 3<>/dev/tcp/127.0.0.5/${port} && ok=$((ok+1)); exec 3<&-; done; echo $ok`,
          );
          assert.equal(loop.stdout.trim(), "200");
          const entries = plane.learnedEntries();
          assert.deepEqual(
            entries.map((e) => `${[...e.addr].join(".")} ${e.expired}`).toSorted(),
            ["127.0.0.5 false", "127.0.0.6 false"],
          );
          assert.ok(plane.mapFill().some((fill) => fill.map === "learned" && fill.entries === 2));
          // TTL 1 with a floor of 1 s: once expired, the entry decides nothing and the /8 denies again.
          await new Promise((resolve) => setTimeout(resolve, 2500));
          drain(plane);
          assert.match(await cgroup.connect("127.0.0.5", port), refused, "expired");
          assert.deepEqual(drain(plane).map((e) => e.ruleId), [1]);
          assert.equal(await cgroup.connect("127.0.0.6", port), "connected", "a 300 s answer holds");
        });
      } finally {
        await dns.stop();
      }
    },
  );

  rootTest(
    `[root] names (${mode}): a deny by name refuses its address and its DNS queries, with events naming the rule`,
    async () => {
      const dns = await startDnsServer(ZONE);
      try {
        await withPlane({ areas: ["egress"] }, async ({ plane, cgroup, server }) => {
          const { plan } = await apply(
            plane,
            dns,
            mode,
            `      deny: [{ id: evil, host: evil.test.example }]\n`,
          );
          const refused = mode === "enforce" ? /Operation not permitted|EPERM/ : /^connected$/;
          drain(plane);
          assert.match(await cgroup.connect("127.0.0.8", server.port), refused);
          const events = drain(plane);
          assert.deepEqual(events.map((e) => [e.hook, e.ruleId]), [[HOOK.CONNECT, 1]]);
          assert.equal(plan.rules[1]?.host, "evil.test.example", "the rule the event names is the name's");
          assert.equal(await cgroup.connect("127.0.0.9", server.port), "connected", "another address");
          // The name's DNS queries too: sent to a resolver (sendto and a connected socket), refused in enforce.
          drain(plane);
          const sent = await cgroup.runBash(query("Evil.Test.Example"));
          assert.equal(sent.stdout.trim(), mode === "enforce" ? "EPERM EPERM" : "sent sent", sent.stderr);
          const queries = drain(plane);
          assert.deepEqual(queries.map((e) => [e.hook, e.ruleId, e.dport, e.protocol]), [
            [HOOK.PACKET, 1, 53, 17],
            [HOOK.PACKET, 1, 53, 17],
          ]);
          const other = await cgroup.runBash(query("good.test.example"));
          assert.equal(other.stdout.trim(), "sent sent", "another name's query");
          assert.deepEqual(drain(plane), []);
        });
      } finally {
        await dns.stop();
      }
    },
  );
}

rootTest(
  "[root] names: a full learned-address table evicts its least recently used address, and health says it is full",
  async () => {
    const dns = await startDnsServer(ZONE);
    const stateDir = Deno.makeTempDirSync({ prefix: "aegisbpf-names-" });
    try {
      await withPlane({ areas: ["egress"] }, async ({ plane, cgroup, server, bpffs }) => {
        const port = server.port;
        const { plan } = await apply(
          plane,
          dns,
          "enforce",
          `      deny: [{ id: lo8, cidr: 127.0.0.0/8 }]\n      allow: [{ id: api, host: api.test.example }]\n`,
        );
        assert.equal(await cgroup.connect("127.0.0.5", port), "connected");
        // An address learned and never used since: the least recently used of all once the fillers come.
        plane.learn(plan.egressHosts ?? [], [{ name: "api.test.example", addr: "127.0.0.7", ttl: 300 }]);
        const health = () =>
          checkHealth({ bpffs: bpffs.path, stateDir, configDir: stateDir }, {
            requireEnforce: false,
            connections: false,
            staleRules: false,
          });
        const noAnswers = { parsed: 0, addresses: 0, malformed: 0, unsolicited: 0, foreign: 0 };
        assert.deepEqual(health().names, { learned: 2, capacity: 65536, evictions: 0, answers: noAnswers });
        // Addresses of 10.0.0.0/8 for the same name, twice what the table holds: the oldest goes first. The
        // kernel's LRU is approximate: a new entry waits in a list of the CPU that wrote it until that CPU
        // writes again, out of the eviction's reach, and each CPU keeps free slots of its own. So the fillers
        // are written from every CPU in turn (this thread pinned to each), four table's worth in all (with
        // two, 127.0.0.7 survived about one run in six).
        const fillers = Array.from({ length: FILLERS }, (_, i) => ({
          name: "api.test.example",
          addr: `10.${i >> 16}.${(i >> 8) & 0xff}.${i & 0xff}`,
          ttl: 300,
        }));
        await onEachCpu(fillers, (chunk) => plane.learn(plan.egressHosts ?? [], chunk));
        const report = health();
        assert.ok(
          report.names !== null && report.names.learned >= 65536 * 0.98,
          JSON.stringify(report.names),
        );
        // Every address was new: what the table does not hold now, its LRU evicted.
        assert.equal(report.names?.evictions, FILLERS + 2 - (report.names?.learned ?? 0));
        assert.ok(
          report.warnings.some((w) => w.includes("learned-address table is full")),
          report.warnings.join("; "),
        );
        assert.match(await cgroup.connect("127.0.0.7", port), /Operation not permitted|EPERM/, "evicted");
      });
    } finally {
      await dns.stop();
      Deno.removeSync(stateDir, { recursive: true });
    }
  },
);

/** Addresses written past the one that must be evicted: four times what the learned-address table holds. */
const FILLERS = 4 * 65_536;

/**
 * Calls `write` with a share of `items` on each CPU in turn, the thread that runs this test (the one that makes
 * the bpf calls) pinned to it with taskset, then gives the thread its CPUs back. `deno test` runs a test module
 * on a thread of its own, not the process's main thread: pinning `Deno.pid` would pin a thread that makes no
 * bpf call and leave this one free to move (it did, and 127.0.0.7 survived a CI run).
 */
async function onEachCpu<T>(items: T[], write: (chunk: T[]) => void): Promise<void> {
  const taskset = async (...args: string[]) => {
    const result = await new Deno.Command("taskset", { args, stdout: "piped", stderr: "piped" }).output();
    const text = new TextDecoder().decode(result.stdout);
    assert.equal(result.code, 0, new TextDecoder().decode(result.stderr));
    return text;
  };
  const tid = currentThreadId();
  const list = /list: (\S+)/.exec(await taskset("-pc", tid))?.[1];
  assert.ok(list, "taskset printed no CPU list");
  const cpus = list.split(",").flatMap((part) => {
    const [first, last = first] = part.split("-").map(Number);
    return Array.from({ length: last! - first! + 1 }, (_, i) => first! + i);
  });
  try {
    const share = Math.ceil(items.length / cpus.length);
    for (const [index, cpu] of cpus.entries()) {
      await taskset("-pc", String(cpu), tid);
      assert.equal(currentCpu(), cpu, `this thread (${tid}) runs on CPU ${currentCpu()}, pinned to ${cpu}`);
      write(items.slice(index * share, (index + 1) * share));
      assert.equal(currentCpu(), cpu, `this thread (${tid}) left CPU ${cpu} while it was pinned there`);
    }
  } finally {
    await taskset("-pc", list, tid);
  }
}

/** The id of the thread that calls it (/proc/thread-self is PID/task/TID). */
function currentThreadId(): string {
  const tid = /\/task\/(\d+)$/.exec(Deno.readLinkSync("/proc/thread-self"))?.[1];
  assert.ok(tid, "/proc/thread-self names no thread");
  return tid;
}

/** The CPU the calling thread runs on: field 39 of /proc/thread-self/stat (after the parenthesised name). */
function currentCpu(): number {
  const stat = Deno.readTextFileSync("/proc/thread-self/stat");
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[36]);
}

/** What a connect from `script` (run by bash inside the cgroup) met: "connected", "EPERM" or its error. */
async function outcome(cgroup: TestCgroup, script: string): Promise<string> {
  const result = await cgroup.runBash(script);
  const text = result.stdout + result.stderr;
  if (/Operation not permitted/.test(text)) return "EPERM";
  if (/connected|Empty reply from server|Recv failure/.test(text)) return "connected";
  return text.trim() || `exit ${result.code}`;
}

for (const mode of ["enforce", "audit"] as const) {
  rootTest(
    `[root] names with exe (${mode}): an allow by name for one program under egress default deny, a copy refused, children: true follows sh -c, a deny by name for one program, a name without exe beside them`,
    async () => {
      const dns = await startDnsServer(ZONE);
      const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-name-exe-" });
      try {
        // Program A and its copy B (another inode: another program), both bash, which connects by itself.
        const a = `${dir}/a-bash`;
        const b = `${dir}/b-bash`;
        for (const path of [a, b]) {
          Deno.copyFileSync("/usr/bin/bash", path);
          Deno.chmodSync(path, 0o755);
        }
        await withPlane({ areas: ["egress"] }, async ({ plane, cgroup, server }) => {
          const port = server.port;
          const tcp = (addr: string) => `exec 3<>/dev/tcp/${addr}/${port} && echo connected`;
          const as = (exe: string, addr: string) => `'${exe}' -c '${tcp(addr)}'`;
          // A child of A through sh -c: curl, started by sh, started by A (the "; true"s keep bash and sh from
          // exec-ing their last command, which would make them that command instead of its parent).
          const child = (addr: string) =>
            `'${a}' -c "sh -c 'curl -sSv --max-time 5 http://${addr}:${port}/ -o /dev/null; true'; true"`;
          const refused = mode === "enforce" ? "EPERM" : "connected";
          const decision = mode === "enforce" ? DECISION.DENY : DECISION.AUDIT;
          const allowlist = (children: string) =>
            // Loopback stands for the zone's hosts: the default passes it, so a deny of 127.0.0.0/8 refuses it.
            `      default: deny\n      deny: [{ id: lo8, cidr: 127.0.0.0/8 }]\n      allow:\n` +
            `        - { id: api-a, host: api.test.example, exe: ${a}${children} }\n` +
            `        - { id: evil-any, host: evil.test.example }\n`;

          const { plan } = await apply(plane, dns, mode, allowlist(""));
          const ruleOf = (id: number) => plan.rules[id]?.id;
          drain(plane);
          assert.equal(await outcome(cgroup, as(a, "127.0.0.5")), "connected", "A, allowed by name");
          assert.deepEqual(drain(plane), [], "an allowed connect reports nothing");
          assert.equal(await outcome(cgroup, as(b, "127.0.0.5")), refused, "B, a copy of A, is not A");
          const copy = drain(plane);
          assert.deepEqual(copy.map((e) => [e.hook, ruleOf(e.ruleId), e.decision]), [
            [HOOK.CONNECT, "lo8", decision],
          ]);
          assert.equal(copy[0]?.ino, BigInt(Deno.statSync(b).ino!), "the event names B");
          assert.equal(await outcome(cgroup, child("127.0.0.5")), refused, "a child of A without children");
          drain(plane);
          // A rule by name without exe decides for every program, in a policy that names programs.
          assert.equal(await outcome(cgroup, as(b, "127.0.0.8")), "connected", "a name for every program");
          assert.equal(await outcome(cgroup, as(a, "127.0.0.8")), "connected");
          assert.equal(await outcome(cgroup, as(a, "127.0.0.9")), refused, "an address no name has");
          drain(plane);

          await apply(plane, dns, mode, allowlist(", children: true"));
          assert.equal(await outcome(cgroup, child("127.0.0.5")), "connected", "children: true covers sh -c");
          assert.equal(await outcome(cgroup, as(b, "127.0.0.5")), refused, "B still is not A");
          drain(plane);

          // A deny by name for one program: A refused, B and the host's bash connect.
          const denied = await apply(
            plane,
            dns,
            mode,
            `      deny:\n        - { id: api-not-a, host: api.test.example, exe: ${a} }\n`,
          );
          drain(plane);
          assert.equal(await outcome(cgroup, as(a, "127.0.0.5")), refused, "A is denied by name");
          const events = drain(plane);
          assert.deepEqual(events.map((e) => [e.hook, e.ruleId, e.decision]), [[HOOK.CONNECT, 1, decision]]);
          assert.equal(events[0]?.ino, BigInt(Deno.statSync(a).ino!), "the event names A");
          assert.equal((events[0]?.flags ?? 0) & EVENT.EXE, EVENT.EXE);
          assert.equal(
            denied.plan.rules[1]?.host,
            "api.test.example",
            "the rule the event names is the name's",
          );
          assert.equal(denied.plan.rules[1]?.exe, a, "and the program's");
          assert.equal(await outcome(cgroup, as(b, "127.0.0.5")), "connected", "B is not A");
          assert.equal(await cgroup.connect("127.0.0.5", port), "connected", "nor is the host's bash");
          assert.deepEqual(drain(plane), []);
        });
      } finally {
        Deno.removeSync(dir, { recursive: true });
        await dns.stop();
      }
    },
  );
}
