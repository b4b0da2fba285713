/**
 * The kernel-side checks of `applyPolicy`, run alone: names that must resolve on this host (exit 2) and
 * areas an enforce policy uses that this kernel can only audit (exit 3). `policy apply --dry-run` runs them
 * through the very functions the real apply calls, so that a dry run refuses where the apply would. Nothing
 * is recorded, pinned or attached: the kernel's abilities come from a probe load, as `doctor`'s do.
 */

import { planeStatus, probeLsmAt, wantsLsmArea } from "../kernel/load.ts";
import type { TrustReport } from "../kernel/entries.ts";
import type { RuleSetPlan } from "../policy/plan.ts";
import {
  type ApplyRequest,
  checkEnforceable,
  planAreas,
  resolveNames,
  warnProtectFallback,
} from "./apply.ts";

export function preflightApply(
  plan: RuleSetPlan,
  options: Pick<ApplyRequest, "allowPartial" | "warn"> & { bpffs?: string; stateDir?: string },
): { trust?: TrustReport } {
  const { trust } = resolveNames(plan, options.warn, options.stateDir);
  const areas = new Set(planAreas(plan));
  // Pins of this build already know whether BPF-LSM loads in this boot: no probe load then.
  const known = options.bpffs !== undefined && wantsLsmArea(areas)
    ? probeLsmAt(`${options.bpffs}/aegisbpf`)
    : undefined;
  const { status } = planeStatus(areas, "auto", known);
  checkEnforceable({ status }, plan, options);
  warnProtectFallback({ status }, plan, options);
  return trust ? { trust } : {};
}
