import assert from "node:assert/strict";
import {
  AEGIS_GEN_INFO,
  AEGIS_INHERIT,
  AEGIS_INODE_KEY,
  CFG,
  decodeU64,
  encodeU32,
  FdMap,
} from "../../ffi/mod.ts";
import { DataPlane } from "../../lib/kernel/dataplane.ts";
import { UpgradeError } from "../../lib/kernel/upgrade.ts";
import { readEnforceSignal, writeEnforceSignal } from "../../lib/kernel/mode_words.ts";
import { PROGRAMS } from "../../lib/kernel/object.ts";
import { TestBpffs } from "../support/bpffs.ts";
import { TestCgroup } from "../support/cgroup.ts";
import { startConnectLoop } from "../support/loops.ts";
import { listen, ruleSet } from "../support/plane.ts";
import { must, rootTest } from "../support/privileged.ts";
import { exists } from "../../lib/kernel/pin_dir.ts";
import { ipv4Rule } from "../support/slice.ts";

// The "next release": the same object built with one map of another size and one program changed.
const NEXT_RELEASE = Deno.readFileSync(
  new URL("../../bpf/build/fixtures/aegis_variant.bpf.o", import.meta.url),
);
const DENIED = "127.0.0.2";
const RULES = [
  { id: "default", area: "ingress" as const, action: "deny" as const },
  { id: "loopback2", area: "egress" as const, action: "deny" as const },
  { id: "loopback3", area: "egress" as const, action: "deny" as const },
];

/** An inode (ino 77 on dev 8:1) that replaced a denied one (ino 66) by rename, i_generation 5. */
const INHERITOR = new Uint8Array(AEGIS_INODE_KEY.size);
new DataView(INHERITOR.buffer).setBigUint64(0, 77n, true);
new DataView(INHERITOR.buffer).setUint32(8, (8 << 20) | 1, true);
const INHERITANCE = new Uint8Array(AEGIS_INHERIT.size);
new DataView(INHERITANCE.buffer).setBigUint64(0, 66n, true);
new DataView(INHERITANCE.buffer).setUint32(8, (8 << 20) | 1, true);
new DataView(INHERITANCE.buffer).setUint32(12, 5, true);

/** The id of the program a pinned link runs (bpftool reads it from the kernel). */
async function linkProgramId(path: string): Promise<number> {
  const out = await new Deno.Command("bpftool", {
    args: ["--json", "link", "show", "pinned", path],
    stdout: "piped",
  })
    .output();
  return (JSON.parse(new TextDecoder().decode(out.stdout)) as { prog_id: number }).prog_id;
}

