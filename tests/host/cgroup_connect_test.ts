import assert from "node:assert/strict";
import { closeFd, openDirectory } from "../../ffi/mod.ts";
import { loadPrograms, PROGRAMS } from "../../lib/kernel/object.ts";
import { TestBpffs } from "../support/bpffs.ts";
import { TestCgroup } from "../support/cgroup.ts";
import { listen } from "../support/plane.ts";
import { rootTest } from "../support/privileged.ts";
import { BpfLink } from "../../ffi/mod.ts";
import { counter, drainEvents, ipv4Rule, writeRules } from "../support/slice.ts";

const DENIED = "127.0.0.2";
const ALLOWED = "127.0.0.1";
const CONNECT_DENY_SLOT = 2 * 2 + 0;

rootTest("[root] cgroup/connect4 denies the listed address with EPERM inside the cgroup only", async () => {
  const server = listen();
  const cgroup = TestCgroup.create();
  const object = loadPrograms([PROGRAMS.connect4]);
  const cgroupFd = openDirectory(cgroup.path);
  try {
    writeRules(object, { plan: { mode: "enforce", egress: [ipv4Rule(`${DENIED}/32`, 7)] } });
    object.program(PROGRAMS.connect4).attachCgroup(cgroupFd, cgroup.path);

    assert.equal(await cgroup.connect(DENIED, server.port), "EPERM");
    assert.equal(await cgroup.connect(ALLOWED, server.port), "connected");
    // This test process is outside the cgroup: the program does not see it.
    const outside = await Deno.connect({ hostname: DENIED, port: server.port });
    outside.close();

    assert.equal(counter(object, CONNECT_DENY_SLOT), 1n);
    const events = drainEvents(object);
    assert.equal(events.length, 1);
    assert.equal(events[0]?.ruleId, 7);
    assert.equal(events[0]?.dport, server.port);
    assert.deepEqual([...(events[0]?.daddr.subarray(0, 4) ?? [])], [127, 0, 0, 2]);
  } finally {
    object.close();
    closeFd(cgroupFd);
    cgroup.remove();
    await server.stop();
  }
});

rootTest("[root] cgroup/connect4 lets everything through once detached", async () => {
  const server = listen();
  const cgroup = TestCgroup.create();
  const object = loadPrograms([PROGRAMS.connect4]);
  const cgroupFd = openDirectory(cgroup.path);
  try {
    writeRules(object, { plan: { mode: "enforce", egress: [ipv4Rule("127.0.0.0/30", 1)] } });
    const link = object.program(PROGRAMS.connect4).attachCgroup(cgroupFd, cgroup.path);
    assert.equal(await cgroup.connect(DENIED, server.port), "EPERM");
    link.close();
    assert.equal(await cgroup.connect(DENIED, server.port), "connected");
  } finally {
    object.close();
    closeFd(cgroupFd);
    cgroup.remove();
    await server.stop();
  }
});

rootTest("[root] a pinned cgroup link keeps denying after its object closes, until unpinned", async () => {
  const server = listen();
  const cgroup = TestCgroup.create();
  const bpffs = await TestBpffs.mount();
  const cgroupFd = openDirectory(cgroup.path);
  const pin = `${bpffs.path}/connect4`;
  try {
    const object = loadPrograms([PROGRAMS.connect4]);
    try {
      writeRules(object, { plan: { mode: "enforce", egress: [ipv4Rule(`${DENIED}/32`, 3)] } });
      object.program(PROGRAMS.connect4).attachCgroup(cgroupFd, cgroup.path).pin(pin);
    } finally {
      object.close();
    }
    assert.equal(await cgroup.connect(DENIED, server.port), "EPERM");

    using adopted = BpfLink.open(pin);
    assert.ok(adopted.fd > 0);
    adopted.unpin();
    adopted.close();
    assert.equal(await cgroup.connect(DENIED, server.port), "connected");
  } finally {
    closeFd(cgroupFd);
    cgroup.remove();
    await bpffs.unmount();
    await server.stop();
  }
});
