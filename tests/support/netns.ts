import { isLeftover, must, run, uniqueName } from "./privileged.ts";

const PREFIX = "aegt";

export type Transport = "tcp" | "udp";

/**
 * Two network namespaces joined by a veth pair: `client` (address .1 / ::1) and `server` (address .2 /
 * ::2) on a /30 from the benchmark range 198.18.0.0/15 and a /64 from the documentation range
 * 2001:db8::/32, so no real network is ever addressed.
 */
export class VethPair {
  readonly client: string;
  readonly server: string;
  readonly clientAddress: string;
  readonly serverAddress: string;
  readonly clientAddress6: string;
  readonly serverAddress6: string;
  readonly serverInterface = "veth-srv";

  private constructor(client: string, server: string, subnet: number) {
    this.client = client;
    this.server = server;
    this.clientAddress = `198.18.${subnet}.1`;
    this.serverAddress = `198.18.${subnet}.2`;
    this.clientAddress6 = `2001:db8:${subnet.toString(16)}::1`;
    this.serverAddress6 = `2001:db8:${subnet.toString(16)}::2`;
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
      const ends = [
        { ns: pair.client, dev: "veth-cli", address: pair.clientAddress, address6: pair.clientAddress6 },
        { ns: pair.server, dev: "veth-srv", address: pair.serverAddress, address6: pair.serverAddress6 },
      ];
      for (const { ns, dev, address, address6 } of ends) {
        await must("ip", ["-n", ns, "addr", "add", `${address}/30`, "dev", dev]);
        // nodad: usable at once, not after duplicate address detection.
        await must("ip", ["-n", ns, "addr", "add", `${address6}/64`, "dev", dev, "nodad"]);
        await must("ip", ["-n", ns, "link", "set", "lo", "up"]);
        await must("ip", ["-n", ns, "link", "set", dev, "up"]);
      }
      for (const { ns, dev, address6 } of ends) await waitForIpv6(ns, dev, address6);
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

  /** Whether one ping from client to server (IPv4 or IPv6) gets an answer within a second. */
  async pingServer(family: 4 | 6 = 4): Promise<boolean> {
    const address = family === 4 ? this.serverAddress : this.serverAddress6;
    const result = await run("ip", [
      "netns",
      "exec",
      this.client,
      "ping",
      `-${family}`,
      "-c",
      "1",
      "-W",
      "1",
      address,
    ]);
    return result.code === 0;
  }

  /**
   * Starts an echo server in the server namespace on each port, TCP and UDP, on every address (IPv4 and
   * IPv6): TCP connections get "ok" and are closed, UDP datagrams are answered with "ok".
   */
  async serve(ports: number[]): Promise<EchoServer> {
    return await EchoServer.start(this.server, ports);
  }

  /**
   * Connects from the client namespace to `address` (TCP) or sends it one datagram (UDP) and waits for the
   * echo server's answer: "answered", "timeout" when nothing came back within `timeoutMs` (a dropped
   * packet), or the client's error text (e.g. "Connection refused": the packet got through).
   */
  async reach(transport: Transport, address: string, port: number, timeoutMs = 1500): Promise<string> {
    const send = transport === "udp" ? "echo ping >&3 && " : "";
    const script = `exec 3<>/dev/${transport}/"$1"/"$2" && ${send}head -n 1 <&3`;
    const result = await run("ip", [
      "netns",
      "exec",
      this.client,
      "timeout",
      `${timeoutMs / 1000}`,
      "bash",
      "-c",
      script,
      "reach",
      address,
      String(port),
    ]);
    if (result.code === TIMEOUT_EXIT) return "timeout";
    if (result.code === 0 && result.stdout.trim() === "ok") return "answered";
    return result.stderr.trim() || `exit ${result.code}: ${result.stdout.trim()}`;
  }

  /** Whether `ip link` lists an XDP program (native or generic) on the server interface. */
  async serverXdpAttached(): Promise<boolean> {
    const output = await must("ip", ["-n", this.server, "link", "show", this.serverInterface]);
    return /\bxdp/.test(output);
  }

  async remove(): Promise<void> {
    await run("ip", ["netns", "delete", this.client]);
    await run("ip", ["netns", "delete", this.server]);
  }
}

/** coreutils timeout(1) exits 124 when it had to stop the command. */
const TIMEOUT_EXIT = 124;
const READY = "ready";
const START_TIMEOUT_MS = 10_000;

/** A TCP and UDP echo server running as a child process inside a namespace. */
export class EchoServer {
  readonly #child: Deno.ChildProcess;
  readonly #lines: ReadableStreamDefaultReader<string>;

  private constructor(child: Deno.ChildProcess) {
    this.#child = child;
    this.#lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  }

  static async start(ns: string, ports: number[]): Promise<EchoServer> {
    const script = `
      const ok = new TextEncoder().encode("ok\\n");
      for (const port of ${JSON.stringify(ports)}) {
        const tcp = Deno.listen({ hostname: "::", port });
        const udp = Deno.listenDatagram({ transport: "udp", hostname: "::", port });
        (async () => {
          for await (const connection of tcp) connection.write(ok).finally(() => connection.close());
        })();
        (async () => {
          for await (const [, from] of udp) await udp.send(ok, from);
        })();
      }
      console.log("${READY}");
    `;
    const child = new Deno.Command("ip", {
      args: ["netns", "exec", ns, Deno.execPath(), "eval", "--unstable-net", "--quiet", script],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const server = new EchoServer(child);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), START_TIMEOUT_MS);
    });
    const first = await Promise.race([server.#lines.read().then((line) => line.value), timeout]);
    clearTimeout(timer);
    if (first?.trim() !== READY) {
      const stderr = await server.stop();
      throw new Error(`Echo server in ${ns} did not start within ${START_TIMEOUT_MS} ms: ${stderr.trim()}`);
    }
    return server;
  }

  /** Stops the server; returns what it wrote to stderr. */
  async stop(): Promise<string> {
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // It has exited already.
    }
    const [, stderr] = await Promise.all([this.#child.status, new Response(this.#child.stderr).text()]);
    await this.#lines.cancel();
    return stderr;
  }
}

/**
 * Waits until the kernel has set up IPv6 on a device that just came up: until then, it has no multicast
 * route and drops neighbour solicitations (a first ping -6 would be lost).
 */
async function waitForIpv6(ns: string, dev: string, address6: string): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const routes = await must("ip", ["-n", ns, "-6", "route", "show", "table", "local", "dev", dev]);
    if (routes.includes("multicast ff00::/8") && routes.includes(`local ${address6} `)) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`IPv6 on ${dev} in ${ns} is not ready after a second`);
}

/** Namespaces of interrupted runs; those of test processes still running are left alone. */
async function removeLeftovers(): Promise<void> {
  const list = await run("ip", ["netns", "list"]);
  for (const line of list.stdout.split("\n")) {
    const name = line.split(" ")[0] ?? "";
    if (isLeftover(name, PREFIX)) await run("ip", ["netns", "delete", name]);
  }
}