rootTest(
  "[root] a release whose maps and programs differ takes the pins over under a connect loop that never gets through",
  async () => {
    const server = listen();
    const cgroup = TestCgroup.create();
    const bpffs = await TestBpffs.mount();
    const options = { bpffs: bpffs.path, cgroupPath: cgroup.path, areas: ["egress", "file"] as const };
    try {
      {
        using old = DataPlane.open(options);
        await old.apply(ruleSet({ mode: "enforce", rules: RULES, egress: [ipv4Rule(`${DENIED}/32`, 1)] }));
        old.setConfig({ forceAudit: false });
        writeEnforceSignal(bpffs.path, "term");
        old.map("inherited").update(INHERITOR, INHERITANCE);
      }
      const linkPath = `${bpffs.path}/aegisbpf/links/${PROGRAMS.connect4}`;
      const oldProgram = await linkProgramId(linkPath);
      // On this host the file area runs on tracepoints (BPF-LSM refuses to load): links without
      // bpf_link_update, replaced by attaching the new one first.
      const tracepointPath = `${bpffs.path}/aegisbpf/links/${PROGRAMS.fileOpenAudit}`;
      const oldTracepoint = await linkProgramId(tracepointPath);
      // A map only the old release had (one a release dropped): pinned beside the others.
      const retired = `${bpffs.path}/aegisbpf/maps/retired_map`;
      await must("bpftool", [
        "map",
        "create",
        retired,
        "type",
        "array",
        "key",
        "4",
        "value",
        "4",
        "entries",
        "1",
        "name",
        "retired_map",
      ]);
      const loop = await startConnectLoop(cgroup, DENIED, server.port);
      let tally;
      let next;
      try {
        next = DataPlane.open({ ...options, image: NEXT_RELEASE });
      } finally {
        tally = await loop.stop();
      }
      using plane = next;
      assert.equal(tally.leaks, 0, `${tally.leaks} of ${tally.attempts} connects got through`);
      assert.ok(tally.attempts > 0, "the loop ran");
      using rates = FdMap.open(`${bpffs.path}/aegisbpf/maps/event_rate`);
      assert.equal(rates.maxEntries, 32768, "the pinned map is the new release's");
      assert.notEqual(await linkProgramId(linkPath), oldProgram, "the link runs the new release's program");
      assert.notEqual(await linkProgramId(tracepointPath), oldTracepoint, "so does the tracepoint's");
      assert.deepEqual(
        [...Deno.readDirSync(`${bpffs.path}/aegisbpf`)].map((entry) => entry.name).sort(),
        ["links", "maps", "progs"],
        "no staging pins are left",
      );
      assert.ok(!exists(retired), "the pin of a map the new release does not declare is gone");
      const info = plane.activeGenInfo();
      assert.equal(info.netRulesEntries + info.netExactEntries, 1, "the live rules came along");
      assert.equal(readEnforceSignal(bpffs.path), "term", "the kill-on-deny word came along");
      assert.deepEqual(
        plane.map("inherited").lookup(INHERITOR),
        INHERITANCE,
        "so did a rule inherited by rename",
      );
      assert.equal(
        decodeU64(plane.map("aegis_cfg").lookup(encodeU32(CFG.INHERITED))!),
        1n,
        "and the word that makes the hooks look inheritances up",
      );
      assert.equal(await cgroup.connect(DENIED, server.port), "EPERM", "still enforcing after the hand-over");
      await plane.apply(ruleSet({ mode: "enforce", rules: RULES, egress: [ipv4Rule("127.0.0.3/32", 2)] }));
      assert.equal(await cgroup.connect("127.0.0.3", server.port), "EPERM", "the new release applies");
      assert.equal(await cgroup.connect(DENIED, server.port), "connected", "and replaces the old rules");
    } finally {
      DataPlane.detach(bpffs.path);
      await bpffs.unmount();
      cgroup.remove();
      await server.stop();
    }
  },
);

rootTest(
  "[root] pins that cannot be carried over are refused with the map named, and keep enforcing",
  async () => {
    const server = listen();
    const cgroup = TestCgroup.create();
    const bpffs = await TestBpffs.mount();
    const options = { bpffs: bpffs.path, cgroupPath: cgroup.path, areas: ["egress"] as const };
    try {
      {
        using old = DataPlane.open(options);
        await old.apply(ruleSet({ mode: "enforce", rules: RULES, egress: [ipv4Rule(`${DENIED}/32`, 1)] }));
      }
      // What an older layout looks like: gen_info with 24-byte values.
      const genInfo = `${bpffs.path}/aegisbpf/maps/gen_info`;
      Deno.removeSync(genInfo);
      const created = await new Deno.Command("bpftool", {
        args: [
          "map",
          "create",
          genInfo,
          "type",
          "array",
          "key",
          "4",
          "value",
          "24",
          "entries",
          "2",
          "name",
          "gen_info",
        ],
      }).output();
      assert.ok(created.success, "bpftool made the old-layout map");
      assert.throws(() => DataPlane.open({ ...options, image: NEXT_RELEASE }), (error: unknown) => {
        assert.ok(error instanceof UpgradeError);
        assert.equal(error.map, "gen_info");
        assert.match(
          error.message,
          new RegExp(
            `gen_info: its values are 24 bytes, this release's ${AEGIS_GEN_INFO.size}; run aegisbpf detach`,
          ),
        );
        return true;
      });
      assert.equal(await cgroup.connect(DENIED, server.port), "EPERM", "the old programs still enforce");
      assert.throws(() => Deno.statSync(`${bpffs.path}/aegisbpf/staging`), Deno.errors.NotFound);
    } finally {
      DataPlane.detach(bpffs.path);
      await bpffs.unmount();
      cgroup.remove();
      await server.stop();
    }
  },
);
