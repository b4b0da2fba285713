import {
  BpfError,
  BpfLink,
  type BpfObject,
  CFG,
  encodeU32,
  encodeU64,
  FdMap,
  LAYOUT,
  type MapDefinition,
} from "../../ffi/mod.ts";
import { RULE_MAPS, type RuleMapName } from "./entries.ts";
import { PROGRAMS } from "./object.ts";
import { exists, listDir } from "./pin_dir.ts";
import { attachFilter, filterStatus, recordedFilters } from "./tc_filter.ts";

/**
 * Hand-over between releases whose pinned maps differ (another layout, another map size): the new release
 * loads its object with fresh maps pinned aside, carries the live state into them (the rule generations'
 * inner maps themselves, the mode words, gen_info, sessions), then moves every link to its programs —
 * cgroup and XDP links atomically with bpf_link_update, LSM and tracepoint links by attaching the new one
 * before the old one goes, so both enforce for a moment — and last puts its map pins in place of the old
 * ones. At no point does a hook run without the live rules. What cannot be carried is refused before
 * anything is attached, with an UpgradeError naming the map.
 */

/** The pinned state of an older release cannot be carried into this one. */
export class UpgradeError extends Error {
  override name = "UpgradeError";
  constructor(readonly map: string, reason: string) {
    super(
      `Cannot take over the pinned map ${map}: ${reason}; run aegisbpf detach and apply the policy again ` +
        "(enforcement stops until then)",
    );
  }
}

const STAGING = "staging";
/** A link's new pin beside the old one while it moves to another program (bpffs refuses names with a dot). */
const NEXT_SUFFIX = "__next";

/** Maps whose pins differ from what the new object declares (by type, sizes, entries or flags). */
export function changedMaps(mapDir: string, declared: ReadonlyMap<string, MapDefinition>): string[] {
  const changed: string[] = [];
  for (const [name, definition] of declared) {
    const path = `${mapDir}/${name}`;
    if (!exists(path)) continue;
    using pinned = FdMap.open(path);
    const old = pinned.definition;
    if (
      old.type !== definition.type || old.keySize !== definition.keySize ||
      old.valueSize !== definition.valueSize || old.maxEntries !== definition.maxEntries ||
      old.flags !== definition.flags
    ) {
      changed.push(name);
    }
  }
  return changed;
}

/**
 * Hands the pins under `pinDir` over to a new object. `loadInto(mapDir)` loads it with every map pinned
 * in `mapDir` (fresh there). Returns the loaded object, its maps pinned in place of the old ones and every
 * pinned link running its programs.
 */
export function handOver(pinDir: string, loadInto: (mapDir: string) => BpfObject): BpfObject {
  const staging = `${pinDir}/${STAGING}`;
  removePins(staging); // what a killed hand-over left
  Deno.mkdirSync(`${staging}/maps`, { recursive: true });
  const next = loadInto(`${staging}/maps`);
  try {
    carryState(`${pinDir}/maps`, next);
  } catch (error) {
    next.close();
    removePins(staging);
    throw error;
  }
  moveLinks(`${pinDir}/links`, next);
  moveFilters(pinDir, next);
  for (const name of listDir(`${staging}/maps`)) {
    Deno.renameSync(`${staging}/maps/${name}`, `${pinDir}/maps/${name}`);
  }
  for (const name of listDir(`${pinDir}/progs`)) Deno.removeSync(`${pinDir}/progs/${name}`);
  removePins(staging);
  return next;
}

