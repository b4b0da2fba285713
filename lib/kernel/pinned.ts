import { FdMap } from "../../ffi/mod.ts";
import { type Counters, decodeCounters } from "./dataplane.ts";
import { exists } from "./pin_dir.ts";

/**
 * The decision and event counters read through their pin alone (no object loaded, nothing attached, no
 * lock taken), or undefined when nothing of aegisbpf is pinned under `bpffs`.
 */
export function readPinnedCounters(bpffs: string): Counters | undefined {
  const path = `${bpffs}/aegisbpf/maps/counters`;
  if (!exists(path)) return undefined;
  using map = FdMap.open(path);
  return decodeCounters(map);
}

/** Every deny decision counted so far, over all hooks. */
export function totalDenies(counters: Counters): bigint {
  return Object.values(counters.decisions).reduce((sum, hook) => sum + hook.deny, 0n);
}
