import assert from "node:assert/strict";
import { tryLockDirectory } from "../../ffi/mod.ts";
import { DataPlane, DetachError } from "../../lib/kernel/dataplane.ts";
import { TestBpffs } from "../support/bpffs.ts";
import { TestCgroup } from "../support/cgroup.ts";
import { listen, ruleSet } from "../support/plane.ts";
import { rootTest } from "../support/privileged.ts";
import { ipv4Rule } from "../support/slice.ts";

const DENIED = "127.0.0.2";
const RULES = [
  { id: "default", area: "ingress" as const, action: "deny" as const },
  { id: "deny-2", area: "egress" as const, action: "deny" as const },
];

rootTest("[root] DataPlane.open waits while another process holds the pin directory's lock", async () => {
  const bpffs = await TestBpffs.mount();
  const cgroup = TestCgroup.create();
  const pinDir = `${bpffs.path}/aegisbpf`;
  try {
    Deno.mkdirSync(pinDir);
    // Another aegisbpf's open or apply, as far as the lock can tell: flock(1) holds it for a second.
    const holder = new Deno.Command("flock", {
      args: ["--exclusive", pinDir, "sh", "-c", "echo held; sleep 1"],
      stdout: "piped",
    }).spawn();
    const reader = holder.stdout.getReader();
    const first = await reader.read();
    assert.equal(new TextDecoder().decode(first.value).trim(), "held");
    reader.releaseLock();
    assert.equal(tryLockDirectory(pinDir), undefined, "the other process holds the lock");

    const start = performance.now();
    const plane = DataPlane.open({ bpffs: bpffs.path, cgroupPath: cgroup.path, areas: ["egress"] });
    const waited = performance.now() - start;
    try {
      const { code } = await holder.status;
      await holder.stdout.cancel();
      assert.equal(code, 0);
      assert.ok(waited > 700, `open waited for the lock: ${waited.toFixed(0)} ms`);
      assert.ok(plane.links.includes("aegis_connect4"), "and then loaded and attached");
      const lock = tryLockDirectory(pinDir);
      assert.ok(lock, "open released the lock");
      lock.release();
    } finally {
      plane.close();
      DataPlane.detach(bpffs.path);
    }
  } finally {
    await bpffs.unmount();
    cgroup.remove();
  }
});

rootTest(
  "[root] DataPlane.detach removes everything it can past an entry it cannot, then reports each failure",
  async () => {
    const bpffs = await TestBpffs.mount();
    const cgroup = TestCgroup.create();
    const server = listen();
    const pinDir = `${bpffs.path}/aegisbpf`;
    try {
      const plane = DataPlane.open({ bpffs: bpffs.path, cgroupPath: cgroup.path, areas: ["egress", "bind"] });
      try {
        await plane.apply(ruleSet({ mode: "enforce", rules: RULES, egress: [ipv4Rule(`${DENIED}/32`, 1)] }));
        assert.equal(await cgroup.connect(DENIED, server.port), "EPERM");
      } finally {
        plane.close();
      }
      // Entries no aegisbpf made, sorted first so that everything after them is still to do: a
      // directory where a link pin should be, and a non-empty directory among the maps.
      Deno.mkdirSync(`${pinDir}/links/0stray/inner`, { recursive: true });
      Deno.mkdirSync(`${pinDir}/maps/0stray/inner`, { recursive: true });

      let caught: unknown;
      try {
        DataPlane.detach(bpffs.path);
      } catch (error) {
        caught = error;
      }
      assert.ok(caught instanceof DetachError, `expected DetachError, got ${caught}`);
      assert.deepEqual(caught.failures.map((failure) => failure.entry), ["links/0stray", "maps/0stray"]);
      assert.equal(caught.errors.length, 2);
      assert.match(
        caught.message,
        /^Detach left 2 entries under .*aegisbpf: links\/0stray: .*; maps\/0stray: /,
      );
      assert.ok(caught.removed.includes("links/aegis_connect4"), caught.removed.join(" "));
      assert.ok(caught.removed.includes("maps/aegis_cfg"), caught.removed.join(" "));
      assert.ok(caught.removed.includes("progs/aegis_connect4"), caught.removed.join(" "));

      const left = [...Deno.readDirSync(pinDir)].map((entry) => entry.name).sort();
      assert.deepEqual(left, ["links", "maps"], "progs/ emptied and removed");
      assert.deepEqual([...Deno.readDirSync(`${pinDir}/links`)].map((entry) => entry.name), ["0stray"]);
      assert.deepEqual([...Deno.readDirSync(`${pinDir}/maps`)].map((entry) => entry.name), ["0stray"]);
      assert.equal(await cgroup.connect(DENIED, server.port), "connected", "the programs are detached");

      Deno.removeSync(`${pinDir}/links/0stray`, { recursive: true });
      Deno.removeSync(`${pinDir}/maps/0stray`, { recursive: true });
      assert.deepEqual(DataPlane.detach(bpffs.path), [], "a second detach finishes the job");
      assert.throws(() => Deno.statSync(pinDir), Deno.errors.NotFound);
    } finally {
      await server.stop();
      await bpffs.unmount();
      cgroup.remove();
    }
  },
);
