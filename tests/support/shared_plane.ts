/**
 * One data plane for every test of a VM test file. A full load verifies every program again, 10-20 s a test
 * under emulation; here the first test loads and pins them, and each later test opens the plane again over
 * the same pins (adopting the programs and links: nothing is loaded) after putting back what a fresh load
 * starts from: no mode word on (forced audit, break-glass, deadman, kill on deny, the inheritance lookup),
 * every counter at zero, no rule hit, rate limit, inherited inode, ingress session or XDP statistic, and an
 * empty ring buffer. The rules need no reset: each test applies its own policy, which replaces the whole
 * rule set, and `release()` applies an empty one at its end (so that the files it denied can be removed).
 *
 * The last test of the file must call `detach()`: the BPF-LSM links would otherwise outlive the file.
 */
import { CONFIG_WORDS, encodeU32, encodeU64 } from "../../ffi/mod.ts";
import { DataPlane, type DataPlaneOptions } from "../../lib/kernel/dataplane.ts";
import { exists } from "../../lib/kernel/pin_dir.ts";
import { resolvePlan } from "../../lib/kernel/resolve.ts";
import { emptyPlan } from "../../lib/policy/plan.ts";
import { drain } from "./plane.ts";

/** The mode words a fresh load leaves at zero (the layout word is written by every open). */
const MODE_WORDS = [
  CONFIG_WORDS.forceAudit,
  CONFIG_WORDS.breakGlass,
  CONFIG_WORDS.deadmanDeadlineNs,
  CONFIG_WORDS.enforceSignal,
  CONFIG_WORDS.inherited,
];
/** Maps whose entries a fresh load has none of. */
const EMPTY_MAPS = [
  "rule_hits",
  "event_rate",
  "xdp_stats",
  "inherited",
  "ingress_session",
  "exceptions",
  "exception_nets",
];

export class SharedPlane {
  readonly bpffs: string;
  #made = false;
  #options: Omit<DataPlaneOptions, "bpffs"> = {};

  /** `name`: the pin directory's name under /sys/fs/bpf, one per test file. */
  constructor(name: string) {
    this.bpffs = `/sys/fs/bpf/${name}`;
  }

  /** The plane, as a fresh load would give it (the first call loads; later calls adopt the pins). */
  open(options: Omit<DataPlaneOptions, "bpffs">): DataPlane {
    if (!this.#made) {
      // What an interrupted earlier run left goes first.
      if (exists(this.bpffs)) DataPlane.detach(this.bpffs);
      Deno.mkdirSync(this.bpffs, { recursive: true });
      this.#made = true;
    }
    this.#options = options;
    const plane = DataPlane.open({ ...options, bpffs: this.bpffs });
    try {
      reset(plane);
    } catch (error) {
      plane.close();
      throw error;
    }
    return plane;
  }

  /**
   * At a test's end: an empty policy in force (nothing the test denied stays denied), and the plane closed.
   * `undefined`: the test closed its plane already (an agent that exited); one is opened for the apply.
   */
  async release(plane: DataPlane | undefined): Promise<void> {
    plane ??= DataPlane.open({ ...this.#options, bpffs: this.bpffs });
    try {
      await plane.apply(resolvePlan(emptyPlan()));
    } finally {
      plane.close();
    }
  }

  /** Removes everything the plane pinned and attached. */
  detach(): void {
    if (!exists(this.bpffs)) return;
    DataPlane.detach(this.bpffs);
    Deno.removeSync(this.bpffs);
  }
}

function reset(plane: DataPlane): void {
  const config = plane.map("aegis_cfg");
  for (const word of MODE_WORDS) config.update(encodeU32(word), encodeU64(0n));
  const counters = plane.map("counters");
  for (let slot = 0;; slot++) {
    const value = counters.lookup(encodeU32(slot));
    if (!value) break;
    counters.update(encodeU32(slot), new Uint8Array(value.length));
  }
  const slots = plane.map("rule_hit_slots");
  for (let index = 0; index < slots.maxEntries; index++) {
    slots.update(encodeU32(index), new Uint8Array(slots.lookupSize));
  }
  for (const name of EMPTY_MAPS) {
    const map = plane.map(name);
    for (const key of map.keys()) map.delete(key);
  }
  drain(plane);
}
