/**
 * The event_flood fixture (tests/fixtures/event_flood.bpf.c): a ring buffer that BPF fills with
 * struct aegis_event records on demand, for the ring consumer tests and the events and footprint benchmark suites.
 */
import { type BpfLink, type BpfObject, OpenBpfObject } from "../../ffi/mod.ts";

const OBJECT = new URL("../../bpf/build/fixtures/event_flood.bpf.o", import.meta.url);
const STATS = { written: 0, discarded: 1, lost: 2 } as const;
const CFG = { cgroup: 0, perCall: 1 } as const;

export type FloodStats = { written: number; discarded: number; lost: number };

export class EventFlood {
  readonly object: BpfObject;
  #link: BpfLink | undefined;

  private constructor(object: BpfObject) {
    this.object = object;
  }

  /**
   * Loads the fixture with a ring of `ringBytes` (a power of two, at least a page). With `pins` (an agent's
   * pinned `events` and `counters` maps, the ring of that size), it writes into the agent's ring and counts
   * its losses where the agent reads them.
   */
  static load(ringBytes: number, pins?: { events: string; counters: string }): EventFlood {
    const open = OpenBpfObject.fromBytes(Deno.readFileSync(OBJECT), "event_flood");
    open.setMaxEntries("events", ringBytes);
    if (pins) open.setPinPath("events", pins.events).setPinPath("counters", pins.counters);
    return new EventFlood(open.load());
  }

  get ring() {
    return this.object.map("events");
  }

  /** Writes `count` records now, on this thread (BPF_PROG_TEST_RUN); every `discardEvery`th is discarded. */
  produce(count: number, discardEvery = 0): void {
    const packet = new Uint8Array(64);
    const view = new DataView(packet.buffer);
    view.setUint32(0, count, true);
    view.setUint32(4, discardEvery, true);
    this.object.program("flood_run").testRun(packet);
  }

  /** From now on, each write(2) by a task in cgroup `cgroupId` writes `perCall` records. */
  floodOnWrite(cgroupId: bigint, perCall: number): void {
    this.#setCfg(CFG.cgroup, cgroupId);
    this.#setCfg(CFG.perCall, BigInt(perCall));
    this.#link ??= this.object.program("flood_syscall").attach();
  }

  /** What the programs wrote, discarded, and lost to a full ring, summed over CPUs. */
  stats(): FloodStats {
    const read = (slot: number) => {
      const bytes = this.object.map("flood_stats").lookup(u32(slot));
      if (!bytes) return 0;
      const view = new DataView(bytes.buffer);
      let total = 0;
      for (let offset = 0; offset + 8 <= bytes.byteLength; offset += 8) {
        total += Number(view.getBigUint64(offset, true));
      }
      return total;
    };
    return { written: read(STATS.written), discarded: read(STATS.discarded), lost: read(STATS.lost) };
  }

  close(): void {
    this.#link?.close();
    this.object.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #setCfg(slot: number, value: bigint): void {
    this.object.map("flood_cfg").update(u32(slot), new Uint8Array(new BigUint64Array([value]).buffer));
  }
}

function u32(value: number): Uint8Array<ArrayBuffer> {
  return new Uint8Array(new Uint32Array([value]).buffer);
}
