import { type BpfMap, decodeSession, encodeSession, encodeSessionKey, ifIndex } from "../../ffi/mod.ts";

/** A temporary ingress allow entry. */
export type Session = {
  interface: string;
  family: 4 | 6;
  addr: Uint8Array;
  prefixLength: number;
  port?: number;
  ttlMs: number;
  nowBootNs: bigint;
};

/** Adds `session` to the session trie `map`; returns its id (one more than the largest in use). */
export function addSession(map: BpfMap, session: Session): number {
  const ids = map.keys().map((key) => decodeSession(map.lookup(key) ?? new Uint8Array(16)).sessionId);
  const sessionId = Math.max(0, ...ids) + 1;
  const key = encodeSessionKey({
    ifindex: ifIndex(session.interface),
    family: session.family,
    addr: session.addr,
    prefixLength: session.prefixLength,
    port: session.port ?? 0,
  });
  const expiresBootNs = session.nowBootNs + BigInt(Math.round(session.ttlMs * 1e6));
  map.update(key, encodeSession({ expiresBootNs, sessionId }));
  return sessionId;
}

/** Deletes the sessions `match` selects; returns how many. */
export function deleteSessions(
  map: BpfMap,
  match: (session: { expiresBootNs: bigint; sessionId: number }) => boolean,
): number {
  let removed = 0;
  for (const key of map.keys()) {
    const value = map.lookup(key);
    if (value && match(decodeSession(value)) && map.delete(key)) removed++;
  }
  return removed;
}
