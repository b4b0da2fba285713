import { BpfError, SysError, unwrap } from "./error.ts";
import { concatBytes } from "./bytes.ts";
import { cString, lastErrno, libbpf, libc, readCString } from "./libbpf.ts";
import { BpfLink, takePointer } from "./link.ts";
import { withLibbpfLog } from "./log.ts";
import { closeFd } from "./sys.ts";
import { BpfMap } from "./map.ts";
import type { MapDefinition } from "./fd_map.ts";

/**
 * A BPF object opened from an ELF image but not yet loaded: programs and maps can still be configured.
 * `load()` consumes it and returns the loaded BpfObject.
 */
export class OpenBpfObject {
  #pointer: Deno.PointerObject | null;
  // libbpf keeps a pointer into the image until the object is loaded: hold it alive.
  readonly #image: Uint8Array<ArrayBuffer>;

  private constructor(pointer: Deno.PointerObject, image: Uint8Array<ArrayBuffer>) {
    this.#pointer = pointer;
    this.#image = image;
  }

  /** Opens an object from ELF bytes (bpf_object__open_mem); `name` appears in libbpf's messages. */
  static fromBytes(image: Uint8Array<ArrayBuffer>, name = "aegisbpf"): OpenBpfObject {
    // struct bpf_object_open_opts { size_t sz; const char *object_name; ... }: libbpf accepts a prefix.
    const objectName = cString(name);
    const opts = new BigUint64Array([
      16n,
      BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(objectName))),
    ]);
    const pointer = takePointer(
      "bpf_object__open_mem",
      name,
      () => libbpf().bpf_object__open_mem(image, BigInt(image.byteLength), new Uint8Array(opts.buffer)),
    );
    return new OpenBpfObject(pointer, image);
  }

  /** Names of the programs in the object. */
  programNames(): string[] {
    const lib = libbpf();
    const names: string[] = [];
    for (
      let p = lib.bpf_object__next_program(this.#live(), null);
      p !== null;
      p = lib.bpf_object__next_program(this.#live(), p)
    ) {
      names.push(readCString(lib.bpf_program__name(p)));
    }
    return names;
  }

  /** Names of the maps in the object, internal ones (.rodata, .bss) included. */
  mapNames(): string[] {
    const lib = libbpf();
    const names: string[] = [];
    for (
      let m = lib.bpf_object__next_map(this.#live(), null);
      m !== null;
      m = lib.bpf_object__next_map(this.#live(), m)
    ) {
      names.push(readCString(lib.bpf_map__name(m)));
    }
    return names;
  }

  /** What each map of the object is declared as (type, sizes, entries, flags), before anything is created. */
  mapDefinitions(): Map<string, MapDefinition> {
    const lib = libbpf();
    const definitions = new Map<string, MapDefinition>();
    for (
      let m = lib.bpf_object__next_map(this.#live(), null);
      m !== null;
      m = lib.bpf_object__next_map(this.#live(), m)
    ) {
      definitions.set(readCString(lib.bpf_map__name(m)), {
        type: lib.bpf_map__type(m),
        keySize: lib.bpf_map__key_size(m),
        valueSize: lib.bpf_map__value_size(m),
        maxEntries: lib.bpf_map__max_entries(m),
        flags: lib.bpf_map__map_flags(m),
      });
    }
    return definitions;
  }

  /** Chooses whether `program` is loaded by `load()`. */
  setAutoload(program: string, enabled: boolean): this {
    unwrap(libbpf().bpf_program__set_autoload(this.#program(program), enabled), "bpf_program__set_autoload", {
      subject: program,
    });
    return this;
  }

  /** Loads only the named programs (maps are always created). */
  loadOnly(programs: readonly string[]): this {
    const wanted = new Set(programs);
    for (const name of programs) this.#program(name);
    for (const name of this.programNames()) this.setAutoload(name, wanted.has(name));
    return this;
  }

  setMaxEntries(map: string, entries: number): this {
    unwrap(libbpf().bpf_map__set_max_entries(this.#map(map), entries), "bpf_map__set_max_entries", {
      subject: map,
    });
    return this;
  }

  /** Makes `load()` reuse the map pinned at `path` if there is one, and pin it there otherwise. */
  setPinPath(map: string, path: string): this {
    unwrap(libbpf().bpf_map__set_pin_path(this.#map(map), cString(path)), "bpf_map__set_pin_path", {
      subject: map,
    });
    return this;
  }

  /** Loads programs and creates maps in the kernel; this open object is consumed. */
  load(): BpfObject {
    const pointer = this.#live();
    const { result, log } = withLibbpfLog(() => libbpf().bpf_object__load(pointer));
    if (result < 0) this.close();
    unwrap(result, "bpf_object__load", { subject: failedProgram(log), libbpfLog: log });
    this.#pointer = null;
    return new BpfObject(pointer, this.#image);
  }

  /**
   * The object with every map but the internal ones (.rodata, .bss) taken from its pin under `dir`, and
   * nothing loaded: no program, no internal map, none of bpf_object__load's work (which parses the kernel's
   * BTF for the object's CO-RE relocations even where no program is loaded). For a process that runs only
   * what is pinned already; the caller checked that the pins hold these maps as the object declares them.
   * This open object is consumed.
   */
  adoptPinnedMaps(dir: string): BpfObject {
    const lib = libbpf();
    const pointer = this.#live();
    try {
      for (
        let m = lib.bpf_object__next_map(pointer, null);
        m !== null;
        m = lib.bpf_object__next_map(pointer, m)
      ) {
        const name = readCString(lib.bpf_map__name(m));
        if (name.includes(".")) continue;
        const path = `${dir}/${name}`;
        const fd = unwrap(lib.bpf_obj_get(cString(path)), "bpf_obj_get", { subject: path });
        try {
          // libbpf keeps a duplicate of the descriptor, closed with the object.
          unwrap(lib.bpf_map__reuse_fd(m, fd), "bpf_map__reuse_fd", { subject: name });
        } finally {
          closeFd(fd);
        }
      }
    } catch (error) {
      this.close();
      throw error;
    }
    this.#pointer = null;
    return new BpfObject(pointer, this.#image);
  }

  close(): void {
    if (this.#pointer === null) return;
    libbpf().bpf_object__close(this.#pointer);
    this.#pointer = null;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #live(): Deno.PointerObject {
    if (this.#pointer === null) throw new Error("BPF object is closed or already loaded");
    return this.#pointer;
  }

  #program(name: string): Deno.PointerObject {
    return found(
      libbpf().bpf_object__find_program_by_name(this.#live(), cString(name)),
      "bpf_object__find_program_by_name",
      name,
    );
  }

  #map(name: string): Deno.PointerObject {
    return found(
      libbpf().bpf_object__find_map_by_name(this.#live(), cString(name)),
      "bpf_object__find_map_by_name",
      name,
    );
  }
}

/**
 * A loaded BPF object. It owns its programs, maps and the links made from its programs; `close()`
 * destroys the links (newest first) and then the object.
 */
export class BpfObject {
  #pointer: Deno.PointerObject | null;
  readonly #links: BpfLink[] = [];
  readonly #maps = new Map<string, BpfMap>();
  /** Shared with children: maps and programs refuse to touch freed libbpf memory once this is false. */
  readonly #state = { open: true };
  readonly #image: Uint8Array<ArrayBuffer>;

  /** @internal Made by OpenBpfObject.load. */
  constructor(pointer: Deno.PointerObject, image: Uint8Array<ArrayBuffer>) {
    this.#pointer = pointer;
    this.#image = image;
  }

  program(name: string): BpfProgram {
    const p = found(
      libbpf().bpf_object__find_program_by_name(this.#live(), cString(name)),
      "bpf_object__find_program_by_name",
      name,
    );
    return new BpfProgram(
      p,
      name,
      this.#state,
      (link) => this.#links.push(link),
      (link) => this.#forget(link),
    );
  }

  map(name: string): BpfMap {
    let map = this.#maps.get(name);
    if (!map) {
      const p = found(
        libbpf().bpf_object__find_map_by_name(this.#live(), cString(name)),
        "bpf_object__find_map_by_name",
        name,
      );
      map = new BpfMap(p, this.#state);
      this.#maps.set(name, map);
    }
    return map;
  }

  close(): void {
    if (this.#pointer === null) return;
    for (const link of [...this.#links].reverse()) link.close();
    this.#state.open = false;
    libbpf().bpf_object__close(this.#pointer);
    this.#pointer = null;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #forget(link: BpfLink): void {
    const i = this.#links.indexOf(link);
    if (i >= 0) this.#links.splice(i, 1);
  }

  #live(): Deno.PointerObject {
    if (this.#pointer === null) throw new Error("BPF object is closed");
    return this.#pointer;
  }
}

/** A loaded program; its attach methods return links owned by the object. */
export class BpfProgram {
  readonly #raw: Deno.PointerObject;
  readonly #owner: { readonly open: boolean };
  readonly name: string;
  readonly #adopt: (link: BpfLink) => void;
  readonly #forget: (link: BpfLink) => void;

  /** @internal Made by BpfObject.program. */
  constructor(
    pointer: Deno.PointerObject,
    name: string,
    owner: { readonly open: boolean },
    adopt: (link: BpfLink) => void,
    forget: (link: BpfLink) => void,
  ) {
    this.#raw = pointer;
    this.#owner = owner;
    this.name = name;
    this.#adopt = adopt;
    this.#forget = forget;
  }

  /** The libbpf program, while the object that owns it is open (libbpf frees it with the object). */
  get #pointer(): Deno.PointerObject {
    if (!this.#owner.open) throw new Error(`BPF object is closed: program ${this.name} is gone`);
    return this.#raw;
  }

  get fd(): number {
    return libbpf().bpf_program__fd(this.#pointer);
  }

  get sectionName(): string {
    return readCString(libbpf().bpf_program__section_name(this.#pointer));
  }

  /** Attaches where the section name says (LSM hooks, tracepoints). */
  attach(): BpfLink {
    return this.#link(
      "bpf_program__attach",
      this.sectionName,
      () => libbpf().bpf_program__attach(this.#pointer),
    );
  }

  /** Attaches to the cgroup open as `cgroupFd` (the caller keeps and closes the fd). */
  attachCgroup(cgroupFd: number, description = `cgroup fd ${cgroupFd}`): BpfLink {
    return this.#link(
      "bpf_program__attach_cgroup",
      description,
      () => libbpf().bpf_program__attach_cgroup(this.#pointer, cgroupFd),
    );
  }

  /**
   * Attaches XDP in generic (skb) mode and pins the link at `pinPath` (the link exists only as that pin
   * until BpfLink.open adopts it): the fallback for drivers whose native mode refuses the program.
   */
  attachXdpGeneric(ifindex: number, pinPath: string): BpfLink {
    // struct bpf_link_create_opts { size_t sz; __u32 flags; ... }: a prefix is enough.
    const opts = new Uint32Array([16, 0, XDP_FLAGS_SKB_MODE, 0]);
    const fd = unwrap(
      libbpf().bpf_link_create(this.fd, ifindex, BPF_XDP, new Uint8Array(opts.buffer)),
      "bpf_link_create",
      { subject: `${this.name} to ifindex ${ifindex} (generic)` },
    );
    return this.#pinAndAdopt(fd, pinPath);
  }

  /**
   * Attaches a tc program to the egress of interface `ifindex` as a tcx link (Linux 6.6+; older kernels
   * refuse the attach type with EINVAL) and pins it at `pinPath`, as attachXdpGeneric does.
   */
  attachTcxEgress(ifindex: number, pinPath: string): BpfLink {
    // struct bpf_link_create_opts { size_t sz; __u32 flags; ... }: flags 0, no relative program.
    const opts = new Uint32Array([16, 0, 0, 0]);
    const fd = unwrap(
      libbpf().bpf_link_create(this.fd, ifindex, BPF_TCX_EGRESS, new Uint8Array(opts.buffer)),
      "bpf_link_create",
      { subject: `${this.name} to tcx egress of ifindex ${ifindex}` },
    );
    return this.#pinAndAdopt(fd, pinPath);
  }

  /** Pins the link made as `fd` at `pinPath`, closes the fd, and adopts the link from its pin. */
  #pinAndAdopt(fd: number, pinPath: string): BpfLink {
    try {
      unwrap(libbpf().bpf_obj_pin(fd, cString(pinPath)), "bpf_obj_pin", { subject: pinPath });
    } finally {
      closeFd(fd);
    }
    const link = BpfLink.open(pinPath);
    this.#adopt(link);
    return link;
  }

  /** Attaches XDP to the interface `ifindex`: the driver's native mode where it has one, else generic. */
  attachXdp(ifindex: number, description = `ifindex ${ifindex}`): BpfLink {
    return this.#link(
      "bpf_program__attach_xdp",
      description,
      () => libbpf().bpf_program__attach_xdp(this.#pointer, ifindex),
    );
  }

  /**
   * Runs the program once on `packet` through BPF_PROG_TEST_RUN (XDP and other packet programs):
   * user space calling a program, e.g. to act on a map with atomic instructions. Returns its return value.
   */
  testRun(packet: Uint8Array<ArrayBuffer>): number {
    return testRunProgram(this.fd, this.name, packet);
  }

  pin(path: string): void {
    const { result, log } = withLibbpfLog(() => libbpf().bpf_program__pin(this.#pointer, cString(path)));
    unwrap(result, "bpf_program__pin", { subject: path, libbpfLog: log });
  }

  #link(operation: string, target: string, call: () => Deno.PointerValue): BpfLink {
    const pointer = takePointer(operation, `${this.name} to ${target}`, call);
    const link = new BpfLink(pointer, `${this.name} on ${target}`, this.#forget);
    this.#adopt(link);
    return link;
  }
}

/**
 * Runs the program `fd` once on `packet` through BPF_PROG_TEST_RUN (XDP and other packet programs): user
 * space calling a program, e.g. to act on a map with atomic instructions. Returns its return value.
 */
export function testRunProgram(fd: number, name: string, packet: Uint8Array<ArrayBuffer>): number {
  return testRunRepeated(fd, name, packet, 1).retval;
}

/**
 * Runs the program `fd` `repeat` times back to back on `packet` in one BPF_PROG_TEST_RUN (on this thread's
 * CPU): the last run's return value, and the kernel's own average time per run (the test harness's loop
 * included).
 */
export function testRunRepeated(
  fd: number,
  name: string,
  packet: Uint8Array<ArrayBuffer>,
  repeat: number,
): { retval: number; nsPerRun: number } {
  // struct bpf_test_run_opts: sz, data_in, data_out, data_size_in @24, ..., retval @56, repeat @60,
  // duration @64; 80 bytes
  const opts = new Uint8Array(80);
  const view = new DataView(opts.buffer);
  view.setBigUint64(0, 80n, true);
  view.setBigUint64(8, BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(packet))), true);
  view.setUint32(24, packet.byteLength, true);
  view.setInt32(60, repeat, true);
  unwrap(libbpf().bpf_prog_test_run_opts(fd, opts), "bpf_prog_test_run_opts", { subject: name });
  return { retval: view.getUint32(56, true), nsPerRun: view.getUint32(64, true) };
}

/**
 * A program reached through its pin alone: one an earlier process loaded and pinned. It runs as it is (no
 * load, no verification); this process holds a descriptor of it until `close()`.
 */
export class PinnedProgram {
  readonly name: string;
  #fd: number;

  private constructor(fd: number, name: string) {
    this.#fd = fd;
    this.name = name;
  }

  /** Opens the program pinned at `path`; `name` names it in errors. */
  static open(path: string, name: string): PinnedProgram {
    return new PinnedProgram(
      unwrap(libbpf().bpf_obj_get(cString(path)), "bpf_obj_get", { subject: path }),
      name,
    );
  }

  get fd(): number {
    if (this.#fd < 0) throw new Error(`Pinned program ${this.name} is closed`);
    return this.#fd;
  }

  testRun(packet: Uint8Array<ArrayBuffer>): number {
    return testRunProgram(this.fd, this.name, packet);
  }

  close(): void {
    if (this.#fd < 0) return;
    closeFd(this.#fd);
    this.#fd = -1;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Runs the iterator program `fd` (iter/tcp, iter/udp: no target to name) once and returns all it wrote: a
 * BPF_TRACE_ITER link is made for it, an iterator opened on the link and read to its end, and both closed.
 * Nothing is pinned: a program loaded earlier and pinned runs as it is, without being loaded again.
 */
export function readIterator(fd: number, name: string): Uint8Array<ArrayBuffer> {
  // struct bpf_link_create_opts { size_t sz; __u32 flags; ... }: no iterator info for a socket walk.
  const opts = new Uint32Array([16, 0, 0, 0]);
  const link = unwrap(
    libbpf().bpf_link_create(fd, 0, BPF_TRACE_ITER, new Uint8Array(opts.buffer)),
    "bpf_link_create",
    { subject: `${name} (iterator)` },
  );
  try {
    const iterator = unwrap(libbpf().bpf_iter_create(link), "bpf_iter_create", { subject: name });
    try {
      const chunks: Uint8Array<ArrayBuffer>[] = [];
      for (;;) {
        const chunk = new Uint8Array(65536);
        const read = Number(libc().read(iterator, chunk, BigInt(chunk.byteLength)));
        if (read < 0) throw new SysError("read", lastErrno(), `${name} (iterator)`);
        if (read === 0) break;
        chunks.push(chunk.subarray(0, read));
      }
      return concatBytes(chunks);
    } finally {
      closeFd(iterator);
    }
  } finally {
    closeFd(link);
  }
}

/**
 * Writes (or, without a value, deletes) one element of each map given, all at once on worker threads, and
 * waits for every one; throws the first failure once all have ended. For the slots of maps of maps: the
 * kernel returns from each such write only after an RCU grace period, and waits made together end together.
 */
export async function writeElementsAtOnce(
  writes: readonly {
    fd: number;
    name: string;
    key: Uint8Array<ArrayBuffer>;
    value?: Uint8Array<ArrayBuffer>;
  }[],
): Promise<void> {
  const results = await Promise.allSettled(writes.map(async ({ fd, name, key, value }) => {
    const code = value === undefined
      ? await libbpf().bpf_map_delete_elem_wait(fd, key)
      : await libbpf().bpf_map_update_elem_wait(fd, key, value, 0n);
    unwrap(code, value === undefined ? "bpf_map_delete_elem" : "bpf_map_update_elem", { subject: name });
  }));
  const failed = results.find((result) => result.status === "rejected");
  if (failed) throw failed.reason;
}

const BPF_TRACE_ITER = 28;
const BPF_XDP = 37;
const BPF_TCX_EGRESS = 47;
const XDP_FLAGS_SKB_MODE = 2;

const ENOENT = 2;

/** A pointer a libbpf lookup by name returned, or a BpfError (ENOENT) naming what was not found. */
function found(pointer: Deno.PointerValue, operation: string, name: string): Deno.PointerObject {
  if (pointer !== null) return pointer;
  throw new BpfError(operation, ENOENT, { subject: name });
}

/** The program libbpf names in its "failed to load program 'X'" message, if any. */
export function failedProgram(libbpfLog: string): string | undefined {
  return /prog '([^']+)': failed to load/.exec(libbpfLog)?.[1] ??
    /failed to load program '([^']+)'/.exec(libbpfLog)?.[1];
}
