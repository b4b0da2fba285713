import {
  AEGIS_RULE,
  type BpfMap,
  type BpfObject,
  CONFIG_WORDS,
  decodeRuleHitKey,
  encodeU32,
  encodeU64,
  FdMap,
  stampGenInfo,
  STAT_LIMITS,
  writeElementsAtOnce,
} from "../../ffi/mod.ts";
import {
  type Batch,
  encodeNetRules,
  type ResolvedRuleSet,
  RULE_MAPS,
  type RuleMapName,
  ruleSetEntries,
  splitNetEntries,
} from "./entries.ts";
import type { EncodedNet, RuleSetPlan } from "../policy/plan.ts";
import { phase, phaseAsync } from "../phases.ts";

const BPF_MAP_TYPE_HASH = 1;
const BPF_MAP_TYPE_LPM_TRIE = 11;
const BPF_F_NO_PREALLOC = 1;

/** How each outer map's inner maps are made: the kernel requires type, sizes and flags of the template. */
const INNER: Readonly<Record<RuleMapName, { type: number; flags: number }>> = {
  rules: { type: BPF_MAP_TYPE_HASH, flags: 0 },
  net_rules: { type: BPF_MAP_TYPE_LPM_TRIE, flags: BPF_F_NO_PREALLOC },
  // Preallocated (the object's template says so): sized to the generation, and faster to fill.
  net_exact: { type: BPF_MAP_TYPE_HASH, flags: 0 },
};

/** The new rules are live, but a step after the flip failed: do not retry the apply. */
export class AppliedWithCleanupError extends Error {
  override name = "AppliedWithCleanupError";
  constructor(readonly generation: number, cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(`Rule set applied (generation ${generation} is live), but cleaning up after it failed: ${reason}`, {
      cause,
    });
  }
}

/** A generation written into fresh inner maps and installed in the inactive slots, not yet live. */
export class StagedGeneration {
  readonly generation: number;
  readonly #object: BpfObject;
  readonly #inner: Map<RuleMapName, FdMap>;

  /** @internal Made by stageGeneration. */
  constructor(object: BpfObject, generation: number, inner: Map<RuleMapName, FdMap>) {
    this.#object = object;
    this.generation = generation;
    this.#inner = inner;
  }

  /**
   * Makes the staged generation live: one write of the generation word flips every hook at once. Then
   * waits until no hook still runs on the old word (re-installing a live inner map in its own slot is an
   * update of a map-of-maps, and the kernel returns from that only after an RCU grace period:
   * kernel/bpf/syscall.c, maybe_wait_bpf_programs(), called by map_update_elem for ARRAY_OF_MAPS and
   * HASH_OF_MAPS; every hook runs inside an RCU read section), and drops the old generation's inner maps.
   * A generation with no entries at all installs nothing and needs no wait: a hook still on the old word
   * that finds the old slot emptied decides "no rule", which is what the new, empty generation decides.
   */
  commit(): void {
    this.flip();
    try {
      phase("drop old", () => {
        for (const name of this.#oldSlots()) this.#outer(name).delete(encodeU32(this.generation ^ 1));
      });
    } catch (error) {
      throw new AppliedWithCleanupError(this.generation, error);
    }
  }

  /**
   * The first half of commit(): the flip, and the wait for hooks still on the old word. A failure of the
   * flip is rethrown as it is (the old generation is still live); one after it is an AppliedWithCleanupError.
   */
  flip(): void {
    phase("flip", () =>
      this.#object.map("aegis_cfg").update(
        encodeU32(CONFIG_WORDS.activeGen),
        encodeU64(BigInt(this.generation)),
      ));
    try {
      const [first] = this.#inner;
      phase("grace period", () => {
        if (first) this.#outer(first[0]).update(encodeU32(this.generation), encodeU32(first[1].fd));
      });
    } catch (error) {
      throw new AppliedWithCleanupError(this.generation, error);
    }
  }

