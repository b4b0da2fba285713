import { BpfLink, CONFIG_WORDS, encodeU32, encodeU64, FdMap, tryLockDirectory } from "../../ffi/mod.ts";
import { RULE_MAPS } from "./entries.ts";
import { detachQuietly } from "./links.ts";
import { exists, listDir, PIN_KINDS } from "./pin_dir.ts";
import { removeFilter, TC_DIR } from "./tc_filter.ts";

/** The rule maps of pin layout 1 (before per-generation inner maps), for detach on old pins. */
const LAYOUT_1_RULE_MAPS = [
  "deny_file",
  "deny_exec",
  "egress_port",
  "egress_any",
  "ingress_port",
  "ingress_any",
  "scope",
  "egress_uid",
  "egress_uid_port",
  "bind_deny",
  "ingress_failsafe",
  "ingress_iface",
];

/** What detach could not remove (each entry and why), after removing everything else it could. */
export class DetachError extends AggregateError {
  override name = "DetachError";
  /** Entries removed, relative to the pin directory (`links/NAME`, `maps/NAME`). */
  readonly removed: readonly string[];
  /** Each entry left behind, with the error that kept it. */
  readonly failures: readonly { entry: string; error: unknown }[];

  constructor(pinDir: string, removed: string[], failures: { entry: string; error: unknown }[]) {
    const list = failures.map(({ entry, error }) =>
      `${entry}: ${error instanceof Error ? error.message : error}`
    );
    super(
      failures.map((failure) => failure.error),
      `Detach left ${failures.length} entr${failures.length === 1 ? "y" : "ies"} under ${pinDir}: ${
        list.join("; ")
      }`,
    );
    this.removed = removed;
    this.failures = failures;
  }
}

/**
 * Removes every aegisbpf link, program and map pinned under `<bpffs>/aegisbpf/`: the clean uninstall.
 * Links are detached first (cgroup and XDP links at once, even if another process holds them), and the
 * classic tc filters recorded under tc/ deleted (on the interfaces of this network namespace). Goes on
 * past an entry it cannot remove and throws a DetachError listing each at the end. Returns the names
 * removed.
 */
export function detachPins(bpffs: string): string[] {
  const pinDir = `${bpffs}/aegisbpf`;
  if (!exists(pinDir)) return [];
  using _lock = lockBriefly(pinDir) ??
    refuse(`another aegisbpf process is applying a policy under ${pinDir}`);
  const removed: string[] = [];
  const failures: { entry: string; error: unknown }[] = [];
  const attempt = (entry: string, step: () => void) => {
    try {
      step();
      return true;
    } catch (error) {
      failures.push({ entry, error });
      return false;
    }
  };
  // LSM and tracepoint links cannot be detached while another process holds them: empty the rules and
  // force audit first, so that whatever stays attached until that process exits decides nothing.
  neutralize(`${pinDir}/maps`, attempt);
  // The records of classic tc filters (tc/, made only where they are used) go with the links.
  const kinds = ["links", TC_DIR, ...PIN_KINDS.filter((kind) => kind !== "links")];
  for (const kind of kinds) {
    for (const name of listDir(`${pinDir}/${kind}`)) {
      const entry = `${kind}/${name}`;
      const path = `${pinDir}/${entry}`;
      const remove = kind === "links"
        ? () => removeLink(path)
        : kind === TC_DIR
        ? () => removeFilter(pinDir, name)
        : () => Deno.removeSync(path);
      if (attempt(entry, remove)) {
        removed.push(entry);
      }
    }
  }
  for (const dir of [...kinds.map((kind) => `${pinDir}/${kind}`), pinDir]) {
    // A directory still holding an entry that failed is not a failure of its own.
    if (listDir(dir).length === 0) attempt(dir, () => removeDirectory(dir));
  }
  if (failures.length > 0) throw new DetachError(pinDir, removed, failures);
  return removed;
}

/**
 * The pin directory's lock, waiting up to about 100 ms: a running agent takes it for a moment every quarter
 * second to check its mode words (lib/agent/tamper_guard.ts), which must not make a detach fail.
 */
function lockBriefly(pinDir: string): ReturnType<typeof tryLockDirectory> {
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (let attempt = 0; attempt < 20; attempt++) {
    const lock = tryLockDirectory(pinDir);
    if (lock) return lock;
    Atomics.wait(pause, 0, 0, 5);
  }
  return undefined;
}

function removeLink(path: string): void {
  const link = BpfLink.open(path);
  try {
    detachQuietly(link);
    link.unpin();
  } finally {
    link.close();
  }
}

function removeDirectory(path: string): void {
  try {
    Deno.removeSync(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

function refuse(message: string): never {
  throw new Error(`Cannot detach: ${message}; try again when it has finished`);
}

/**
 * Empties every pinned rule map and forces audit, through the pins alone, so that it works on the maps of
 * any release (an older object's layout cannot be loaded by this one).
 */
function neutralize(mapDir: string, attempt: (entry: string, step: () => void) => boolean): void {
  const pinned = new Set(listDir(mapDir));
  if (pinned.has("aegis_cfg")) {
    attempt("maps/aegis_cfg (forcing audit)", () => {
      using config = FdMap.open(`${mapDir}/aegis_cfg`);
      if (config.valueSize === 8 && config.maxEntries > CONFIG_WORDS.forceAudit) {
        config.update(encodeU32(CONFIG_WORDS.forceAudit), encodeU64(1n));
      }
    });
  }
  // Layout 2 keeps rules in maps of maps: emptying a slot drops a whole generation. Older layouts kept
  // them in plain maps: every key is deleted.
  for (const name of [...Object.keys(RULE_MAPS), ...LAYOUT_1_RULE_MAPS]) {
    if (!pinned.has(name)) continue;
    attempt(`maps/${name} (emptying)`, () => {
      using map = FdMap.open(`${mapDir}/${name}`);
      for (const key of map.keys()) map.delete(key);
    });
  }
}
