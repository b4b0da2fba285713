import {
  type BpfObject,
  decodeEvent,
  encodeConfig,
  encodeInodeKey,
  encodeLpm4Key,
  encodeRule,
  type RawEvent,
  RingBuffer,
} from "../../ffi/mod.ts";
import { kernelDev } from "../../lib/kernel/dev.ts";

/** Writes the config map: enforce or audit, generation 0, no break-glass, no deadman. */
export function setMode(object: BpfObject, mode: "enforce" | "audit"): void {
  object.map("aegis_cfg").update(
    new Uint8Array(4),
    encodeConfig({ mode: mode === "enforce" ? 1 : 0, activeGen: 0, breakGlass: 0, deadmanDeadlineNs: 0n }),
  );
}

/** Adds an IPv4 CIDR (generation 0) with `ruleId` to an LPM map such as egress4 or ingress4. */
export function denyCidr(object: BpfObject, map: "egress4" | "ingress4", cidr: string, ruleId: number): void {
  const [address = "", length = "32"] = cidr.split("/");
  const addr = new Uint8Array(address.split(".").map(Number));
  object.map(map).update(
    encodeLpm4Key({ gen: 0, addr, prefixLength: Number(length) }),
    encodeRule({ ruleId, action: 0 }),
  );
}

/** Denies the inode behind `path` (generation 0); returns the (dev, ino) written. */
export function denyFile(object: BpfObject, path: string, ruleId: number): { dev: number; ino: bigint } {
  const stat = Deno.statSync(path);
  const dev = kernelDev(stat.dev);
  const ino = BigInt(stat.ino ?? 0);
  object.map("deny_inode").update(encodeInodeKey({ dev, ino, gen: 0 }), encodeRule({ ruleId, action: 0 }));
  return { dev, ino };
}

/** Collects every event record the kernel has queued so far. */
export function drainEvents(object: BpfObject): RawEvent[] {
  const events: RawEvent[] = [];
  using ring = new RingBuffer(object.map("events"), (record) => events.push(decodeEvent(record)));
  ring.consume();
  return events;
}

/** Sum over CPUs of one per-CPU u64 counter slot. */
export function counter(object: BpfObject, slot: number): bigint {
  const key = new Uint8Array(new Uint32Array([slot]).buffer);
  const value = object.map("counters").lookup(key);
  if (!value) return 0n;
  const view = new DataView(value.buffer);
  let total = 0n;
  for (let offset = 0; offset < value.byteLength; offset += 8) total += view.getBigUint64(offset, true);
  return total;
}