/** The live state, from the old pins into the new object's maps; throws UpgradeError where it cannot. */
function carryState(mapDir: string, next: BpfObject): void {
  const old = (name: string) => exists(`${mapDir}/${name}`) ? FdMap.open(`${mapDir}/${name}`) : undefined;
  {
    using config = old("aegis_cfg");
    if (!config || config.valueSize !== 8) {
      throw new UpgradeError("aegis_cfg", "it is not a config map of words");
    }
    const words = [
      CFG.ACTIVE_GEN,
      CFG.FORCE_AUDIT,
      CFG.BREAK_GLASS,
      CFG.DEADMAN,
      CFG.ENFORCE_SIGNAL,
      CFG.INHERITED,
    ];
    for (const word of words) {
      const value = word < config.maxEntries ? config.lookup(encodeU32(word)) : undefined;
      if (value) next.map("aegis_cfg").update(encodeU32(word), value);
    }
    next.map("aegis_cfg").update(
      encodeU32(CFG.LAYOUT),
      new Uint8Array(new BigUint64Array([BigInt(LAYOUT.VERSION)]).buffer),
    );
  }
  {
    using info = old("gen_info");
    const target = next.map("gen_info");
    if (!info || info.valueSize !== target.valueSize) {
      throw new UpgradeError(
        "gen_info",
        `its values are ${info?.valueSize ?? "missing"} bytes, this release's ${target.valueSize}`,
      );
    }
    for (const gen of [0, 1]) {
      const value = info.lookup(encodeU32(gen));
      if (value) target.update(encodeU32(gen), value);
    }
  }
  for (const name of Object.keys(RULE_MAPS) as RuleMapName[]) {
    using outer = old(name);
    if (!outer) throw new UpgradeError(name, "it is not pinned (an older layout keeps rules elsewhere)");
    for (const gen of [0, 1]) {
      const id = outer.lookup(encodeU32(gen));
      if (!id) continue;
      // The generation's inner map itself moves: no entry is copied, and the rules stay the same object.
      using inner = FdMap.fromId(new DataView(id.buffer).getUint32(0, true), `${name}[${gen}]`);
      try {
        next.map(name).update(encodeU32(gen), encodeU32(inner.fd));
      } catch (error) {
        if (error instanceof BpfError && error.errnoName === "EINVAL") {
          throw new UpgradeError(name, "its inner maps do not fit this release's template");
        }
        throw error;
      }
    }
  }
  // Sessions, the inodes that inherited a rule by replacing a denied one, expiring exceptions, and the
  // generations' interface slots (absent in an older release's pins: XDP then finds each interface by its
  // AEGIS_RULE_IFACE entry until the next apply writes them).
  const carried = [
    "ingress_session",
    "inherited",
    "exceptions",
    "exception_nets",
    "exception_kinds",
    "ingress_ifaces",
  ];
  for (const name of carried) {
    using entries = old(name);
    const target = next.map(name);
    // Layout 11 added `flags` at the end of an inheritance (0: not by a writer): older values are padded.
    const grows = name === "inherited" && entries !== undefined && entries.valueSize < target.valueSize;
    if (entries && entries.keySize === target.keySize && (entries.valueSize === target.valueSize || grows)) {
      for (const key of entries.keys()) {
        const found = entries.lookup(key);
        const value = found && grows ? padded(found, target.valueSize) : found;
        if (value) target.update(key, value);
        // An older layout has no word saying so: the hooks search `inherited` only once it is set.
        if (value && name === "inherited") {
          next.map("aegis_cfg").update(encodeU32(CFG.INHERITED), encodeU64(1n));
        }
      }
    }
  }
}

/** `bytes` followed by zeros, `size` bytes in all. */
function padded(bytes: Uint8Array, size: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(size);
  out.set(bytes);
  return out;
}

/**
 * Points every pinned link at the new object's program of the same name: bpf_link_update where the link
 * type has it (cgroup, XDP: one atomic switch), else a new link attached and pinned before the old one is
 * unpinned and closed (LSM, tracepoints: for a moment both run, and either denies).
 */
export function moveLinks(linkDir: string, next: BpfObject): void {
  // What a move killed between its two steps left: the new link pinned aside, the old one maybe gone.
  for (const name of listDir(linkDir).filter((name) => name.endsWith(NEXT_SUFFIX))) {
    const base = `${linkDir}/${name.slice(0, -NEXT_SUFFIX.length)}`;
    if (exists(base)) Deno.removeSync(`${linkDir}/${name}`);
    else Deno.renameSync(`${linkDir}/${name}`, base);
  }
  for (const name of listDir(linkDir)) {
    const path = `${linkDir}/${name}`;
    const program = next.program(name.split("@")[0]!);
    // A link of a program this release does not load here (say, a fallback where BPF-LSM now loads) keeps
    // running what it runs; the new object attaches its own programs for the area afterwards.
    if (program.fd < 0) continue;
    const link = BpfLink.open(path);
    try {
      link.update(program);
      continue;
    } catch (error) {
      if (!(error instanceof BpfError && ["EOPNOTSUPP", "EINVAL", "ENOTSUPP"].includes(error.errnoName))) {
        throw error;
      }
    } finally {
      link.close();
    }
    const fresh = program.attach();
    fresh.pin(`${path}${NEXT_SUFFIX}`);
    Deno.removeSync(path);
    Deno.renameSync(`${path}${NEXT_SUFFIX}`, path);
  }
}

/**
 * The classic tc filters recorded under tc/ (kernels without tcx) given the new release's program, each in
 * one step (a filter replaced in place), and recorded anew. One no longer attached is left for the next
 * apply to replace.
 */
export function moveFilters(pinDir: string, next: BpfObject): void {
  const program = next.program(PROGRAMS.forward);
  if (program.fd < 0) return;
  for (const name of recordedFilters(pinDir)) {
    const status = filterStatus(pinDir, name);
    if (status.attached && status.ifindex !== undefined) attachFilter(program, pinDir, name, status.ifindex);
  }
}

function removePins(dir: string): void {
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}
