import assert from "node:assert/strict";
import { DataPlane } from "../../../lib/kernel/dataplane.ts";
import { pinnedLinks } from "../../../lib/kernel/inspect.ts";
import { probeAreas } from "../../../lib/kernel/probe.ts";

// doctor's verdicts where BPF-LSM loads (the qemu guest of tests/vm/harness.ts), the other side of the
// host, where file and exec are audit-only.
const inVm = Deno.env.get("AEGIS_IN_VM") === "1";

Deno.test({
  name: "[vm] probeAreas() says every area can enforce where BPF-LSM programs load",
  ignore: !inVm,
  fn() {
    const areas = probeAreas();
    for (const [area, { verdict, reason }] of Object.entries(areas)) {
      assert.equal(verdict, "enforce", `${area}: ${reason}`);
    }
    assert.match(areas.file.reason, /aegis_file_open loads and bpf is an active LSM/);
  },
});

Deno.test({
  name: "[vm] pinned BPF-LSM links read as attached tracing links through their pins",
  ignore: !inVm,
  fn() {
    const bpffs = "/sys/fs/bpf/doctor";
    Deno.mkdirSync(bpffs, { recursive: true });
    try {
      DataPlane.open({ bpffs, areas: ["file", "exec"] }).close();
      const links = pinnedLinks(bpffs);
      const byName = new Map(links.map((link) => [link.name, link]));
      for (const name of ["aegis_file_open", "aegis_bprm_check"]) {
        assert.equal(byName.get(name)?.attached, true, `${name}: ${JSON.stringify(links)}`);
        assert.equal(byName.get(name)?.type, "tracing");
      }
    } finally {
      DataPlane.detach(bpffs);
      Deno.removeSync(bpffs);
    }
  },
});
