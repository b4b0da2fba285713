/**
 * Which XDP attach mode an interface gets. Native mode runs the program in the driver, before the kernel
 * builds a socket buffer: the fastest path on a NIC whose driver has it (virtio-net, mlx5, i40e, ...). A veth
 * has native XDP too, but what it receives is a socket buffer its peer's stack built already: native mode
 * converts it to a frame and queues it for a NAPI poll, which costs more per packet than the generic hook
 * on the socket buffer as it is (measured by bench/suites/ingress.ts). So "auto" attaches generic on a veth
 * and native elsewhere (falling back to generic where the driver refuses native).
 */

/** "auto" chooses by the interface's driver; "native" and "generic" force a mode (tests, benchmarks). */
export type XdpMode = "auto" | "native" | "generic";

/** Drivers whose native XDP costs more per packet than the generic hook. */
const GENERIC_FIRST_DRIVERS: ReadonlySet<string> = new Set(["veth"]);

/** The mode to attach in first, for an interface whose driver is `driver` (undefined: it reports none). */
export function xdpAttachMode(requested: XdpMode, driver: string | undefined): "native" | "generic" {
  if (requested !== "auto") return requested;
  return driver !== undefined && GENERIC_FIRST_DRIVERS.has(driver) ? "generic" : "native";
}
