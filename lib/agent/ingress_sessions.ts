/**
 * Temporary ingress openings made through the API (`POST /v1/ingress/sessions`): the kernel entries each
 * one holds, one per interface and port, so that it can be closed early or forgotten once the kernel has
 * reaped it.
 */

import { InputError } from "../errors.ts";
import type { IngressSession } from "../api/app.ts";
import type { DataPlane } from "../kernel/dataplane.ts";
import { bootTimeNs } from "../kernel/mode_words.ts";
import { parseCidr } from "../policy/cidr.ts";
import type { RuleSetPlan } from "../policy/plan.ts";

/** A session and its kernel entries. */
type SessionRecord = IngressSession & { kernelIds: number[]; expiresBootNs: bigint };

export class IngressSessions {
  readonly #plane: Pick<DataPlane, "addSession" | "removeSession" | "reapSessions">;
  readonly #sessions = new Map<string, SessionRecord>();
  #reaped = false;
  readonly #bootTimeNs: () => bigint;

  /** `bootTime`: the kernel's CLOCK_BOOTTIME, which the session TTLs in the kernel count in. */
  constructor(
    plane: Pick<DataPlane, "addSession" | "removeSession" | "reapSessions">,
    bootTime: () => bigint = bootTimeNs,
  ) {
    this.#plane = plane;
    this.#bootTimeNs = bootTime;
  }

  /**
   * Opens `cidr` (optionally `ports`) through the interfaces `plan` filters with `default: drop` (or the
   * one named) for `ttlMs`. The kernel stops honouring the entries when the TTL ends, with or without the
   * agent; `reap` removes them.
   */
  open(
    plan: RuleSetPlan,
    request: { cidr: string; ports: readonly number[]; ttlMs: number; interface?: string },
  ): IngressSession {
    const filtered = plan.ingress.interfaces;
    if (request.interface !== undefined && !filtered.some((iface) => iface.name === request.interface)) {
      throw new InputError(
        `interface ${request.interface} is not filtered by this agent (${
          filtered.map((iface) => iface.name).join(", ") || "none"
        })`,
      );
    }
    const targets = request.interface !== undefined
      ? [request.interface]
      : filtered.filter((iface) => iface.defaultDrop).map((iface) => iface.name);
    if (targets.length === 0) {
      throw new InputError("no ingress interface here drops by default: a session would open nothing");
    }
    const cidr = parseCidr(request.cidr);
    const nowBootNs = this.#bootTimeNs();
    const kernelIds: number[] = [];
    try {
      for (const iface of targets) {
        for (const port of request.ports.length > 0 ? request.ports : [undefined]) {
          kernelIds.push(this.#plane.addSession({
            interface: iface,
            family: cidr.family,
            addr: cidr.addr,
            prefixLength: cidr.prefixLength,
            ...(port === undefined ? {} : { port }),
            ttlMs: request.ttlMs,
            nowBootNs,
          }));
        }
      }
    } catch (error) {
      for (const id of kernelIds) this.#plane.removeSession(id);
      throw error;
    }
    const session: SessionRecord = {
      id: crypto.randomUUID(),
      expiresAt: new Date(Date.now() + request.ttlMs).toISOString(),
      interfaces: targets,
      kernelIds,
      expiresBootNs: nowBootNs + BigInt(Math.round(request.ttlMs * 1e6)),
    };
    this.#sessions.set(session.id, session);
    return { id: session.id, expiresAt: session.expiresAt, interfaces: session.interfaces };
  }

  /** Closes a session before its TTL; false when there is none by that id. */
  close(id: string): boolean {
    const session = this.#sessions.get(id);
    if (!session) return false;
    for (const kernelId of session.kernelIds) this.#plane.removeSession(kernelId);
    this.#sessions.delete(id);
    return true;
  }

  /** Has the kernel drop the entries whose TTL ended at `nowBootNs`, and forgets their sessions. */
  reap(nowBootNs: bigint): void {
    // Once at least (a previous agent's entries), then only while this agent holds sessions: the kernel
    // ignores an entry past its TTL anyway, and a reap walks the whole map.
    if (this.#reaped && this.#sessions.size === 0) return;
    this.#reaped = true;
    if (this.#plane.reapSessions(nowBootNs) === 0) return;
    for (const [id, session] of this.#sessions) {
      if (session.expiresBootNs <= nowBootNs) this.#sessions.delete(id);
    }
  }
}
