/**
 * Forwarded traffic (network.egress.forwarded, bpf/forward_guard.bpf.h), entirely inside network
 * namespaces: a router namespace with ip_forward on and a persistent tun device owned by uid 65534, whose
 * datagrams to a denied host D the router forwards out of a veth to D's namespace. The wire is captured on
 * D's end of the veth. Without `forwarded: true` the datagrams reach D (the documented default, and lint and
 * doctor warn); with it they are dropped in enforce and delivered in audit, each reported as net.forward.
 * Local traffic of the router itself is left to the socket hooks.
 */
import assert from "node:assert/strict";
import { HOOK, ifIndex, ifName, inNetns, type RawEvent, tcQueryEgress } from "../../ffi/mod.ts";
import { DataPlane } from "../../lib/kernel/dataplane.ts";
import { bootToWallOffsetNs, formatEvent } from "../../lib/kernel/events.ts";
import { pinnedLinks } from "../../lib/kernel/inspect.ts";
import { place } from "../../lib/kernel/tc_filter.ts";
import { checkHealth } from "../../lib/report/health.ts";
import { writeApplied } from "../../lib/state/apply_state.ts";
import { minimal } from "../../lib/policy/_testdata.ts";
import { lintPolicy } from "../../lib/policy/lint.ts";
import { readForwarding } from "../../lib/policy/facts.ts";
import { parsePolicySource } from "../../lib/policy/parse.ts";
import type { NetRule, RuleInfo } from "../../lib/policy/plan.ts";
import { RuleTable } from "../../lib/policy/rule_table.ts";
import { forwardingCheck } from "../../lib/report/forwarding_check.ts";
import { policy, withHost, writePolicy } from "../support/agent_host.ts";
import { AgentRun } from "../support/agent_run.ts";
import { VethPair } from "../support/netns.ts";
import { drain, ruleSet, withPlane } from "../support/plane.ts";
import { must, rootTest } from "../support/privileged.ts";
import { assertMatchesSchema } from "../support/schema.ts";
import { ipv4Rule } from "../support/slice.ts";
import { lines } from "../support/lines.ts";

const NOBODY = 65534;
// Another release (tests/host/upgrade_test.ts): one map of another size, so that a plane opened with it
// takes the pins over.
const NEXT_RELEASE = Deno.readFileSync(
  new URL("../../bpf/build/fixtures/aegis_variant.bpf.o", import.meta.url),
);
const TUN = "aegis-fwd0";
const DENIED_PORT = 7500 + (Deno.pid % 200) * 2;
const ALLOWED_PORT = DENIED_PORT + 1;
const SENT = 3;
/** A network behind an interface the router gets after the agent started (TEST-NET-2). */
const NEW_NET = "198.51.100";
const CAPTURE_MS = 500;
const RULES: RuleInfo[] = [
  { id: "default", area: "ingress", action: "deny" },
  { id: "deny-d", area: "egress", action: "deny" },
  { id: "network.egress.forwarded", area: "egress", action: "deny" },
];
const DENY_D = 1;
const FORWARDED = { ruleId: 2 };

/** The router (the pair's client namespace), D (its server namespace) and the peers behind the tun device. */
type Net = {
  pair: VethPair;
  worker: string;
  peer: string;
  peer6: string;
  egress: NetRule[];
  subnet: number;
};

async function buildWorker(dir: string): Promise<string> {
  const binary = `${dir}/tun_worker`;
  const source = new URL("../support/tun_worker.c", import.meta.url).pathname;
  await must("clang", ["-O2", "-Wall", "-Werror", "-o", binary, source]);
  return binary;
}

