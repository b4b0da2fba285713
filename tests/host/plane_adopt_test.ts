import assert from "node:assert/strict";
import { BUILD_PROGRAMS, FdMap } from "../../ffi/mod.ts";
import { DataPlane } from "../../lib/kernel/dataplane.ts";
import { probeLsm, probeLsmAt } from "../../lib/kernel/load.ts";
import { PROGRAMS } from "../../lib/kernel/object.ts";
import { exists } from "../../lib/kernel/pin_dir.ts";
import { BUILD_MAP, readBuildRecord } from "../../lib/kernel/programs.ts";
import { TestBpffs } from "../support/bpffs.ts";
import { TestCgroup } from "../support/cgroup.ts";
import { listen, ruleSet } from "../support/plane.ts";
import { rootTest } from "../support/privileged.ts";
import { ipv4Rule } from "../support/slice.ts";

// Another build with every map the same and one program changed (tests/fixtures/aegis_same_maps.bpf.c).
const OTHER_BUILD = Deno.readFileSync(
  new URL("../../bpf/build/fixtures/aegis_same_maps.bpf.o", import.meta.url),
);
const DENIED = "127.0.0.2";
const RULES = [
  { id: "default", area: "ingress" as const, action: "deny" as const },
  { id: "deny-2", area: "egress" as const, action: "deny" as const },
];

type BpftoolProgram = { id: number; name: string; map_ids?: number[] };

async function bpftool<T>(...args: string[]): Promise<T> {
  const out = await new Deno.Command("bpftool", { args: ["--json", ...args], stdout: "piped" }).output();
  assert.ok(out.success, `bpftool ${args.join(" ")}`);
  return JSON.parse(new TextDecoder().decode(out.stdout)) as T;
}

/**
 * What the kernel holds of the plane under `bpffs`: the program each pinned link runs, the id of each pinned
 * map, and every loaded program that uses the plane's config map (any load of the object with these pins).
 */
async function kernelView(bpffs: string, links: readonly string[], maps: readonly string[]) {
  const pinDir = `${bpffs}/aegisbpf`;
  const linkPrograms: Record<string, number> = {};
  for (const name of links) {
    linkPrograms[name] =
      (await bpftool<{ prog_id: number }>("link", "show", "pinned", `${pinDir}/links/${name}`))
        .prog_id;
  }
  const mapIds: Record<string, number> = {};
  for (const name of maps) {
    mapIds[name] = (await bpftool<{ id: number }>("map", "show", "pinned", `${pinDir}/maps/${name}`)).id;
  }
  const programs = (await bpftool<BpftoolProgram[]>("prog", "show"))
    .filter((prog) => prog.map_ids?.includes(mapIds.aegis_cfg!))
    .map((prog) => prog.id)
    .sort((a, b) => a - b);
  return { linkPrograms, mapIds, programs };
}

/** This process's descriptors of BTF objects: a load of the object holds one (its own BTF), until closed. */
function btfDescriptors(): number {
  return [...Deno.readDirSync("/proc/self/fd")].filter(({ name }) => {
    try {
      return Deno.readLinkSync(`/proc/self/fd/${name}`) === "anon_inode:btf";
    } catch {
      return false; // closed meanwhile, or the listing's own descriptor
    }
  }).length;
}

const LINKS = [PROGRAMS.connect4, PROGRAMS.sendmsg6, PROGRAMS.packetEgress, PROGRAMS.bind4];
const MAPS = ["aegis_cfg", "rules", "net_rules", "gen_info", "events", BUILD_MAP];

