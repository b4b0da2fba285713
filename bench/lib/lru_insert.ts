/**
 * The kernel's cost of one fresh insert into an LRU hash shaped like the learned-address table, alone
 * (bench/native/lru_insert.bpf.c, built by bpf/build.sh): the DNS suite measures it beside the parser, which
 * makes one such insert per answer, so that the parser's figure can be read as the kernel's insert and the
 * parser's own work.
 */
import { type BpfObject, OpenBpfObject, testRunRepeated } from "../../ffi/mod.ts";

const OBJECT = new URL("../../bpf/build/bench/lru_insert.bpf.o", import.meta.url);
const XDP_PASS = 2;

export type InsertBatch = {
  /** ns per run of the program that inserts (the kernel's own average, BPF_PROG_TEST_RUN). */
  insertNs: number;
  /** ns per run of the same program without the insert. */
  withoutNs: number;
  /** The insert alone: the difference. */
  insertOnlyNs: number;
};

export class LruInsert implements Disposable {
  readonly #object: BpfObject;
  readonly #packet = new Uint8Array(64);

  private constructor(object: BpfObject) {
    this.#object = object;
  }

  static load(): LruInsert {
    return new LruInsert(OpenBpfObject.fromBytes(Deno.readFileSync(OBJECT), "lru_insert").load());
  }

  /** The table's capacity (that of the learned-address table). */
  get capacity(): number {
    return this.#object.map("table").maxEntries;
  }

  /** Inserts `count` fresh addresses, unmeasured (to fill the table). */
  fill(count: number): void {
    this.#run("lru_insert", count);
  }

  /**
   * One batch: `count` runs of the program without the insert, then `count` inserts of fresh addresses,
   * each a single BPF_PROG_TEST_RUN on this thread's CPU.
   */
  batch(count: number): InsertBatch {
    const withoutNs = this.#run("lru_count", count);
    const insertNs = this.#run("lru_insert", count);
    return { insertNs, withoutNs, insertOnlyNs: insertNs - withoutNs };
  }

  /** Inserts the kernel refused: any is an error of the bench (every address is fresh). */
  failed(): bigint {
    const bytes = this.#object.map("counts").lookup(new Uint8Array(new Uint32Array([1]).buffer));
    return bytes ? new DataView(bytes.buffer).getBigUint64(0, true) : 0n;
  }

  #run(program: string, count: number): number {
    const { fd } = this.#object.program(program);
    const { retval, nsPerRun } = testRunRepeated(fd, program, this.#packet, count);
    const refused = this.failed();
    if (refused > 0n) {
      throw new Error(`${program}: the kernel refused ${refused} inserts (return value ${retval})`);
    }
    if (retval !== XDP_PASS) {
      throw new Error(
        `${program}: returned ${retval}, not XDP_PASS: a lookup of its counts or scratch failed`,
      );
    }
    return nsPerRun;
  }

  [Symbol.dispose](): void {
    this.#object.close();
  }
}
