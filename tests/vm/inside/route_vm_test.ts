/**
 * Routing headers and source routes inside the qemu guest (tests/vm/harness.ts), on Debian's 6.1 and 6.12:
 * the cgroup/setsockopt guard and the packet backstop's hop walk load there (the setsockopt program reads
 * the task's facts without the helpers 6.1 lacks for it), refuse and report as on the host, and leave every
 * other setsockopt working (a value longer than a page too, which kernels without upstream's 6.5 fix fail
 * with EFAULT unless the program hands it back). The guest has no veth: D and A are addresses of the worker's own namespace, reached over `lo`,
 * and the capture runs on `lo`. The cases are in tests/support/route_scenarios.ts (the audit scenario is the
 * proof that the worker sees what reaches D there).
 */
import assert from "node:assert/strict";
import { cgroup2Root } from "../../../lib/kernel/cgroup.ts";
import { DataPlane } from "../../../lib/kernel/dataplane.ts";
import { buildRouteWorker, RouteWorker } from "../../support/route_worker.ts";
import {
  droppedByBackstop,
  type Hosts,
  refusedByGuard,
  reportedInAudit,
} from "../../support/route_scenarios.ts";

const inVm = Deno.env.get("AEGIS_IN_VM") === "1";
const HOSTS: Hosts = { d: "127.0.0.2", a: "127.0.0.1", d6: "2001:db8::2", a6: "2001:db8::3" };

Deno.test({
  name:
    "[vm] route: setting a route is refused, routed packets to a denied hop are dropped, audit reports both",
  ignore: !inVm,
  fn: async () => {
    const bpffs = "/sys/fs/bpf/route";
    Deno.mkdirSync(bpffs, { recursive: true });
    const plane = DataPlane.open({ bpffs, areas: ["egress"], lsm: "off" });
    try {
      const worker = await RouteWorker.start(await buildRouteWorker(""), {
        cgroupPath: cgroup2Root(),
        senderNs: "private",
        receiverNs: "",
        device: "lo",
      });
      try {
        const fixture = { plane, hosts: HOSTS, send: worker.send.bind(worker) };
        await refusedByGuard({ ...fixture, port: 7200 });
        await droppedByBackstop({ ...fixture, port: 7300 });
        await reportedInAudit({ ...fixture, port: 7400 });
      } finally {
        assert.equal((await worker.close()).trim(), "", "the worker reports no failure");
      }
    } finally {
      plane.close();
      DataPlane.detach(bpffs);
      Deno.removeSync(bpffs);
    }
  },
});