rootTest(
  "[root] a second process of the same build adopts the pinned programs: none loaded, the same programs " +
    "attached, the same maps, and its applies enforce",
  async () => {
    const bpffs = await TestBpffs.mount();
    const cgroup = TestCgroup.create();
    const server = listen();
    const options = { bpffs: bpffs.path, cgroupPath: cgroup.path, areas: ["egress", "bind"] as const };
    try {
      let before;
      const btf = btfDescriptors();
      {
        using first = DataPlane.open(options);
        assert.equal(first.adopted, false, "the first open loads");
        assert.ok(btfDescriptors() > btf, "a load holds the object's BTF");
        before = await kernelView(bpffs.path, LINKS, MAPS);
      }
      const record = readBuildRecord(`${bpffs.path}/aegisbpf/maps`);
      assert.ok(record, "the load recorded its build");
      // What the kernel said of BPF-LSM is recorded for the boot: later commands answer without a probe.
      const probe = probeLsm();
      if (probe.ok) assert.ok(record.programs & BUILD_PROGRAMS.EGRESS_LSM);
      else {
        assert.equal(record.programs & BUILD_PROGRAMS.LSM_REFUSED, BUILD_PROGRAMS.LSM_REFUSED);
        assert.equal(record.lsmErrno, probe.errno);
        const known = probeLsmAt(`${bpffs.path}/aegisbpf`);
        assert.deepEqual({ ...known, log: "" }, { ...probe, log: "" });
      }
      using second = DataPlane.open(options);
      assert.equal(second.adopted, true);
      // Not even the object is loaded: its maps are taken from their pins (no BTF loaded, none of the
      // kernel's parsed).
      assert.equal(btfDescriptors(), btf, "the adopting open loaded nothing");
      const after = await kernelView(bpffs.path, LINKS, MAPS);
      assert.deepEqual(after, before, "the same links run the same programs, on the same maps, none added");
      await second.apply(ruleSet({ mode: "enforce", rules: RULES, egress: [ipv4Rule(`${DENIED}/32`, 1)] }));
      assert.equal(await cgroup.connect(DENIED, server.port), "EPERM");
      second.flushRateLimits(); // the pinned program runs by its descriptor
      // The load pinned only the sets of its areas: egress and bind, and nothing of file, exec or ingress.
      for (const set of ["FILE_LSM", "FILE_AUDIT", "EXEC_LSM", "EXEC_AUDIT", "INGRESS", "FORWARD"] as const) {
        assert.equal(record.programs & BUILD_PROGRAMS[set], 0, set);
      }
      assert.ok(!exists(`${bpffs.path}/aegisbpf/progs/${PROGRAMS.ingress}`));
      assert.ok(record.programs & BUILD_PROGRAMS.EGRESS && record.programs & BUILD_PROGRAMS.BIND);
      // An area the pins lack: its set loads alone (one object), is pinned and recorded; the rest stays
      // adopted, the same programs running.
      second.close();
      {
        using third = DataPlane.open({ ...options, areas: ["egress", "bind", "ingress"] });
        assert.equal(third.adopted, false, "it loaded the ingress set");
        const view = await kernelView(bpffs.path, LINKS, MAPS);
        assert.deepEqual(view.linkPrograms, before.linkPrograms);
        assert.deepEqual(view.programs.filter((id) => before.programs.includes(id)), before.programs);
        assert.ok(view.programs.length > before.programs.length, "aegis_xdp added");
        assert.ok(exists(`${bpffs.path}/aegisbpf/progs/${PROGRAMS.ingress}`));
        assert.ok(readBuildRecord(`${bpffs.path}/aegisbpf/maps`)!.programs & BUILD_PROGRAMS.INGRESS);
        third.flushRateLimits();
      }
      using fourth = DataPlane.open({ ...options, areas: ["egress", "bind", "ingress"] });
      assert.equal(fourth.adopted, true);
      const ingressIds = (await kernelView(bpffs.path, LINKS, MAPS)).programs;
      fourth.flushRateLimits(); // by its pin
      assert.deepEqual((await kernelView(bpffs.path, LINKS, MAPS)).programs, ingressIds, "nothing loaded");
    } finally {
      await server.stop();
      DataPlane.detach(bpffs.path);
      await bpffs.unmount();
      cgroup.remove();
    }
  },
);

