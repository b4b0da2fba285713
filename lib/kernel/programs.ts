/**
 * The programs of a plane, loaded by this process or adopted from their pins.
 *
 * A load pins every program it loaded under `<pinDir>/progs/` and records, in the `aegis_build` map, the
 * SHA-256 of the object they came from and which program sets are pinned (lib/kernel/load.ts PROGRAM_SETS:
 * a plane loads only the sets of its areas). A later process of the same build finds the record naming its
 * own object and every set it needs pinned, and adopts them as they are: no program is loaded or verified
 * again (seconds on a slow CPU), and the links keep running the very programs they ran. A set the pins lack
 * is loaded then, alone, and pinned; a program no link runs yet (a new interface, the scope guard, an area
 * not attached before) is loaded with the others attached at the same time, in one object load.
 */
import { createHash } from "node:crypto";
import { type BpfObject, type BpfProgram, encodeU32, FdMap, PinnedProgram } from "../../ffi/mod.ts";
import { type ProgramName, PROGRAMS } from "./object.ts";
import { exists } from "./pin_dir.ts";

/** The name of the map holding the build record. */
export const BUILD_MAP = "aegis_build";
const RECORD_BYTES = 40;

const fingerprints = new WeakMap<Uint8Array, Uint8Array<ArrayBuffer>>();

/** The SHA-256 of a BPF object's bytes: what a build record names. Hashed once per image a process holds. */
export function objectFingerprint(image: Uint8Array): Uint8Array<ArrayBuffer> {
  let fingerprint = fingerprints.get(image);
  if (!fingerprint) {
    fingerprint = new Uint8Array(createHash("sha256").update(image).digest());
    fingerprints.set(image, fingerprint);
  }
  return fingerprint;
}

/**
 * The object the pinned programs came from, which sets of them are pinned (BUILD_PROGRAMS bits), and with
 * BUILD_PROGRAMS.LSM_REFUSED the errno with which this boot's kernel refused the BPF-LSM programs.
 */
export type BuildRecord = { sha256: Uint8Array; programs: number; lsmErrno: number };

/** The build record pinned under `mapDir`, or undefined where there is none (or it was cleared). */
export function readBuildRecord(mapDir: string): BuildRecord | undefined {
  const path = `${mapDir}/${BUILD_MAP}`;
  if (!exists(path)) return undefined;
  using map = FdMap.open(path);
  if (map.definition.keySize !== 4 || map.definition.valueSize !== RECORD_BYTES) return undefined;
  const value = map.lookup(encodeU32(0));
  if (!value) return undefined;
  const view = new DataView(value.buffer);
  const programs = view.getUint32(32, true);
  return programs === 0
    ? undefined
    : { sha256: value.slice(0, 32), programs, lsmErrno: view.getUint32(36, true) };
}

/** Writes `record` into the object's build map; undefined clears it (no command adopts until rewritten). */
export function writeBuildRecord(
  map: { update(key: Uint8Array<ArrayBuffer>, value: Uint8Array<ArrayBuffer>): void },
  record: BuildRecord | undefined,
): void {
  const value = new Uint8Array(RECORD_BYTES);
  if (record) {
    value.set(record.sha256, 0);
    new DataView(value.buffer).setUint32(32, record.programs, true);
    new DataView(value.buffer).setUint32(36, record.lsmErrno, true);
  }
  map.update(encodeU32(0), value);
}

