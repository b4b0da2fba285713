import { BpfError, unwrap } from "./error.ts";
import { cString, libbpf } from "./libbpf.ts";
import { withLibbpfLog } from "./log.ts";

/**
 * An attachment of a program to a hook. Closing a link that is not pinned detaches the program;
 * a pinned link outlives the process until it is unpinned.
 */
export class BpfLink {
  #pointer: Deno.PointerObject | null;
  #onClose: ((link: BpfLink) => void) | undefined;
  readonly description: string;

  /** @internal Made by BpfProgram's attach methods or BpfLink.open. */
  constructor(pointer: Deno.PointerObject, description: string, onClose?: (link: BpfLink) => void) {
    this.#pointer = pointer;
    this.description = description;
    this.#onClose = onClose;
  }

  /** Adopts a link pinned at `path` (it stays attached and pinned). */
  static open(path: string): BpfLink {
    return new BpfLink(
      takePointer("bpf_link__open", path, () => libbpf().bpf_link__open(cString(path))),
      path,
    );
  }

  get fd(): number {
    return libbpf().bpf_link__fd(this.#live());
  }

  /**
   * What the kernel says of the link (struct bpf_link_info): its type, ids, and for cgroup and XDP links
   * whether it is still attached (a detached one keeps its program but has no cgroup or interface).
   */
  info(): LinkInfo {
    const info = new Uint8Array(LINK_INFO_BYTES);
    const length = new Uint32Array([LINK_INFO_BYTES]);
    unwrap(
      libbpf().bpf_obj_get_info_by_fd(this.fd, info, new Uint8Array(length.buffer)),
      "bpf_obj_get_info_by_fd",
      { subject: this.description },
    );
    const view = new DataView(info.buffer);
    const type = view.getUint32(0, true);
    const base = { type, id: view.getUint32(4, true), programId: view.getUint32(8, true) };
    // The union after the three words is 8-byte aligned: cgroup { __u64 cgroup_id; }, xdp { __u32 ifindex; }.
    if (type === LINK_TYPE.CGROUP) return { ...base, attached: view.getBigUint64(16, true) !== 0n };
    if (type === LINK_TYPE.XDP) return { ...base, attached: view.getUint32(16, true) !== 0 };
    // tcx { __u32 ifindex; __u32 attach_type; }: ifindex 0 once the interface is gone.
    if (type === LINK_TYPE.TCX) {
      const ifindex = view.getUint32(16, true);
      return { ...base, attached: ifindex !== 0, ifindex };
    }
    return base;
  }

  /** Pins the link at `path` on a bpffs, so that it survives this process. */
  pin(path: string): void {
    const { result, log } = withLibbpfLog(() => libbpf().bpf_link__pin(this.#live(), cString(path)));
    unwrap(result, "bpf_link__pin", { subject: path, libbpfLog: log });
  }

  /**
   * Pins the link again at `path` after its pin was removed from outside (bpf_obj_pin on its descriptor:
   * libbpf's own pin call refuses a link it opened or pinned once).
   */
  repin(path: string): void {
    unwrap(libbpf().bpf_obj_pin(this.fd, cString(path)), "bpf_obj_pin", { subject: path });
  }

  /** Removes the link's pin; the attachment ends when the last reference closes. */
  unpin(): void {
    const { result, log } = withLibbpfLog(() => libbpf().bpf_link__unpin(this.#live()));
    unwrap(result, "bpf_link__unpin", { subject: this.description, libbpfLog: log });
  }

  /**
   * Makes the link run `program` instead, in one atomic switch (bpf_link_update: cgroup and XDP links;
   * others fail with EOPNOTSUPP or EINVAL).
   */
  update(program: { readonly fd: number; readonly name: string }): void {
    unwrap(libbpf().bpf_link_update(this.fd, program.fd, null), "bpf_link_update", {
      subject: `${this.description} to ${program.name}`,
    });
  }

  /** Detaches the program now, even if the link is pinned or held elsewhere (cgroup and XDP links). */
  detach(): void {
    const { result, log } = withLibbpfLog(() => libbpf().bpf_link__detach(this.#live()));
    unwrap(result, "bpf_link__detach", { subject: this.description, libbpfLog: log });
  }

  /** Releases this process's reference (detaching unless pinned). Safe to call twice. */
  close(): void {
    const pointer = this.#pointer;
    if (pointer === null) return;
    this.#pointer = null;
    libbpf().bpf_link__destroy(pointer);
    this.#onClose?.(this);
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #live(): Deno.PointerObject {
    if (this.#pointer === null) throw new Error(`Link is closed: ${this.description}`);
    return this.#pointer;
  }
}

const EINVAL = 22;

/** enum bpf_link_type values this project reads. */
export const LINK_TYPE = {
  RAW_TRACEPOINT: 1,
  TRACING: 2,
  CGROUP: 3,
  XDP: 6,
  PERF_EVENT: 7,
  TCX: 11,
} as const;

// struct bpf_link_info: type, id, prog_id, then a union (the largest member well under 256 bytes).
const LINK_INFO_BYTES = 256;

/** A link as the kernel describes it; `attached` only for link types that can be detached. */
export type LinkInfo = { type: number; id: number; programId: number; attached?: boolean; ifindex?: number };

/** Calls a pointer-returning libbpf function and turns NULL into a BpfError with libbpf's errno. */
export function takePointer(
  operation: string,
  subject: string,
  call: () => Deno.PointerValue,
): Deno.PointerObject {
  const { result, log } = withLibbpfLog(() => {
    const pointer = call();
    // Read the error in the very next FFI call: errno does not survive anything else.
    return { pointer, error: pointer === null ? Number(libbpf().libbpf_get_error(null)) : 0 };
  });
  if (result.pointer !== null) return result.pointer;
  // A NULL without an error code from libbpf_get_error: report EINVAL rather than nothing.
  throw new BpfError(operation, -(result.error || -EINVAL), { subject, libbpfLog: log });
}
