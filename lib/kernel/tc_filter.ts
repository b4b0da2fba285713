/**
 * network.egress.forwarded where the kernel has no tcx links (before Linux 6.6, e.g. Debian 12's 6.1):
 * aegis_forward attached as a classic tc filter on the clsact qdisc's egress of each interface.
 *
 * A filter is not a BPF object and cannot be pinned. aegisbpf owns one place on each interface's egress,
 * handle 0xae6b at priority 1 (the first to run, so no other filter's verdict ends classification before
 * it), and records a filter it put there as the program the filter runs, pinned at
 * `<pinDir>/tc/aegis_forward@IFACE`. The filter counts as aegisbpf's, attached, only while the interface of
 * that name has a filter at that place running that very program (bpf_tc_query's program id against the
 * pin's): a record whose interface is gone, was made anew, or whose filter was deleted is stale. Detach
 * deletes the filter at that place alone, and only while it runs the recorded program: the clsact qdisc
 * stays (another tool's filters may hang on it; an empty one costs nothing), and another tool's filters
 * are never touched. The filter holds its program: it goes on judging after the process that attached it
 * exits, as a pinned link does. Names are looked up in the network namespace of the calling thread.
 */
import {
  ifIndex,
  pinFd,
  pinnedProgramId,
  tcAttachEgress,
  tcDetachEgress,
  tcEnsureClsact,
  type TcFilterPlace,
  tcQueryEgress,
} from "../../ffi/mod.ts";
import { exists, listDir } from "./pin_dir.ts";

/** The handle and priority of aegisbpf's filter on an interface's egress. */
export const FORWARD_FILTER = { handle: 0xae6b, priority: 1 } as const;

/** The directory of the records, under the pin directory. */
export const TC_DIR = "tc";

/** What the kernel says of a recorded filter. */
export type FilterStatus = {
  /** The interface's index now, or undefined where no interface has the recorded name. */
  ifindex: number | undefined;
  /** The id of the recorded program, or undefined where the record is gone. */
  programId: number | undefined;
  /** The id of the program aegisbpf's place on the interface runs, or undefined where there is none. */
  running: number | undefined;
  /** Whether the interface's filter runs the recorded program. */
  attached: boolean;
};

export function filterRecordPath(pinDir: string, name: string): string {
  return `${pinDir}/${TC_DIR}/${name}`;
}

/** The interface of a record (`aegis_forward@IFACE`). */
export function filterInterface(name: string): string {
  return name.slice(name.indexOf("@") + 1);
}

export function place(ifindex: number): TcFilterPlace {
  return { ifindex, ...FORWARD_FILTER };
}

/** The names of the filters recorded under `pinDir`. */
export function recordedFilters(pinDir: string): string[] {
  return listDir(`${pinDir}/${TC_DIR}`);
}

/** The status of the filter recorded as `name`, on interface `ifindex` (by default the one of its name). */
export function filterStatus(pinDir: string, name: string, ifindex?: number): FilterStatus {
  const recorded = pinnedProgramId(filterRecordPath(pinDir, name));
  const index = ifindex ?? interfaceIndex(filterInterface(name));
  const running = index === undefined ? undefined : tcQueryEgress(place(index));
  return {
    ifindex: index,
    programId: recorded,
    running,
    attached: recorded !== undefined && running === recorded,
  };
}

/**
 * Puts `program` at aegisbpf's place on the egress of interface `ifindex` (making its clsact qdisc where
 * it has none) and records it as `name`. A filter already there is given the program in one step (no
 * moment without a filter), and the record follows. Returns the program id the filter runs.
 */
export function attachFilter(
  program: { readonly fd: number },
  pinDir: string,
  name: string,
  ifindex: number,
): number {
  tcEnsureClsact(ifindex);
  const id = tcAttachEgress(program.fd, place(ifindex));
  Deno.mkdirSync(`${pinDir}/${TC_DIR}`, { recursive: true });
  const path = filterRecordPath(pinDir, name);
  if (pinnedProgramId(path) !== id) {
    if (exists(path)) Deno.removeSync(path);
    pinFd(program.fd, path);
  }
  return id;
}

/**
 * Deletes the filter recorded as `name` where it still runs the recorded program (nothing else: a filter
 * another tool put at the place since is left alone), then the record.
 */
export function removeFilter(pinDir: string, name: string, ifindex?: number): void {
  const status = filterStatus(pinDir, name, ifindex);
  if (status.attached && status.ifindex !== undefined) tcDetachEgress(place(status.ifindex));
  const path = filterRecordPath(pinDir, name);
  if (exists(path)) Deno.removeSync(path);
}

function interfaceIndex(name: string): number | undefined {
  try {
    return ifIndex(name);
  } catch {
    return undefined;
  }
}
