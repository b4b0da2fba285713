/**
 * The programs of a plane, loaded by this process or adopted from their pins.
 *
 * A load pins every program it loaded under `<pinDir>/progs/` and records, in the `aegis_build` map, the
 * SHA-256 of the object they came from and which program sets are pinned. A later process of the same build
 * finds the record naming its own object and every program it needs pinned, and adopts them as they are:
 * no program is loaded or verified again (seconds on a slow CPU), and the links keep running the very
 * programs they ran. Only a process that needs a program no link runs yet (a new interface, the scope
 * guard, an area not attached before) loads that program, alone.
 */
import { createHash } from "node:crypto";
import {
  type BpfObject,
  type BpfProgram,
  BUILD_PROGRAMS,
  encodeU32,
  FdMap,
  PinnedProgram,
} from "../../ffi/mod.ts";
import type { ProgramName } from "./object.ts";
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
  /** Whether the programs were adopted from their pins (this process loaded none to open the plane). */
  readonly adopted: boolean;
  /** Whether `name` is one of the plane's programs (loaded here, or pinned by the load that made the pins). */
  has(name: ProgramName): boolean;
  /** `name`, ready to attach; an adopted plane loads it now, alone, its maps reused from their pins. */
  attachable(name: ProgramName): BpfProgram;
  /** `name` to run or hand to the kernel by descriptor (test runs, tc filters). */
  runnable(
    name: ProgramName,
  ): { readonly fd: number; readonly name: string; testRun(packet: Uint8Array<ArrayBuffer>): number };
  /** Releases what this process holds; pinned programs and links go on. */
  close(): void;
}

/** The programs of an object this process loaded. */
export class LoadedPrograms implements PlanePrograms {
  readonly adopted = false;
  readonly #object: BpfObject;

  constructor(object: BpfObject) {
    this.#object = object;
  }

  has(name: ProgramName): boolean {
    return this.#object.program(name).fd >= 0;
  }

  attachable(name: ProgramName): BpfProgram {
    return this.#object.program(name);
  }

  runnable(name: ProgramName): BpfProgram {
    return this.#object.program(name);
  }

  close(): void {
    // The object is the plane's, closed with it.
  }
}

/** The programs an earlier load pinned under `<pinDir>/progs/`, adopted without loading. */
export class AdoptedPrograms implements PlanePrograms {
  readonly adopted = true;
  readonly #pinDir: string;
  readonly #served: ReadonlySet<ProgramName>;
  readonly #load: (programs: readonly ProgramName[]) => BpfObject;
  readonly #pinned = new Map<ProgramName, PinnedProgram>();
  readonly #loaded: BpfObject[] = [];

  /**
   * `served`: the programs of the plane (each pinned); `load(programs)` loads programs of the same object
   * with the plane's maps, for a link none of the pinned programs runs yet.
   */
  constructor(
    pinDir: string,
    served: Iterable<ProgramName>,
    load: (programs: readonly ProgramName[]) => BpfObject,
  ) {
    this.#pinDir = pinDir;
    this.#served = new Set(served);
    this.#load = load;
  }

  has(name: ProgramName): boolean {
    return this.#served.has(name);
  }

  attachable(name: ProgramName): BpfProgram {
    const object = this.#load([name]);
    this.#loaded.push(object);
    return object.program(name);
  }

  runnable(name: ProgramName): PinnedProgram {
    let program = this.#pinned.get(name);
    if (!program) {
      program = PinnedProgram.open(`${this.#pinDir}/progs/${name}`, name);
      this.#pinned.set(name, program);
    }
    return program;
  }

  close(): void {
    for (const program of this.#pinned.values()) program.close();
    this.#pinned.clear();
    for (const object of this.#loaded) object.close();
    this.#loaded.length = 0;
  }
}

/** The bit of BUILD_PROGRAMS a load with or without the BPF-LSM programs pins. */
export function programSetBit(withLsm: boolean): number {
  return withLsm ? BUILD_PROGRAMS.LSM : BUILD_PROGRAMS.FALLBACK;
}