/** ip_forward on in the router, and the tun device uid 65534 owns, with the peers behind it routed to it. */
async function makeRouter(pair: VethPair, subnet: number): Promise<{ peer: string; peer6: string }> {
  const ns = pair.client;
  await must("ip", ["netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
  await must("ip", ["netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
  await addTun(ns, subnet);
  return { peer: `198.19.${subnet}.2`, peer6: `2001:db8:f${subnet.toString(16)}::2` };
}

/** The persistent tun device of uid 65534, its peers behind it. */
async function addTun(ns: string, subnet: number): Promise<void> {
  await must("ip", ["-n", ns, "tuntap", "add", "dev", TUN, "mode", "tun", "user", String(NOBODY)]);
  await must("ip", ["-n", ns, "addr", "add", `198.19.${subnet}.1/24`, "dev", TUN]);
  await must("ip", ["-n", ns, "addr", "add", `2001:db8:f${subnet.toString(16)}::1/64`, "dev", TUN, "nodad"]);
  await must("ip", ["-n", ns, "link", "set", TUN, "up"]);
}

async function withNet(fn: (net: Net) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "aegisbpf-forward-" });
  const pair = await VethPair.create();
  try {
    const worker = await buildWorker(dir);
    const subnet = 1 + (Deno.pid % 250);
    const peers = await makeRouter(pair, subnet);
    const egress = [
      ipv4Rule(`${pair.serverAddress}/32`, DENY_D, { port: DENIED_PORT }),
      ipv4Rule(`${pair.serverAddress6}/128`, DENY_D, { port: DENIED_PORT }),
    ];
    await fn({ pair, worker, ...peers, egress, subnet });
  } finally {
    await pair.remove();
    await Deno.remove(dir, { recursive: true });
  }
}

/** How many UDP datagrams to `port` reached D's wire (its end of the veth, or `iface`) while `send` ran. */
async function captured(
  net: Net,
  port: number,
  send: () => Promise<void>,
  iface = net.pair.serverInterface,
): Promise<number> {
  const capture = new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      net.pair.server,
      net.worker,
      "capture",
      iface,
      String(port),
      String(CAPTURE_MS),
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out = lines(capture.stdout)[Symbol.asyncIterator]();
  const stderr = new Response(capture.stderr).text();
  assert.equal((await out.next()).value, "ready", await Promise.race([stderr, Promise.resolve("")]));
  await send();
  const count = (await out.next()).value;
  await capture.status;
  assert.equal(await stderr, "");
  return Number(count);
}

/** Writes SENT datagrams into the tun device as uid 65534: the router forwards them toward D. */
function fromTun(net: Net, to: string, port: number): () => Promise<void> {
  const from = to.includes(":") ? net.peer6 : net.peer;
  return async () => {
    const sent = await must("ip", [
      "netns",
      "exec",
      net.pair.client,
      net.worker,
      "send",
      String(NOBODY),
      TUN,
      from,
      to,
      String(port),
      String(SENT),
    ]);
    assert.equal(sent.trim(), `sent ${SENT}`);
  };
}

/** One datagram from a socket of the router itself (not forwarded): the socket hooks' business. */
function fromRouter(net: Net, port: number): () => Promise<void> {
  return async () => {
    const script = `echo local > /dev/udp/${net.pair.serverAddress}/${port}`;
    await must("ip", ["netns", "exec", net.pair.client, "bash", "-c", script]);
  };
}

function forwardEvents(events: RawEvent[]): RawEvent[] {
  return events.filter((event) => event.hook === HOOK.FORWARD);
}

rootTest(
  "[root] forwarded: a tun device of uid 65534 reaches a denied host unless forwarded: true (enforce drops, audit reports)",
  async () => {
    await withNet(async (net) => {
      await withPlane({ areas: ["egress"] }, async ({ plane, bpffs }) => {
        const router = net.pair.nsPath(net.pair.client);
        const apply = (mode: "enforce" | "audit", forwarded: boolean) =>
          inNetns(router, () =>
            plane.apply(ruleSet({
              mode,
              rules: RULES,
              egress: net.egress,
              ...forwarded && { forwarded: FORWARDED },
            })));
        const [tunIndex, uplinkIndex] = inNetns(router, () => [ifIndex(TUN), ifIndex("veth-cli")]);

        // The bypass, and the documented default: without forwarded: true nothing judges it.
        await apply("enforce", false);
        assert.equal(
          await captured(net, DENIED_PORT, fromTun(net, net.pair.serverAddress, DENIED_PORT)),
          SENT,
        );
        assert.deepEqual(forwardEvents(drain(plane)), []);
        const forwarding = inNetns(router, readForwarding);
        assert.deepEqual(forwarding, { ipv4: true, ipv6: true });
        const source = parsePolicySource(
          minimal(
            `  network:\n    egress:\n      deny: [{ id: deny-d, cidr: ${net.pair.serverAddress}, port: ${DENIED_PORT} }]\n`,
          ),
          "fwd.yaml",
        );
        const lint = lintPolicy(source.policy, source.locate, {
          resolvers: [],
          sshPorts: [],
          survival: [],
          paths: new Map(),
          now: new Date(),
          forwarding,
        });
        assert.deepEqual(lint.map((warning) => warning.code), ["forwarded-unjudged"]);
        const doctor = forwardingCheck({ forwarding, egressApplied: true, links: plane.links, tcx: true });
        assert.equal(doctor.status, "warn", doctor.detail);

        // Enforce: nothing reaches D's wire on the denied port, the allowed port still flows.
        await apply("enforce", true);
        assert.deepEqual(
          plane.links.filter((name) => name.startsWith("aegis_forward@")),
          [`aegis_forward@${TUN}`, "aegis_forward@veth-cli"],
          "every interface of the router but lo",
        );
        assert.equal(await captured(net, DENIED_PORT, fromTun(net, net.pair.serverAddress, DENIED_PORT)), 0);
        assert.equal(await captured(net, DENIED_PORT, fromTun(net, net.pair.serverAddress6, DENIED_PORT)), 0);
        assert.equal(
          await captured(net, ALLOWED_PORT, fromTun(net, net.pair.serverAddress, ALLOWED_PORT)),
          SENT,
        );
        // The router's own socket is not forwarded traffic: not judged here, not reported.
        assert.equal(await captured(net, DENIED_PORT, fromRouter(net, DENIED_PORT)), 1);
        const denied = forwardEvents(drain(plane));
        assert.deepEqual(
          denied.map((
            event,
          ) => [event.decision, event.ruleId, event.family, event.dport, event.ifindex, event.dev]),
          [
            ...Array(SENT).fill([0, DENY_D, 4, DENIED_PORT, uplinkIndex, tunIndex]),
            ...Array(SENT).fill([0, DENY_D, 6, DENIED_PORT, uplinkIndex, tunIndex]),
          ],
        );
        const event = formatEvent(denied[0]!, {
          host: "test-host",
          generations: [{ rules: RuleTable.of(RULES) }, { rules: RuleTable.of(RULES) }],
          bootToWallNs: bootToWallOffsetNs(),
          interfaceName: (ifindex) => inNetns(router, () => ifName(ifindex)),
        });
        assertMatchesSchema("event.schema.json", event);
        const { ts: _ts, ...fields } = event;
        assert.deepEqual(fields, {
          host: "test-host",
          type: "net.forward",
          decision: "deny",
          mode: "enforce",
          rule: "deny-d",
          net: {
            family: "ipv4",
            protocol: "udp",
            daddr: net.pair.serverAddress,
            dport: DENIED_PORT,
            saddr: net.peer,
            sport: 40000,
            interface: "veth-cli",
            inInterface: TUN,
          },
          count: 1,
        });

        // Audit: delivered, and reported.
        await apply("audit", true);
        assert.equal(
          await captured(net, DENIED_PORT, fromTun(net, net.pair.serverAddress, DENIED_PORT)),
          SENT,
        );
        const audited = forwardEvents(drain(plane));
        assert.deepEqual(
          audited.map((event) => [event.decision, event.mode, event.dport]),
          Array(SENT).fill([1, 0, DENIED_PORT]),
        );

        // The tun device deleted and made anew (another ifindex): the next resolve (an apply, the agent's
        // refresh) replaces its link, now detached, by one on the new device.
        await must("ip", ["-n", net.pair.client, "link", "del", TUN]);
        await addTun(net.pair.client, net.subnet);
        const newTun = inNetns(router, () => ifIndex(TUN));
        assert.notEqual(newTun, tunIndex);
        const tunLink = () => pinnedLinks(bpffs.path).find((link) => link.name === `aegis_forward@${TUN}`);
        assert.equal(tunLink()?.attached, false);
        await apply("audit", true);
        assert.equal(tunLink()?.attached, true);

        // Turned off again: the links go with it.
        await apply("enforce", false);
        assert.deepEqual(plane.links.filter((name) => name.startsWith("aegis_forward@")), []);

        // Pinned tcx links, as health and status read them; detach (and closing the plane, which held the
        // unpinned one) removes them from the interfaces.
        await apply("enforce", true);
        const pinned = pinnedLinks(bpffs.path).filter((link) => link.name.startsWith("aegis_forward@"));
        assert.deepEqual(pinned.map((link) => [link.name, link.type, link.attached]), [
          [`aegis_forward@${TUN}`, "tcx", true],
          ["aegis_forward@veth-cli", "tcx", true],
        ]);
        // Root unpinning one: health names it (the applied record lists the interfaces).
        const stateDir = Deno.makeTempDirSync({ prefix: "aegisbpf-forward-state-" });
        try {
          writeApplied(stateDir, {
            seq: 1,
            name: "fwd",
            version: 1,
            sha256: "0".repeat(64),
            contentSha256: "0".repeat(64),
            generation: plane.config().activeGen,
            time: new Date().toISOString(),
            mode: "enforce",
            areas: ["egress"],
            forward: [TUN, "veth-cli"],
          });
          Deno.removeSync(`${bpffs.path}/aegisbpf/links/aegis_forward@veth-cli`);
          const health = checkHealth({ bpffs: bpffs.path, stateDir, configDir: stateDir }, {
            requireEnforce: false,
            connections: false,
            staleRules: false,
          });
          assert.ok(
            health.problems.some((problem) =>
              problem.startsWith("programs not attached: aegis_forward@veth-cli:")
            ),
            health.problems.join("; "),
          );
        } finally {
          Deno.removeSync(stateDir, { recursive: true });
        }
        plane.close();
        DataPlane.detach(bpffs.path);
        assert.equal(
          await captured(net, DENIED_PORT, fromTun(net, net.pair.serverAddress, DENIED_PORT)),
          SENT,
        );
      });
    });
  },
);

/** The egress filters of `iface` in the router, as `tc filter show` prints them. */
async function tcFilters(net: Net, iface: string): Promise<string> {
  return await must("ip", ["netns", "exec", net.pair.client, "tc", "filter", "show", "dev", iface, "egress"]);
}

rootTest(
  "[root] forwarded: where there are no tcx links, a classic tc filter drops and reports, survives a restart, and is removed alone",
  async () => {
    await withNet(async (net) => {
      await withPlane({ areas: ["egress"], forwardAttach: "legacy" }, async ({ plane, bpffs, cgroup }) => {
        const router = net.pair.nsPath(net.pair.client);
        const apply = (on: DataPlane, mode: "enforce" | "audit", forwarded: boolean) =>
          inNetns(router, () =>
            on.apply(ruleSet({
              mode,
              rules: RULES,
              egress: net.egress,
              ...forwarded && { forwarded: FORWARDED },
            })));
        const toD = () => captured(net, DENIED_PORT, fromTun(net, net.pair.serverAddress, DENIED_PORT));
        const [tunIndex, uplinkIndex] = inNetns(router, () => [ifIndex(TUN), ifIndex("veth-cli")]);
        const ours = (ifindex: number) => inNetns(router, () => tcQueryEgress(place(ifindex)));
        const forwardLinks = () =>
          inNetns(router, () => pinnedLinks(bpffs.path)).filter((link) =>
            link.name.startsWith("aegis_forward@")
          );
        // Another tool's filter on the uplink, after aegisbpf's place: it passes every packet (ending
        // classification), so aegisbpf's filter must run first to judge anything.
        await must("ip", [
          "netns",
          "exec",
          net.pair.client,
          "tc",
          "qdisc",
          "add",
          "dev",
          "veth-cli",
          "clsact",
        ]);
        await must("ip", [
          ...["netns", "exec", net.pair.client, "tc", "filter", "add", "dev", "veth-cli", "egress"],
          ...["pref", "5", "protocol", "all", "u32", "match", "u32", "0", "0", "classid", "1:1"],
        ]);

        // Enforce: dropped on the uplink, reported with both interfaces.
        await apply(plane, "enforce", true);
        assert.deepEqual(forwardLinks().map((link) => [link.name, link.type, link.attached]), [
          [`aegis_forward@${TUN}`, "tc", true],
          ["aegis_forward@veth-cli", "tc", true],
        ]);
        assert.equal(await toD(), 0);
        assert.deepEqual(
          forwardEvents(drain(plane)).map((
            event,
          ) => [event.decision, event.ruleId, event.ifindex, event.dev]),
          Array(SENT).fill([0, DENY_D, uplinkIndex, tunIndex]),
        );

        // Audit: delivered, and reported.
        await apply(plane, "audit", true);
        assert.equal(await toD(), SENT);
        assert.deepEqual(
          forwardEvents(drain(plane)).map((event) => [event.decision, event.mode]),
          Array(SENT).fill([1, 0]),
        );

        // The process gone (its plane closed), the filters go on dropping; the next one adopts them, same
        // programs, nothing attached anew; a newer release gives them its program.
        await apply(plane, "enforce", true);
        const before = forwardLinks().map((link) => link.programId);
        plane.close();
        assert.equal(await toD(), 0);
        const open = (image?: Uint8Array<ArrayBuffer>) =>
          inNetns(router, () =>
            DataPlane.open({
              bpffs: bpffs.path,
              cgroupPath: cgroup.path,
              areas: ["egress"],
              forwardAttach: "legacy",
              ...image && { image },
            }));
        const same = open();
        try {
          await apply(same, "enforce", true);
          assert.deepEqual(forwardLinks().map((link) => link.programId), before);
          assert.equal(ours(uplinkIndex), before[1]);
        } finally {
          same.close();
        }
        // A release whose maps differ takes over: each filter is given its program in place.
        const next = open(NEXT_RELEASE);
        try {
          const after = forwardLinks().map((link) => link.programId);
          assert.notDeepEqual(after, before);
          assert.deepEqual(forwardLinks().map((link) => link.attached), [true, true]);
          assert.equal(ours(uplinkIndex), after[1]);
          assert.equal(await toD(), 0);
          drain(next);

          // The tun device made anew: its record is stale until the next resolve attaches a filter to it.
          await must("ip", ["-n", net.pair.client, "link", "del", TUN]);
          await addTun(net.pair.client, net.subnet);
          const tunRecord = () => forwardLinks().find((link) => link.name === `aegis_forward@${TUN}`);
          assert.deepEqual([tunRecord()?.attached, tunRecord()?.error], [
            false,
            `no tc filter on ${TUN}'s egress`,
          ]);
          await apply(next, "enforce", true);
          assert.equal(tunRecord()?.attached, true);

          // A record removed from outside while the filter runs: the agent's tamper check records it again.
          Deno.removeSync(`${bpffs.path}/aegisbpf/tc/aegis_forward@veth-cli`);
          assert.equal(forwardLinks().length, 1);
          assert.deepEqual(inNetns(router, () => next.repinLinks(() => true)), ["aegis_forward@veth-cli"]);
          assert.deepEqual(forwardLinks().map((link) => link.attached), [true, true]);

          // forwarded dropped from the policy: aegisbpf's filters go, the other tool's filter and the
          // qdisc stay.
          await apply(next, "enforce", false);
          assert.deepEqual(forwardLinks(), []);
          assert.equal(ours(uplinkIndex), undefined);
          assert.match(await tcFilters(net, "veth-cli"), /pref 5 u32/);
          assert.equal(await toD(), SENT);

          // Detach (in the router's namespace, where the filters are): the same.
          await apply(next, "enforce", true);
          assert.equal(await toD(), 0);
          drain(next);
        } finally {
          next.close();
        }
        inNetns(router, () => DataPlane.detach(bpffs.path));
        assert.equal(ours(uplinkIndex), undefined);
        assert.equal(ours(inNetns(router, () => ifIndex(TUN))), undefined);
        const left = await tcFilters(net, "veth-cli");
        assert.match(left, /pref 5 u32/);
        assert.doesNotMatch(left, /bpf/);
        assert.equal(await toD(), SENT);
      });
    });
  },
);

rootTest(
  "[root] forwarded: the running agent reports net.forward and judges an interface added after it started",
  async () => {
    await withNet(async (net) => {
      await withHost(async (host) => {
        const router = net.pair.client;
        const body = `  network:\n    egress:\n      forwarded: true\n      deny:\n` +
          `        - { id: deny-d, cidr: ${net.pair.serverAddress}, port: ${DENIED_PORT} }\n` +
          `        - { id: deny-new, cidr: ${NEW_NET}.0/24 }\n`;
        const path = writePolicy(host, "forward.yaml", policy(host, body));
        const agent = AgentRun.spawn(host, ["--policy", path], {
          env: host.env,
          // nsenter changes the network namespace alone: `ip netns exec` remounts /sys (and cgroup v2 with it).
          prefix: ["nsenter", `--net=${net.pair.nsPath(router)}`],
        });
        await using _agent = agent;
        await agent.ready();
        assert.equal(await captured(net, DENIED_PORT, fromTun(net, net.pair.serverAddress, DENIED_PORT)), 0);
        const denied = await agent.waitFor((event) => event.type === "net.forward");
        assert.deepEqual(
          [denied.decision, denied.rule, denied.net.saddr, denied.net.interface, denied.net.inInterface],
          ["deny", "deny-d", net.peer, "veth-cli", TUN],
        );

        // A new route out of the router, made after the agent started: taken in within a slow tick.
        await must("ip", [
          "-n",
          router,
          "link",
          "add",
          "fwd-new",
          "type",
          "veth",
          "peer",
          "name",
          "fwd-peer",
          "netns",
          net.pair.server,
        ]);
        await must("ip", ["-n", router, "addr", "add", `${NEW_NET}.1/24`, "dev", "fwd-new"]);
        await must("ip", ["-n", net.pair.server, "addr", "add", `${NEW_NET}.2/24`, "dev", "fwd-peer"]);
        await must("ip", ["-n", net.pair.server, "link", "set", "fwd-peer", "up"]);
        await must("ip", ["-n", router, "link", "set", "fwd-new", "up"]);
        const refreshed = await agent.waitFor((event) => event.type === "policy.refreshed", 10_000);
        assert.deepEqual(refreshed.rules, ["network.egress.forwarded"]);
        const from = agent.events.length;
        const toNew = fromTun(net, `${NEW_NET}.2`, ALLOWED_PORT);
        assert.equal(await captured(net, ALLOWED_PORT, toNew, "fwd-peer"), 0);
        const onNew = await agent.waitFor((event) => event.type === "net.forward", 5000, from);
        assert.deepEqual([onNew.rule, onNew.net.interface], ["deny-new", "fwd-new"]);
        agent.kill("SIGTERM");
        assert.equal((await agent.exit()).code, 0);
      });
    });
  },
);
