/**
 * The inodes a recursive rule denies, kept compactly in applied.json: a directory anyone may write to can
 * hold a million files, and a million `{path, dev, ino}` objects would be some 100 MB of JSON. Per device,
 * the inode numbers sorted, as LEB128 varints of the differences, in base64: one to three bytes a file.
 * `health` reads them back into sorted arrays (8 bytes a file) and looks files up by binary search.
 */

import { Buffer } from "node:buffer";

/**
 * One device's inodes, encoded; `generations`: each one's i_generation, in the same (sorted) order, as
 * little-endian 32-bit words in base64 (exec.allow's inodes, where the filesystem showed them).
 */
export type EncodedInodes = { dev: number; count: number; inodes: string; generations?: string | undefined };

/** Encodes (dev, ino) pairs; duplicates are kept once. */
export function encodeInodes(identities: Iterable<{ dev: number; ino: bigint }>): EncodedInodes[] {
  const byDev = new Map<number, bigint[]>();
  for (const { dev, ino } of identities) {
    let list = byDev.get(dev);
    if (list === undefined) byDev.set(dev, list = []);
    list.push(ino);
  }
  return [...byDev].sort(([a], [b]) => a - b).map(([dev, list]) => {
    const sorted = BigUint64Array.from(list).sort();
    const bytes: number[] = [];
    let previous = 0n;
    let count = 0;
    for (const ino of sorted) {
      if (count > 0 && ino === previous) continue;
      let delta = ino - previous;
      previous = ino;
      count++;
      do {
        const low = Number(delta & 0x7fn);
        delta >>= 7n;
        bytes.push(delta === 0n ? low : low | 0x80);
      } while (delta !== 0n);
    }
    return { dev, count, inodes: Buffer.from(bytes).toString("base64") };
  });
}

/** Decoded inodes, with a mark for each one seen again (to find those no longer there). */
export class InodeSet {
  readonly #byDev = new Map<number, { inodes: BigUint64Array; seen: Uint8Array }>();

  constructor(encoded: readonly EncodedInodes[]) {
    for (const { dev, count, inodes: text } of encoded) {
      const bytes = Buffer.from(text, "base64");
      const inodes = new BigUint64Array(count);
      let value = 0n;
      let index = 0;
      let delta = 0n;
      let shift = 0n;
      for (const byte of bytes) {
        delta |= BigInt(byte & 0x7f) << shift;
        shift += 7n;
        if (byte & 0x80) continue;
        if (index >= count) {
          throw new RangeError(`Inode list of device ${dev} holds more than ${count} inodes`);
        }
        value += delta;
        inodes[index++] = value;
        delta = 0n;
        shift = 0n;
      }
      if (index !== count || shift !== 0n) {
        throw new RangeError(`Inode list of device ${dev} holds ${index} inodes, not ${count}`);
      }
      this.#byDev.set(dev, { inodes, seen: new Uint8Array(count) });
    }
  }

  get size(): number {
    let size = 0;
    for (const { inodes } of this.#byDev.values()) size += inodes.length;
    return size;
  }

  /** Whether the set holds (dev, ino); marks it seen when it does. */
  see(dev: number, ino: bigint): boolean {
    const entry = this.#byDev.get(dev);
    if (entry === undefined) return false;
    let low = 0;
    let high = entry.inodes.length - 1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      const value = entry.inodes[middle]!;
      if (value === ino) {
        entry.seen[middle] = 1;
        return true;
      }
      if (value < ino) low = middle + 1;
      else high = middle - 1;
    }
    return false;
  }

  /** The inodes never seen. */
  *unseen(): Generator<{ dev: number; ino: bigint }> {
    for (const [dev, { inodes, seen }] of this.#byDev) {
      for (let i = 0; i < inodes.length; i++) if (seen[i] === 0) yield { dev, ino: inodes[i]! };
    }
  }
}

/**
 * encodeInodes for inodes that each carry their i_generation: the same encoding, and the generations of the
 * inodes in its order (of duplicates, the first one's).
 */
export function encodeInodesWithGenerations(
  identities: readonly { dev: number; ino: bigint; generation: number }[],
): EncodedInodes[] {
  const generation = new Map<string, number>();
  for (const { dev, ino, generation: value } of identities) {
    const key = `${dev}:${ino}`;
    if (!generation.has(key)) generation.set(key, value);
  }
  return encodeInodes(identities).map((encoded) => {
    const inodes = [...new InodeSet([encoded]).unseen()];
    const words = new Uint32Array(inodes.map(({ dev, ino }) => generation.get(`${dev}:${ino}`)!));
    return { ...encoded, generations: Buffer.from(words.buffer).toString("base64") };
  });
}

/** The inodes of `encoded`, each with its i_generation where the encoding carries them. */
export function decodeInodes(
  encoded: readonly EncodedInodes[],
): { dev: number; ino: bigint; generation?: number }[] {
  return encoded.flatMap((group) => {
    const inodes = [...new InodeSet([group]).unseen()];
    if (group.generations === undefined) return inodes;
    const bytes = Buffer.from(group.generations, "base64");
    if (bytes.length !== inodes.length * 4) {
      throw new RangeError(
        `Generations of device ${group.dev} hold ${bytes.length / 4} words, not ${inodes.length}`,
      );
    }
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
    return inodes.map((inode, i) => ({ ...inode, generation: view.getUint32(i * 4, true) }));
  });
}
