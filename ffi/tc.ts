/**
 * Classic tc (a filter on a clsact qdisc) through libbpf's bpf_tc_* calls (libbpf 0.4+, in Debian 12's
 * 1.1): how a tc program is attached where the kernel has no tcx links (before Linux 6.6). A filter is not
 * a BPF object and cannot be pinned: it is found again by its interface, handle and priority.
 */
import { unwrap } from "./error.ts";
import { cString, libbpf } from "./libbpf.ts";
import { withLibbpfLog } from "./log.ts";
import { closeFd } from "./sys.ts";

/** enum bpf_tc_attach_point: BPF_TC_EGRESS. */
const BPF_TC_EGRESS = 1 << 1;
/** enum bpf_tc_flags: BPF_TC_F_REPLACE, swap the program of an existing filter in one step. */
const BPF_TC_F_REPLACE = 1 << 0;

/*
 * struct bpf_tc_hook { size_t sz; int ifindex; enum bpf_tc_attach_point attach_point; __u32 parent;
 * size_t :0; }: sz at 0, ifindex at 8, attach_point at 12, parent at 16; 24 bytes.
 */
const HOOK_BYTES = 24;
/*
 * struct bpf_tc_opts { size_t sz; int prog_fd; __u32 flags; __u32 prog_id; __u32 handle; __u32 priority;
 * size_t :0; }: sz at 0, prog_fd at 8, flags at 12, prog_id at 16, handle at 20, priority at 24; 32 bytes.
 */
const OPTS_BYTES = 32;

/** Where a filter is: an interface's egress, and the handle and priority that name it there. */
export type TcFilterPlace = { ifindex: number; handle: number; priority: number };

function egressHook(ifindex: number): Uint8Array {
  const hook = new Uint8Array(HOOK_BYTES);
  const view = new DataView(hook.buffer);
  view.setBigUint64(0, BigInt(HOOK_BYTES), true);
  view.setInt32(8, ifindex, true);
  view.setUint32(12, BPF_TC_EGRESS, true);
  return hook;
}

function filterOpts(place: TcFilterPlace, fields: { progFd?: number; flags?: number } = {}): Uint8Array {
  const opts = new Uint8Array(OPTS_BYTES);
  const view = new DataView(opts.buffer);
  view.setBigUint64(0, BigInt(OPTS_BYTES), true);
  view.setInt32(8, fields.progFd ?? 0, true);
  view.setUint32(12, fields.flags ?? 0, true);
  view.setUint32(20, place.handle, true);
  view.setUint32(24, place.priority, true);
  return opts;
}

function describe(place: TcFilterPlace): string {
  return `tc egress filter handle 0x${
    place.handle.toString(16)
  } pref ${place.priority} on ifindex ${place.ifindex}`;
}

/**
 * Makes the clsact qdisc of interface `ifindex` where it has none; true when this call made it, false when
 * it was there already (another tool's, or an earlier run's).
 */
export function tcEnsureClsact(ifindex: number): boolean {
  const { result, log } = withLibbpfLog(() => libbpf().bpf_tc_hook_create(egressHook(ifindex)));
  if (result === -17) return false; // EEXIST
  unwrap(result, "bpf_tc_hook_create", { subject: `clsact qdisc on ifindex ${ifindex}`, libbpfLog: log });
  return true;
}

/**
 * Attaches the program `progFd` as the direct-action filter at `place` on the interface's egress (its
 * clsact qdisc must exist), replacing in one step the program of a filter already there. Returns the id of
 * the program the filter runs.
 */
export function tcAttachEgress(progFd: number, place: TcFilterPlace): number {
  const opts = filterOpts(place, { progFd, flags: BPF_TC_F_REPLACE });
  const { result, log } = withLibbpfLog(() => libbpf().bpf_tc_attach(egressHook(place.ifindex), opts));
  unwrap(result, "bpf_tc_attach", { subject: describe(place), libbpfLog: log });
  return new DataView(opts.buffer).getUint32(16, true);
}

/**
 * The id of the program the filter at `place` runs, or undefined where there is no such filter (nor a
 * clsact qdisc, nor the interface).
 */
export function tcQueryEgress(place: TcFilterPlace): number | undefined {
  const opts = filterOpts(place);
  const result = libbpf().bpf_tc_query(egressHook(place.ifindex), opts);
  // ENOENT: no such filter; EINVAL: no clsact qdisc (no parent block); ENODEV: no such interface.
  if (result === -2 || result === -22 || result === -19) return undefined;
  unwrap(result, "bpf_tc_query", { subject: describe(place) });
  return new DataView(opts.buffer).getUint32(16, true);
}

/** Deletes the filter at `place` (that filter alone: the qdisc and any other filter stay). */
export function tcDetachEgress(place: TcFilterPlace): void {
  const { result, log } = withLibbpfLog(() =>
    libbpf().bpf_tc_detach(egressHook(place.ifindex), filterOpts(place))
  );
  unwrap(result, "bpf_tc_detach", { subject: describe(place), libbpfLog: log });
}

/** Pins the BPF object `fd` refers to (a program) at `path`. */
export function pinFd(fd: number, path: string): void {
  unwrap(libbpf().bpf_obj_pin(fd, cString(path)), "bpf_obj_pin", { subject: path });
}

/** The id of the program pinned at `path` (bpf_prog_info.id), or undefined where nothing is pinned there. */
export function pinnedProgramId(path: string): number | undefined {
  const fd = libbpf().bpf_obj_get(cString(path));
  if (fd === -2) return undefined; // ENOENT
  unwrap(fd, "bpf_obj_get", { subject: path });
  try {
    return programId(fd);
  } finally {
    closeFd(fd);
  }
}

/** The id of the program `fd` refers to. */
export function programId(fd: number): number {
  // struct bpf_prog_info { __u32 type; __u32 id; __u8 tag[8]; ... }: the first 16 bytes are enough.
  const info = new Uint8Array(16);
  const length = new Uint32Array([info.length]);
  unwrap(
    libbpf().bpf_obj_get_info_by_fd(fd, info, new Uint8Array(length.buffer)),
    "bpf_obj_get_info_by_fd",
    { subject: `program fd ${fd}` },
  );
  return new DataView(info.buffer).getUint32(4, true);
}
