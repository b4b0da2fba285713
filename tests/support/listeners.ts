import { libc } from "../../ffi/libbpf.ts";
import { AF_INET, SOCK_CLOEXEC, SOCK_STREAM } from "../../ffi/socket_constants.ts";

/** What a process listens on and which signals it ignores, read from /proc. */

/** The TCP ports (IPv4 and IPv6) on which `pid` holds a listening socket. */
export function listeningTcpPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const entry of Deno.readDirSync(`/proc/${pid}/fd`)) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(Deno.readLinkSync(`/proc/${pid}/fd/${entry.name}`));
      if (match) inodes.add(match[1]!);
    } catch {
      // closed meanwhile
    }
  }
  const ports: number[] = [];
  for (const table of ["tcp", "tcp6"]) {
    for (const line of Deno.readTextFileSync(`/proc/${pid}/net/${table}`).split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      // sl local_address rem_address st ... inode (field 9); st 0A is LISTEN
      if (fields[3] === "0A" && inodes.has(fields[9]!)) ports.push(parseInt(fields[1]!.split(":")[1]!, 16));
    }
  }
  return ports.sort((a, b) => a - b);
}

/** Whether the kernel discards signal `signo` for `pid` (SigIgn of /proc/PID/status). */
export function signalIgnored(pid: number, signo: number): boolean {
  const mask = /^SigIgn:\s*([0-9a-f]+)$/m.exec(Deno.readTextFileSync(`/proc/${pid}/status`))?.[1];
  return mask !== undefined && (BigInt(`0x${mask}`) >> BigInt(signo - 1) & 1n) === 1n;
}

/** How many descriptors `pid` holds. */
export function openDescriptors(pid: number): number {
  return [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
}

/**
 * A TCP port on `hostname` that nothing listens on now and that outgoing connections never take: below
 * the kernel's ephemeral range (net.ipv4.ip_local_port_range), checked by binding it. A random port that
 * reached into the ephemeral range collided with a busy host's outgoing connections (AddrInUse).
 */
export function freeTcpPort(hostname = "127.0.0.1"): number {
  const [ephemeralStart] = Deno.readTextFileSync("/proc/sys/net/ipv4/ip_local_port_range").trim().split(
    /\s+/,
  ).map(Number);
  const top = Math.min(ephemeralStart ?? 32768, 32768);
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = 20000 + Math.floor(Math.random() * (top - 20000));
    try {
      Deno.listen({ hostname, port }).close();
      return port;
    } catch (error) {
      if (!(error instanceof Deno.errors.AddrInUse)) throw error;
    }
  }
  throw new Error(`no free TCP port on ${hostname} between 20000 and ${top} after 100 tries`);
}

/**
 * A TCP port on 127.0.0.1 where a connect hangs until its caller gives up: a listener with a backlog of 0
 * whose accept queue one connection fills, so the kernel drops every later SYN (and the client retries).
 * What a test needs to keep a probe waiting on any host: an address "never routed" is routed on some (the
 * CI machine's gateway is 192.0.2.1, in TEST-NET-1).
 */
export async function silentTcpPort(): Promise<{ port: number } & Disposable> {
  const port = freeTcpPort();
  const fd = libc().socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new Error("socket(AF_INET, SOCK_STREAM) failed");
  let filler: Deno.Conn | undefined;
  const close = () => {
    filler?.close();
    libc().close(fd);
  };
  try {
    const sockaddr = new Uint8Array(16); // struct sockaddr_in: family, port (network order), address
    const view = new DataView(sockaddr.buffer);
    view.setUint16(0, AF_INET, true);
    view.setUint16(2, port, false);
    sockaddr.set([127, 0, 0, 1], 4);
    if (libc().bind(fd, sockaddr, sockaddr.length) < 0 || libc().listen(fd, 0) < 0) {
      throw new Error(`bind and listen on 127.0.0.1:${port} failed`);
    }
    // The one connection the queue holds; a later SYN finds it full and is dropped.
    filler = await Deno.connect({ hostname: "127.0.0.1", port });
  } catch (error) {
    close();
    throw error;
  }
  return { port, [Symbol.dispose]: close };
}
