import assert from "node:assert/strict";
import { ifIndex } from "../../../ffi/mod.ts";
import { pinnedLinks } from "../../../lib/kernel/inspect.ts";
import { hasTcx, PlaneLinks } from "../../../lib/kernel/links.ts";
import { loadPrograms, PROGRAMS } from "../../../lib/kernel/object.ts";
import { makePinDirs } from "../../../lib/kernel/pin_dir.ts";

// network.egress.forwarded on Debian's kernels: its tc program is attached as a tcx link, which Linux 6.6
// brought. On 6.12 it attaches and pins (here to lo, the guest's only interface: the attach is what is
// proven); on 6.1 the attach fails with an error that says so, which DataPlane.apply passes on before its
// flip (the live rules stay). The program alone is loaded: a whole plane costs a minute under emulation.
const inVm = Deno.env.get("AEGIS_IN_VM") === "1";

Deno.test({
  name:
    "[vm] forwarded: the tc program attaches as a tcx link on 6.6+, and fails naming tcx on older kernels",
  ignore: !inVm,
  fn: () => {
    const bpffs = "/sys/fs/bpf/forward";
    const pinDir = `${bpffs}/aegisbpf`;
    makePinDirs(pinDir);
    const object = loadPrograms([PROGRAMS.forward]);
    const links = new PlaneLinks(object, pinDir, "generic");
    try {
      const attach = () => links.attachForward(ifIndex("lo"), "lo");
      if (hasTcx(Deno.osRelease())) {
        assert.equal(attach(), "aegis_forward@lo");
        const link = pinnedLinks(bpffs).find((link) => link.name === "aegis_forward@lo");
        assert.deepEqual(link && [link.type, link.attached], ["tcx", true]);
        links.remove("aegis_forward@lo");
        assert.deepEqual(pinnedLinks(bpffs), []);
      } else {
        assert.throws(attach, /network\.egress\.forwarded needs tcx links \(Linux 6\.6 or later\)/);
        assert.deepEqual(links.names, []);
      }
    } finally {
      links.close();
      object.close();
      Deno.removeSync(bpffs, { recursive: true });
    }
  },
});