export function sameFingerprint(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/** What a plane needs of a program: to know it is served, to attach it, to run it. */
export interface PlanePrograms {
  /** Whether the plane's pinned programs were adopted as they were (none of them was loaded again). */
  readonly adopted: boolean;
  /** Whether `name` is one of the plane's programs (loaded here, or pinned by the load that made the pins). */
  has(name: ProgramName): boolean;
  /**
   * Loads, in one object load, those of `names` this process has not loaded yet: what `attachable` will be
   * asked for next (a link none of the pinned programs runs yet, an area or an interface attached anew).
   */
  prepare(names: readonly ProgramName[]): void;
  /** `name`, ready to attach: loaded by this process (now, alone, unless `prepare` named it). */
  attachable(name: ProgramName): BpfProgram;
  /** `name` to run or hand to the kernel by descriptor (test runs, tc filters). */
  runnable(
    name: ProgramName,
  ): { readonly fd: number; readonly name: string; testRun(packet: Uint8Array<ArrayBuffer>): number };
  /** Releases what this process holds; pinned programs and links go on. */
  close(): void;
}

/**
 * The programs of a plane: some loaded by this process (in the plane's object, or later in objects of their
 * own that reuse the plane's maps), the others adopted from their pins under `<pinDir>/progs/`.
 */
class Programs implements PlanePrograms {
  readonly adopted: boolean;
  readonly #pinDir: string | undefined;
  readonly #served: ReadonlySet<ProgramName>;
  readonly #load: ((programs: readonly ProgramName[]) => BpfObject) | undefined;
  readonly #here = new Map<ProgramName, BpfProgram>();
  readonly #pinned = new Map<ProgramName, PinnedProgram>();
  readonly #owned: BpfObject[] = [];

  constructor(options: {
    adopted: boolean;
    pinDir?: string | undefined;
    served: Iterable<ProgramName>;
    loaded?: { object: BpfObject; programs: Iterable<ProgramName> } | undefined;
    load?: ((programs: readonly ProgramName[]) => BpfObject) | undefined;
  }) {
    this.adopted = options.adopted;
    this.#pinDir = options.pinDir;
    this.#served = new Set(options.served);
    this.#load = options.load;
    const { object, programs = [] } = options.loaded ?? {};
    for (const name of programs) this.#here.set(name, object!.program(name));
  }

  has(name: ProgramName): boolean {
    return this.#served.has(name);
  }

  prepare(names: readonly ProgramName[]): void {
    const missing = [...new Set(names)].filter((name) => !this.#here.has(name));
    if (missing.length === 0) return;
    if (!this.#load) {
      throw new Error(`program ${missing.join(", ")} is not loaded, and this plane loads none`);
    }
    const object = this.#load(missing);
    this.#owned.push(object);
    for (const name of missing) this.#here.set(name, object.program(name));
  }

  attachable(name: ProgramName): BpfProgram {
    this.prepare([name]);
    return this.#here.get(name)!;
  }

  runnable(name: ProgramName): BpfProgram | PinnedProgram {
    const here = this.#here.get(name);
    if (here) return here;
    const path = this.#pinDir === undefined ? undefined : `${this.#pinDir}/progs/${name}`;
    if (path === undefined || !this.#served.has(name) || !exists(path)) return this.attachable(name);
    let program = this.#pinned.get(name);
    if (!program) {
      program = PinnedProgram.open(path, name);
      this.#pinned.set(name, program);
    }
    return program;
  }

  close(): void {
    for (const program of this.#pinned.values()) program.close();
    this.#pinned.clear();
    this.#here.clear();
    for (const object of this.#owned) object.close();
    this.#owned.length = 0;
    // The plane's own object is the plane's, closed with it.
  }
}

/**
 * The programs of an object this process loaded (`programs`: those it loaded); `load` loads others of the
 * same object, with the plane's maps, when one of them is asked for.
 */
export class LoadedPrograms extends Programs {
  constructor(
    object: BpfObject,
    programs: readonly ProgramName[] = loadedIn(object),
    load?: (programs: readonly ProgramName[]) => BpfObject,
  ) {
    super({ adopted: false, served: programs, loaded: { object, programs }, load });
  }
}

/**
 * The programs an earlier load pinned under `<pinDir>/progs/` (`served`: the plane's programs, each pinned),
 * adopted without loading; `loaded`: those of them this process had to load now (a set the pins lacked),
 * pinned since (then the plane is not `adopted`: it loaded programs to open). `load(programs)` loads programs of the same object with the plane's maps, for a link none of
 * the pinned programs runs yet.
 */
export class AdoptedPrograms extends Programs {
  constructor(
    pinDir: string,
    served: Iterable<ProgramName>,
    load: (programs: readonly ProgramName[]) => BpfObject,
    loaded?: { object: BpfObject; programs: readonly ProgramName[] },
  ) {
    super({ adopted: (loaded?.programs.length ?? 0) === 0, pinDir, served, loaded, load });
  }
}

/** The programs of `object` it loaded (a descriptor of its own). */
function loadedIn(object: BpfObject): ProgramName[] {
  return (Object.values(PROGRAMS) as ProgramName[]).filter((name) => {
    try {
      return object.program(name).fd >= 0;
    } catch {
      return false; // not in this object (another build's)
    }
  });
}
