/**
 * The agent's operations as the local API sees them (lib/api/app.ts `ApiDeps`). Applies, rollbacks and
 * break-glass go through the same library paths as the commands, so a running agent picks them up as it
 * picks up the commands' (its generation and marker watches); events come from the agent's hub; ingress
 * sessions are the agent's, since only it knows which interfaces it filters.
 */

import type { ApiDeps, IngressSession } from "../api/app.ts";
import type { EventHub } from "../api/event_hub.ts";
import { collect, families } from "../metrics/collect.ts";
import { exposition } from "../metrics/exposition.ts";
import type { Where } from "../ops/apply_text.ts";
import { applyInHelper, rollbackInHelper } from "../ops/prepare.ts";
import { breakGlassOff, breakGlassOn } from "../ops/break_glass.ts";
import { checkHealth } from "../report/health.ts";
import { addException, listExceptions, removeExceptions } from "../ops/exceptions.ts";
import { InputError } from "../errors.ts";

export type SessionOps = {
  add(request: { cidr: string; ports: number[]; ttlMs: number; interface?: string }): Promise<IngressSession>;
  remove(id: string): Promise<boolean>;
};

/** JSON of values that may hold bigints (kernel counters), as numbers. */
export function plainJson(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value, (_key, v) => typeof v === "bigint" ? Number(v) : v));
}

export function agentApiDeps(
  where: Where,
  hub: EventHub,
  sessions: SessionOps,
  ruleName: (gen: number, ruleId: number) => string,
): ApiDeps {
  return {
    health: () => {
      // A readiness probe, polled, and open to every local user on TCP: only what is cheap to read. No BPF
      // iterator load, no stat of every denied inode nor walk of recursive rules' trees (status and the
      // health command do those; a running agent watches rule paths itself).
      const report = checkHealth(where, { requireEnforce: false, connections: false, staleRules: false });
      return Promise.resolve({ ready: report.healthy, report: plainJson(report) });
    },
    metrics: () => exposition(families(collect(where, { ruleName }))),
    status: () => plainJson(checkHealth(where, { requireEnforce: false, trees: false })),
    events: hub,
    // In a helper process, as the agent's own policies are (lib/ops/prepare.ts): the agent never keeps
    // the peak of a parse.
    applyPolicy: ({ text, source }) => applyInHelper(where, text, source),
    rollback: ({ to }) => rollbackInHelper(where, to),
    breakGlass: (request) => {
      if (!request.on) return Promise.resolve(plainJson(breakGlassOff(where)));
      const on = breakGlassOn(where, {
        reason: request.reason,
        ...(request.ttlMs === undefined ? {} : { ttlMs: request.ttlMs }),
      });
      return Promise.resolve(plainJson(on));
    },
    sessions,
    // The Unix socket admits only its allowed peers (server.ts): the record names the agent's uid.
    exceptions: {
      add: (request) => addException(where, request, { uid: Deno.uid() ?? 0, ...API_LOCK }),
      list: () => listExceptions(where),
      remove: async (id) => {
        try {
          return (await removeExceptions(where, { id }, { uid: Deno.uid() ?? 0, ...API_LOCK })).length > 0;
        } catch (error) {
          if (error instanceof InputError && /^No exception/.test(error.message)) return false;
          throw error;
        }
      },
    },
  };
}

/** The API waits for the state lock as a command does, and gives up after the default timeout. */
const API_LOCK = { wait: true, onWait: () => {} };
