import { must, run, uniqueName } from "./privileged.ts";

const PREFIX = "aegt";

/**
 * Two network namespaces joined by a veth pair: `client` (address .1) and `server` (address .2) on a
 * /30 from the benchmark range 198.18.0.0/15, so no real network is ever addressed.
 */
export class VethPair {
  readonly client: string;
  readonly server: string;
  readonly clientAddress: string;
  readonly serverAddress: string;
  readonly serverInterface = "veth-srv";

  private constructor(client: string, server: string, subnet: number) {
    this.client = client;
    this.server = server;
    this.clientAddress = `198.18.${subnet}.1`;
    this.serverAddress = `198.18.${subnet}.2`;
  }

  static async create(): Promise<VethPair> {
    await removeLeftovers();
    const base = uniqueName(PREFIX);
    const pair = new VethPair(`${base}c`, `${base}s`, 1 + (Deno.pid % 250));
    try {
      await must("ip", ["netns", "add", pair.client]);
      await must("ip", ["netns", "add", pair.server]);
      await must("ip", [
        "-n",
        pair.client,
        "link",
        "add",
        "veth-cli",
        "type",
        "veth",
        "peer",
        "name",
        "veth-srv",
        "netns",
        pair.server,
      ]);
      await must("ip", ["-n", pair.client, "addr", "add", `${pair.clientAddress}/30`, "dev", "veth-cli"]);
      await must("ip", ["-n", pair.server, "addr", "add", `${pair.serverAddress}/30`, "dev", "veth-srv"]);
      for (const ns of [pair.client, pair.server]) {
        await must("ip", ["-n", ns, "link", "set", "lo", "up"]);
      }
      await must("ip", ["-n", pair.client, "link", "set", "veth-cli", "up"]);
      await must("ip", ["-n", pair.server, "link", "set", "veth-srv", "up"]);
    } catch (error) {
      await pair.remove();
      throw error;
    }
    return pair;
  }

  /** Path of a namespace, for setns. */
  nsPath(ns: string): string {
    return `/run/netns/${ns}`;
  }

  /** Whether one ping from client to server gets an answer within a second. */
  async pingServer(): Promise<boolean> {
    const result = await run("ip", [
      "netns",
      "exec",
      this.client,
      "ping",
      "-c",
      "1",
      "-W",
      "1",
      this.serverAddress,
    ]);
    return result.code === 0;
  }

  async remove(): Promise<void> {
    await run("ip", ["netns", "delete", this.client]);
    await run("ip", ["netns", "delete", this.server]);
  }
}

async function removeLeftovers(): Promise<void> {
  const list = await run("ip", ["netns", "list"]);
  for (const line of list.stdout.split("\n")) {
    const name = line.split(" ")[0];
    if (name?.startsWith(PREFIX)) await run("ip", ["netns", "delete", name]);
  }
}
