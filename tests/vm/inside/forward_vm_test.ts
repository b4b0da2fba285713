import assert from "node:assert/strict";
import { HOOK, ifIndex, tcQueryEgress } from "../../../ffi/mod.ts";
import { DataPlane } from "../../../lib/kernel/dataplane.ts";
import { pinnedLinks } from "../../../lib/kernel/inspect.ts";
import { hasTcx, PlaneLinks } from "../../../lib/kernel/links.ts";
import { LoadedPrograms } from "../../../lib/kernel/programs.ts";
import { loadPrograms, PROGRAMS } from "../../../lib/kernel/object.ts";
import { makePinDirs } from "../../../lib/kernel/pin_dir.ts";
import { forwardInterfaces } from "../../../lib/kernel/resolve.ts";
import { place } from "../../../lib/kernel/tc_filter.ts";
import type { RuleInfo } from "../../../lib/policy/plan.ts";
import { drainEvents, ipv4Rule, writeRules } from "../../support/slice.ts";
import { lines } from "../../support/lines.ts";

// network.egress.forwarded on Debian's kernels: a tcx link where the kernel has them (6.12), a classic tc
// filter on a clsact qdisc where it does not (6.1), chosen by PlaneLinks on its own. The guest has no
// veth: the router is the guest itself, a tun device of uid 65534 (fwd-in) is where a user's packets come
// in, and D sits behind a second tun device (fwd-out), whose reader is D's wire. The program alone is
// loaded and the rules written into its maps: a whole plane costs a minute under emulation.
const inVm = Deno.env.get("AEGIS_IN_VM") === "1";
const WORKER = "/usr/lib/aegisbpf-tests/tun_worker";
const NOBODY = 65534;
const D = "198.18.7.2";
const PEER = "198.19.7.2";
const PORT = 7600;
const SENT = 3;
const RULES: RuleInfo[] = [
  { id: "default", area: "ingress", action: "deny" },
  { id: "deny-d", area: "egress", action: "deny" },
  { id: "network.egress.forwarded", area: "egress", action: "deny" },
];

async function run(args: string[]): Promise<string> {
  const out = await new Deno.Command(args[0]!, { args: args.slice(1), stdout: "piped", stderr: "piped" })
    .output();
  const text = new TextDecoder().decode(out.stdout);
  assert.ok(out.success, `${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  return text;
}

/** How many of SENT datagrams from the user's tun device to D:PORT came out of D's tun device. */
async function delivered(): Promise<number> {
  const drain = new Deno.Command(WORKER, {
    args: ["drain", "fwd-out", String(PORT), "700"],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out = lines(drain.stdout)[Symbol.asyncIterator]();
  const stderr = new Response(drain.stderr).text();
  assert.equal((await out.next()).value, "ready");
  const sent = await run([WORKER, "send", String(NOBODY), "fwd-in", PEER, D, String(PORT), String(SENT)]);
  assert.equal(sent.trim(), `sent ${SENT}`);
  const count = Number((await out.next()).value);
  await drain.status;
  assert.equal(await stderr, "");
  return count;
}

Deno.test({
  name: "[vm] forwarded: dropped and reported through tcx on 6.6+, through a classic tc filter before; " +
    "detach removes it",
  ignore: !inVm,
  fn: async () => {
    const bpffs = "/sys/fs/bpf/forward";
    const pinDir = `${bpffs}/aegisbpf`;
    makePinDirs(pinDir);
    await run([WORKER, "make", "fwd-in", String(NOBODY)]);
    await run([WORKER, "make", "fwd-out", "0"]);
    await run(["ip", "addr", "add", "198.19.7.1/24", "dev", "fwd-in"]);
    await run(["ip", "addr", "add", "198.18.7.1/24", "dev", "fwd-out"]);
    await run(["ip", "link", "set", "fwd-in", "up"]);
    await run(["ip", "link", "set", "fwd-out", "up"]);
    Deno.writeTextFileSync("/proc/sys/net/ipv4/ip_forward", "1");
    const object = loadPrograms([PROGRAMS.forward]);
    const links = new PlaneLinks(new LoadedPrograms(object), pinDir, "generic");
    const [inIndex, outIndex] = [ifIndex("fwd-in"), ifIndex("fwd-out")];
    const write = (mode: "enforce" | "audit") =>
      writeRules(object, {
        plan: {
          mode,
          rules: RULES,
          egress: [ipv4Rule(`${D}/32`, 1, { port: PORT })],
          forwarded: { ruleId: 2 },
        },
      });
    try {
      // Nothing attached: the bypass (the datagrams reach D).
      write("enforce");
      assert.equal(await delivered(), SENT);
      for (const iface of forwardInterfaces()) links.attachForward(iface.ifindex, iface.name);
      assert.deepEqual(links.names, ["aegis_forward@fwd-in", "aegis_forward@fwd-out"]);
      const type = hasTcx(Deno.osRelease()) ? "tcx" : "tc";
      const out = () => pinnedLinks(bpffs).find((link) => link.name === "aegis_forward@fwd-out");
      assert.deepEqual([out()?.type, out()?.attached], [type, true]);
      assert.equal(links.hasForward(outIndex, "fwd-out"), true);

      // Enforce: nothing on D's wire, each datagram reported as denied.
      assert.equal(await delivered(), 0);
      const denied = drainEvents(object).filter((event) => event.hook === HOOK.FORWARD);
      assert.deepEqual(
        denied.map((event) => [event.decision, event.ruleId, event.dport, event.ifindex, event.dev]),
        Array(SENT).fill([0, 1, PORT, outIndex, inIndex]),
      );

      // Audit: delivered, and reported.
      write("audit");
      assert.equal(await delivered(), SENT);
      const audited = drainEvents(object).filter((event) => event.hook === HOOK.FORWARD);
      assert.deepEqual(audited.map((event) => [event.decision, event.dport]), Array(SENT).fill([1, PORT]));

      // The process's references let go: the filter (or pinned link) goes on dropping.
      write("enforce");
      links.close();
      assert.equal(await delivered(), 0);
      drainEvents(object);

      // Detach removes aegisbpf's filters: the datagrams flow again, no filter is left at its place.
      DataPlane.detach(bpffs);
      assert.deepEqual(pinnedLinks(bpffs), []);
      assert.equal(tcQueryEgress(place(outIndex)), undefined);
      assert.equal(await delivered(), SENT);
    } finally {
      links.close();
      object.close();
      for (const tun of ["fwd-in", "fwd-out"]) await run(["ip", "link", "del", tun]).catch(() => {});
      Deno.removeSync(bpffs, { recursive: true });
    }
  },
});