  /**
   * The second half of commit(), after flip(): drops the old generation's inner maps, every slot at once on
   * worker threads (each delete from a map of maps waits for a grace period in the kernel; waits made
   * together end together). Dispatched before it returns: what the caller does next runs meanwhile.
   */
  async dropOld(): Promise<void> {
    try {
      const key = encodeU32(this.generation ^ 1);
      const slots = this.#oldSlots().map((name) => ({ fd: this.#outer(name).fd, name, key }));
      await phaseAsync("drop old", () => writeElementsAtOnce(slots));
    } catch (error) {
      throw new AppliedWithCleanupError(this.generation, error);
    }
  }

  /** The rule maps whose slot of the old generation holds an inner map. */
  #oldSlots(): RuleMapName[] {
    const previous = this.generation ^ 1;
    return (Object.keys(RULE_MAPS) as RuleMapName[]).filter((name) => occupied(this.#outer(name), previous));
  }

  /** @internal Writes the generation's gen_info, once its inner maps are installed (stageGeneration). */
  writeGenInfo(genInfo: Uint8Array<ArrayBuffer>): void {
    this.#object.map("gen_info").update(encodeU32(this.generation), genInfo);
  }

  /** Empties the inactive slots again, after a failure before the flip. */
  abandon(): void {
    for (const name of Object.keys(RULE_MAPS) as RuleMapName[]) {
      this.#outer(name).delete(encodeU32(this.generation));
    }
  }

  /** Releases this process's handles of the inner maps (the outer maps keep theirs). */
  close(): void {
    for (const map of this.#inner.values()) map.close();
    this.#inner.clear();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #outer(name: RuleMapName) {
    return this.#object.map(name);
  }
}

/** The inner maps of a plan's CIDR rules (splitNetEntries), which a write ahead makes. */
type NetMapName = "net_rules" | "net_exact";
const NET_MAPS: readonly NetMapName[] = ["net_rules", "net_exact"];

/**
 * A plan's CIDR inner maps (the `net_rules` trie and the `net_exact` hash), written ahead while the apply
 * still checks and waits for its locks: the kernel takes about 0.1 s for 100,000 trie entries, on worker
 * threads here. The maps are fresh and installed nowhere, so nothing the hooks read changes;
 * `stageGeneration` installs them as the new generation's, and those not installed (a check refused the
 * apply, the policy was in force already) are closed when this is disposed, and freed by the kernel.
 */
export class NetRulesAhead implements Disposable {
  /** The plan written: a stage of any other plan writes its own. */
  readonly plan: RuleSetPlan;
  /** The plan's entries, which the stage takes as they are instead of encoding them again. */
  readonly encoded: EncodedNet;
  #maps: Map<NetMapName, FdMap>;
  #done = false;
  readonly #written: Promise<void>;

  private constructor(
    plan: RuleSetPlan,
    encoded: EncodedNet,
    maps: Map<NetMapName, FdMap>,
    batches: Record<NetMapName, Batch>,
  ) {
    this.plan = plan;
    this.encoded = encoded;
    this.#maps = maps;
    this.#written = Promise.all(
      [...maps].map(([name, map]) =>
        map.updateBatchAsync(batches[name].keys, batches[name].values, batches[name].count)
      ),
    ).then(() => {});
    // An apply refused meanwhile never waits for the write: its failure is then no unhandled rejection.
    this.#written.then(() => this.#done = true, () => {});
  }

  /**
   * Encodes the plan's CIDR rules and starts writing them. Writes nothing where the stage would refuse the
   * set for its size (the stage says so) or where there is nothing to write.
   */
  static start(plan: RuleSetPlan): NetRulesAhead {
    const encoded = encodeNetRules(plan);
    const batches = splitNetEntries(encoded);
    const maps = new Map<NetMapName, FdMap>();
    const fits = NET_MAPS.every((name) => batches[name].count <= RULE_MAPS[name].capacity);
    try {
      for (const name of fits ? NET_MAPS : []) {
        if (batches[name].count === 0) continue;
        maps.set(
          name,
          FdMap.create(`${name}_new`, {
            ...INNER[name],
            keySize: RULE_MAPS[name].keySize,
            valueSize: AEGIS_RULE.size,
            maxEntries: batches[name].count,
          }),
        );
      }
    } catch {
      // Only a head start: where no map can be made now (no privilege), the stage makes it and says why.
      for (const map of maps.values()) map.close();
      maps.clear();
    }
    return new NetRulesAhead(plan, encoded, maps, batches);
  }

  /** Resolves once the writes are done; rejects with the first error. */
  written(): Promise<void> {
    return this.#written;
  }

  /**
   * The written map of `name`, once, when the writes are done: the stage installs it (and closes it when the
   * stage fails). Before that, or after a failed write, nothing: the stage writes a map of its own.
   */
  take(name: NetMapName): FdMap | undefined {
    if (!this.#done) return undefined;
    const map = this.#maps.get(name);
    this.#maps.delete(name);
    return map;
  }

  [Symbol.dispose](): void {
    for (const map of this.#maps.values()) map.close();
    this.#maps.clear();
  }
}

/**
 * Writes a rule set into fresh inner maps, sized to it, and installs them in the slots of `generation`
 * (the inactive one) with its gen_info. Nothing the hooks read changes until `commit()`. Capacity is
 * checked before anything is made; on any failure the slots are emptied again and the error rethrown.
 * `ahead`: the plan's `net_rules` map written ahead, installed if its write is done (NetRulesAhead.take()).
 */
export function stageGeneration(
  object: BpfObject,
  set: ResolvedRuleSet,
  generation: number,
  capacity: Partial<Record<RuleMapName, number>> = {},
  ahead?: NetRulesAhead,
): StagedGeneration {
  return phase("stage", () => {
    const written = writeGeneration(object, set, generation, capacity, ahead);
    return installed(written, () => {
      for (const { name, map } of written.installs) {
        phase(`install ${name}`, () => object.map(name).update(encodeU32(generation), encodeU32(map.fd)));
      }
    });
  });
}

/**
 * stageGeneration() with every inner map installed at once, each on a worker thread: each install waits for
 * an RCU grace period in the kernel (an update of a map of maps), and waits made together end together. The
 * caller's turn ends while they run.
 */
export function stageGenerationAtOnce(
  object: BpfObject,
  set: ResolvedRuleSet,
  generation: number,
  capacity: Partial<Record<RuleMapName, number>> = {},
  ahead?: NetRulesAhead,
): Promise<StagedGeneration> {
  return phaseAsync("stage", async () => {
    const written = writeGeneration(object, set, generation, capacity, ahead);
    const slot = encodeU32(generation);
    const installs = written.installs.map(({ name, map }) => ({
      fd: object.map(name).fd,
      name,
      key: slot,
      value: encodeU32(map.fd),
    }));
    return await installedAsync(written, () => phaseAsync("install", () => writeElementsAtOnce(installs)));
  });
}

/** A generation's inner maps written, not yet installed, and its gen_info. */
type Written = {
  staged: StagedGeneration;
  installs: { name: RuleMapName; map: FdMap }[];
  genInfo: Uint8Array<ArrayBuffer>;
};

function writeGeneration(
  object: BpfObject,
  set: ResolvedRuleSet,
  generation: number,
  capacity: Partial<Record<RuleMapName, number>>,
  ahead: NetRulesAhead | undefined,
): Written {
  const early = ahead?.plan === set.plan ? ahead : undefined;
  const entries = phase("encode", () => ruleSetEntries(set, capacity, early?.encoded));
  stampGenInfo(entries.genInfo);
  phase("clear hits", () => clearRuleHits(object, generation));
  const inner = new Map<RuleMapName, FdMap>();
  const staged = new StagedGeneration(object, generation, inner);
  const installs: Written["installs"] = [];
  failing(staged, () => {
    for (const name of Object.keys(RULE_MAPS) as RuleMapName[]) {
      // No entries: no inner map, and no wait for installing one (the slot may hold what a killed apply
      // left there: empty it).
      if (entries[name].count === 0) {
        if (occupied(object.map(name), generation)) object.map(name).delete(encodeU32(generation));
        continue;
      }
      const written = name === "net_rules" || name === "net_exact" ? early?.take(name) : undefined;
      const map = written ?? phase(`write ${name}`, () => createInner(name, generation, entries[name]));
      inner.set(name, map);
      installs.push({ name, map });
    }
    // The staged generation's slots: no hook reads them before the flip.
    writeIfaceSlots(object, generation, entries.ifaceSlots);
  });
  return { staged, installs, genInfo: entries.genInfo };
}

/** The staged generation once `install` has put its inner maps in their slots and its gen_info is written. */
function installed({ staged, genInfo }: Written, install: () => void): StagedGeneration {
  failing(staged, () => {
    install();
    staged.writeGenInfo(genInfo);
  });
  return staged;
}

async function installedAsync({ staged, genInfo }: Written, install: () => Promise<void>) {
  try {
    await install();
    staged.writeGenInfo(genInfo);
  } catch (error) {
    discard(staged);
    throw error;
  }
  return staged;
}

/** Runs `fn`; on a failure, empties the staged slots again and releases its maps, and rethrows. */
function failing(staged: StagedGeneration, fn: () => void): void {
  try {
    fn();
  } catch (error) {
    discard(staged);
    throw error;
  }
}

function discard(staged: StagedGeneration): void {
  try {
    staged.abandon();
  } finally {
    staged.close();
  }
}

/** Whether a slot of an outer map holds an inner map (a user-space lookup reads its id; it never waits). */
function occupied(outer: BpfMap, generation: number): boolean {
  return outer.lookup(encodeU32(generation)) !== undefined;
}

function createInner(name: RuleMapName, generation: number, batch: Batch): FdMap {
  const map = FdMap.create(`${name}_g${generation}`, {
    ...INNER[name],
    keySize: RULE_MAPS[name].keySize,
    valueSize: AEGIS_RULE.size,
    maxEntries: Math.max(1, batch.count),
  });
  try {
    map.updateBatch(batch.keys, batch.values, batch.count);
  } catch (error) {
    map.close();
    throw error;
  }
  return map;
}

/** Every ingress_ifaces slot of `generation` (ifaceSlots()), in one call. */
function writeIfaceSlots(object: BpfObject, generation: number, values: Uint8Array<ArrayBuffer>): void {
  const slots = STAT_LIMITS.XDP_STAT_SLOTS;
  object.map("ingress_ifaces").updateBatch(slotKeys(generation * slots, slots), values, slots);
}

/**
 * Forgets the per-rule counts of `generation` before it is staged again: its rule ids are about to name the
 * rules of another rule set. No hook counts into it by now (the flip away from it waited for a grace period
 * wherever it installed maps).
 */
function clearRuleHits(object: BpfObject, generation: number): void {
  const hits = object.map("rule_hits");
  for (const key of hits.keys()) {
    if (decodeRuleHitKey(key).gen === generation) hits.delete(key);
  }
  // The slots of the generation: every decision's row (ruleHitSlotOf), every CPU's slot freed.
  const count = STAT_LIMITS.RULE_HIT_ROWS * STAT_LIMITS.RULE_HIT_SLOTS;
  const slots = object.map("rule_hit_slots");
  slots.updateBatch(slotKeys(generation * count, count), new Uint8Array(count * slots.lookupSize), count);
}

/** `count` array keys from `first` on, back to back. */
function slotKeys(first: number, count: number): Uint8Array<ArrayBuffer> {
  const keys = new Uint8Array(count * 4);
  const view = new DataView(keys.buffer);
  for (let index = 0; index < count; index++) view.setUint32(index * 4, first + index, true);
  return keys;
}
