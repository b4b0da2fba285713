/**
 * The data plane read through its pins alone: no object loaded, nothing attached, no lock taken. For
 * `metrics`, `policy apply --canary` and anything else that must work with or without a running agent
 * and never change what the kernel enforces.
 */

import { decodeGenInfo, encodeU32, FdMap, type GenInfo } from "../../ffi/mod.ts";
import { type Counters, decodeCounters } from "./dataplane.ts";
import { readModeWords } from "./mode_words.ts";
import { PROGRAMS } from "./object.ts";
import { exists, listDir } from "./pin_dir.ts";

const mapPath = (bpffs: string, name: string) => `${bpffs}/aegisbpf/maps/${name}`;

function openPinned(bpffs: string, name: string): FdMap | undefined {
  const path = mapPath(bpffs, name);
  return exists(path) ? FdMap.open(path) : undefined;
}

/** Decision and event counters, or undefined when nothing of aegisbpf is pinned under `bpffs`. */
export function readPinnedCounters(bpffs: string): Counters | undefined {
  using map = openPinned(bpffs, "counters");
  return map && decodeCounters(map);
}

/** Every deny decision counted so far, over all hooks. */
export function totalDenies(counters: Counters): bigint {
  return Object.values(counters.decisions).reduce((sum, hook) => sum + hook.deny, 0n);
}

/** What the live generation holds (mode, entry counts), or undefined when nothing is pinned or applied. */
export function readPinnedGenInfo(bpffs: string): GenInfo | undefined {
  const words = readModeWords(bpffs);
  if (!words) return undefined;
  using map = openPinned(bpffs, "gen_info");
  const value = map?.lookup(encodeU32(words.activeGen));
  return value && decodeGenInfo(value);
}

/** Entries and capacity of an ordinary (not map-of-maps) pinned map, counted by walking its keys. */
export function readPinnedMapFill(
  bpffs: string,
  name: string,
): { entries: number; capacity: number } | undefined {
  using map = openPinned(bpffs, name);
  return map && { entries: map.keys().length, capacity: map.maxEntries };
}

/** The pinned link names: program names, and `aegis_xdp@IFACE` for each ingress interface. */
export function pinnedLinkNames(bpffs: string): string[] {
  return listDir(`${bpffs}/aegisbpf/links`);
}

/** The programs that run as hooks (all but the rate-limit flusher, which runs on demand). */
export const HOOK_PROGRAMS: readonly string[] = Object.values(PROGRAMS).filter((name) =>
  name !== PROGRAMS.flushRates
);
