/**
 * Builds and runs tests/support/mptcp_peer.c: an MPTCP server in a VethPair's server namespace that
 * announces a second address, a client in the client namespace and a test cgroup, and a capture of the
 * SYNs to the announced address on the server's veth.
 */
import type { VethPair } from "./netns.ts";
import { must } from "./privileged.ts";

const SOURCE = new URL("./mptcp_peer.c", import.meta.url).pathname;

export async function buildMptcpPeer(dir: string): Promise<string> {
  const binary = `${dir}/mptcp_peer`;
  await must("clang", ["-O2", "-Wall", "-Werror", "-o", binary, SOURCE]);
  return binary;
}

/** The client's pid, the SYNs to `announced` seen on the server's veth, and the bytes the server read. */
export type MptcpOutcome = { pid: number; syns: number; bytes: number };

/** One MPTCP connection from the client (in `cgroupPath`, as `uid`) to the server's first address. */
export async function runMptcpPeer(
  binary: string,
  pair: VethPair,
  cgroupPath: string,
  uid: number,
  announced: string,
  port: number,
): Promise<MptcpOutcome> {
  const out = await must(binary, [
    pair.nsPath(pair.server),
    pair.nsPath(pair.client),
    cgroupPath,
    String(uid),
    pair.serverAddress,
    announced,
    String(port),
  ]);
  const [pid = NaN, syns = NaN, bytes = NaN] = out.trim().split(" ").map(Number);
  return { pid, syns, bytes };
}
