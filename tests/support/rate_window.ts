import { bootTimeNs, RATE } from "../../ffi/mod.ts";

/** The kernel rate limit's window (2^30 ns of CLOCK_BOOTTIME) at this moment. */
export function rateWindow(): bigint {
  return bootTimeNs() >> BigInt(RATE.WINDOW_SHIFT);
}

/**
 * Waits for a new rate window to begin, and a little more: XDP reads the clock again only once jiffies
 * moved, so its window may begin a tick after the clock's. A section started here has the window's whole
 * second. Returns the window begun.
 */
export async function rateWindowStart(): Promise<bigint> {
  const now = bootTimeNs();
  const shift = BigInt(RATE.WINDOW_SHIFT);
  const next = ((now >> shift) + 1n) << shift;
  await new Promise((resolve) => setTimeout(resolve, Number(next - now) / 1e6 + 30));
  return rateWindow();
}