rootTest(
  "[root] another build's record is not adopted: its programs take the links over, and back; a cleared " +
    "record loads again",
  async () => {
    const bpffs = await TestBpffs.mount();
    const cgroup = TestCgroup.create();
    const server = listen();
    const options = { bpffs: bpffs.path, cgroupPath: cgroup.path, areas: ["egress"] as const };
    const mapDir = `${bpffs.path}/aegisbpf/maps`;
    try {
      let ours;
      {
        using plane = DataPlane.open(options);
        await plane.apply(ruleSet({ mode: "enforce", rules: RULES, egress: [ipv4Rule(`${DENIED}/32`, 1)] }));
        ours = await kernelView(bpffs.path, [PROGRAMS.connect4], MAPS);
      }
      let other;
      {
        using plane = DataPlane.open({ ...options, image: OTHER_BUILD });
        assert.equal(plane.adopted, false, "another build's object is not this one's");
        other = await kernelView(bpffs.path, [PROGRAMS.connect4], MAPS);
        assert.notEqual(
          other.linkPrograms.aegis_connect4,
          ours.linkPrograms.aegis_connect4,
          "its program runs",
        );
        assert.deepEqual(other.mapIds, ours.mapIds, "on the same maps (nothing to hand over)");
        assert.equal(await cgroup.connect(DENIED, server.port), "EPERM", "the live rules go on");
      }
      {
        using plane = DataPlane.open(options);
        assert.equal(plane.adopted, false, "nor is the real object the other build's");
        const back = await kernelView(bpffs.path, [PROGRAMS.connect4], MAPS);
        assert.notEqual(back.linkPrograms.aegis_connect4, other.linkPrograms.aegis_connect4);
        assert.equal(await cgroup.connect(DENIED, server.port), "EPERM");
      }
      {
        using plane = DataPlane.open(options);
        assert.equal(plane.adopted, true, "once recorded again, adopted");
      }
      // A record cleared (as a load of another object does first, before it changes the pins): loaded.
      {
        using map = FdMap.open(`${mapDir}/${BUILD_MAP}`);
        map.update(new Uint8Array(4), new Uint8Array(40));
      }
      assert.equal(readBuildRecord(mapDir), undefined);
      {
        using plane = DataPlane.open(options);
        assert.equal(plane.adopted, false);
      }
      // A program pin gone (a killed load between its unpin and its pin): loaded, and pinned again.
      Deno.removeSync(`${bpffs.path}/aegisbpf/progs/${PROGRAMS.sendmsg4}`);
      {
        using plane = DataPlane.open(options);
        assert.equal(plane.adopted, false);
      }
      assert.ok(Deno.statSync(`${bpffs.path}/aegisbpf/progs/${PROGRAMS.sendmsg4}`).isFile);
      assert.equal(await cgroup.connect(DENIED, server.port), "EPERM");
    } finally {
      await server.stop();
      DataPlane.detach(bpffs.path);
      await bpffs.unmount();
      cgroup.remove();
    }
  },
);

rootTest(
  "[root] a plane loads only its areas' programs; taking another build's pins over, it also loads what their links run",
  async () => {
    const bpffs = await TestBpffs.mount();
    const cgroup = TestCgroup.create();
    const options = { bpffs: bpffs.path, cgroupPath: cgroup.path };
    const progs = `${bpffs.path}/aegisbpf/progs`;
    try {
      {
        using plane = DataPlane.open({ ...options, areas: ["egress", "bind"], image: OTHER_BUILD });
        assert.equal(plane.adopted, false);
      }
      const other = await kernelView(bpffs.path, [PROGRAMS.connect4, PROGRAMS.bind4], MAPS);
      {
        // Egress alone, but the bind links run the other build's programs: this build's take them over.
        using plane = DataPlane.open({ ...options, areas: ["egress"] });
        assert.equal(plane.adopted, false);
      }
      const ours = await kernelView(bpffs.path, [PROGRAMS.connect4, PROGRAMS.bind4], MAPS);
      assert.notEqual(ours.linkPrograms.aegis_connect4, other.linkPrograms.aegis_connect4);
      assert.notEqual(ours.linkPrograms.aegis_bind4, other.linkPrograms.aegis_bind4);
      const record = readBuildRecord(`${bpffs.path}/aegisbpf/maps`)!;
      assert.ok(record.programs & BUILD_PROGRAMS.BIND, "the bind set it loaded is recorded");
      for (const name of [PROGRAMS.ingress, PROGRAMS.forward, PROGRAMS.fileOpenAudit, PROGRAMS.execAudit]) {
        assert.ok(!exists(`${progs}/${name}`), `${name} is not loaded for egress and bind`);
      }
      {
        using plane = DataPlane.open({ ...options, areas: ["egress", "bind"] });
        assert.equal(plane.adopted, true);
      }
    } finally {
      DataPlane.detach(bpffs.path);
      await bpffs.unmount();
      cgroup.remove();
    }
  },
);
