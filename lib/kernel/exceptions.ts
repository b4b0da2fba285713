import {
  bootTimeNs,
  decodeException,
  decodeExceptionKey,
  encodeException,
  encodeExceptionKey,
  encodeExceptionNetKey,
  encodeU32,
  EXCEPTION_KIND,
  type ExceptionNetKey,
  type ExceptionValue,
  FdMap,
} from "../../ffi/mod.ts";
import { RefusedError } from "../errors.ts";
import { exists } from "./pin_dir.ts";

/**
 * Expiring exceptions in the kernel (bpf/exception.bpf.h), read and written through their pins alone: no
 * object is loaded, so `aegisbpf exception` works with no agent running. The maps are the truth for
 * enforcement; <state-dir>/exceptions.json keeps their names (lib/state/exceptions.ts).
 */

/** What an exception matches in the kernel: the inodes of a path, or a destination. */
export type KernelMatch =
  | { kind: "exec" | "file"; inodes: readonly { dev: number; ino: bigint }[] }
  | { kind: "egress"; net: ExceptionNetKey };

/** Where the entry applies: every task, or a cgroup (its id and depth below the root) and those below it. */
export type ExceptionScope = { cgroupId: bigint; cgroupLevel: number };

export type KernelException = {
  id: number;
  kind: "exec" | "file" | "egress";
  expiresBootNs: bigint;
  expired: boolean;
};

const MAPS = { inodes: "exceptions", nets: "exception_nets", kinds: "exception_kinds" } as const;

/** The three exception maps pinned under `bpffs`; closes them all on dispose. */
class ExceptionMaps implements Disposable {
  constructor(readonly inodes: FdMap, readonly nets: FdMap, readonly kinds: FdMap) {}
  [Symbol.dispose](): void {
    this.inodes.close();
    this.nets.close();
    this.kinds.close();
  }
}

/** The pinned exception maps, or a RefusedError saying why none can be written (nothing pinned, an older layout). */
function openMaps(bpffs: string): ExceptionMaps {
  const dir = `${bpffs}/aegisbpf/maps`;
  if (!exists(`${dir}/aegis_cfg`)) {
    throw new RefusedError(
      `no aegisbpf data plane is pinned under ${bpffs}: nothing enforces a policy here, so there is nothing to ` +
        "make an exception to",
    );
  }
  if (!Object.values(MAPS).every((name) => exists(`${dir}/${name}`))) {
    throw new RefusedError(
      `the data plane pinned under ${bpffs} predates expiring exceptions: restart the agent or run ` +
        "aegisbpf policy apply with this release first, which upgrades the pins",
    );
  }
  return new ExceptionMaps(
    FdMap.open(`${dir}/${MAPS.inodes}`),
    FdMap.open(`${dir}/${MAPS.nets}`),
    FdMap.open(`${dir}/${MAPS.kinds}`),
  );
}

/** Whether the exception maps are pinned under `bpffs` (a plane of this layout). */
export function exceptionMapsPinned(bpffs: string): boolean {
  return exists(`${bpffs}/aegisbpf/maps/${MAPS.inodes}`);
}

/** CLOCK_BOOTTIME now: the clock of an exception's expiry. */
export { bootTimeNs };

function inodeKind(kind: "exec" | "file"): number {
  return kind === "exec" ? EXCEPTION_KIND.EXEC : EXCEPTION_KIND.FILE;
}

/**
 * Writes the exception `id` for `match` until `expiresBootNs`. Refused when another live exception holds the
 * same match (one entry per match: remove it first). The kind's switch is set last, once every entry is in.
 */
export function addKernelException(
  bpffs: string,
  match: KernelMatch,
  value: { id: number; expiresBootNs: bigint; scope?: ExceptionScope },
): void {
  using maps = openMaps(bpffs);
  const bytes = encodeException({
    id: value.id,
    expiresBootNs: value.expiresBootNs,
    cgroupId: value.scope?.cgroupId ?? 0n,
    cgroupLevel: value.scope?.cgroupLevel ?? 0,
  });
  const now = bootTimeNs();
  const { map, keys } = matchKeys(maps, match);
  for (const key of keys) {
    const held = map.lookup(key);
    const other = held ? decodeException(held) : undefined;
    if (other && other.id !== value.id && other.expiresBootNs > now) {
      throw new RefusedError(`exception ${other.id} already covers this match: remove it first`);
    }
  }
  for (const key of keys) map.update(key, bytes);
  syncKinds(maps);
}

function matchKeys(maps: ExceptionMaps, match: KernelMatch): { map: FdMap; keys: Uint8Array<ArrayBuffer>[] } {
  if (match.kind === "egress") return { map: maps.nets, keys: [encodeExceptionNetKey(match.net)] };
  const kind = inodeKind(match.kind);
  return {
    map: maps.inodes,
    keys: match.inodes.map(({ dev, ino }) => encodeExceptionKey({ ino, dev, kind })),
  };
}

/** Deletes the kernel entries of the exceptions `ids` names; returns how many entries went. */
export function removeKernelExceptions(bpffs: string, ids: ReadonlySet<number>): number {
  using maps = openMaps(bpffs);
  let removed = 0;
  for (const map of [maps.inodes, maps.nets]) {
    for (const key of map.keys()) {
      const value = map.lookup(key);
      if (value && ids.has(decodeException(value).id) && map.delete(key)) removed++;
    }
  }
  syncKinds(maps);
  return removed;
}

/** Every exception entry in the kernel, `expired` where it decides nothing any more. */
export function kernelExceptions(bpffs: string): KernelException[] {
  if (!exceptionMapsPinned(bpffs)) return [];
  using maps = openMaps(bpffs);
  return entries(maps, bootTimeNs());
}

function entries(maps: ExceptionMaps, now: bigint): KernelException[] {
  const found: KernelException[] = [];
  for (const key of maps.inodes.keys()) {
    const value = maps.inodes.lookup(key);
    if (!value) continue;
    const x: ExceptionValue = decodeException(value);
    const kind = decodeExceptionKey(key).kind === EXCEPTION_KIND.EXEC ? "exec" : "file";
    found.push({ id: x.id, kind, expiresBootNs: x.expiresBootNs, expired: x.expiresBootNs <= now });
  }
  for (const key of maps.nets.keys()) {
    const value = maps.nets.lookup(key);
    if (!value) continue;
    const x = decodeException(value);
    found.push({ id: x.id, kind: "egress", expiresBootNs: x.expiresBootNs, expired: x.expiresBootNs <= now });
  }
  return found;
}

/** Sets the switch word to the kinds that have entries: a kind with none costs its denials nothing. */
function syncKinds(maps: ExceptionMaps): void {
  let bits = 0;
  for (const entry of entries(maps, 0n)) {
    bits |= entry.kind === "egress" ? EXCEPTION_KIND.EGRESS : inodeKind(entry.kind);
  }
  maps.kinds.update(encodeU32(0), encodeU32(bits));
}
