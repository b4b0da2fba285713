/**
 * Resolving the exact names rules name, with the TTL of each address (Deno.resolveDns gives none): one UDP
 * query per type to the first resolver that answers, as the system resolver would ask.
 */
import dgram from "node:dgram";
import { type AnsweredAddress, answeredAddresses, decodeMessage, encodeQuery, TYPE } from "./dns_wire.ts";

/** A resolver to ask: an address and a port (53 unless a test says otherwise). */
export type NameServer = { addr: string; port?: number };

export type ResolveOptions = {
  servers: readonly NameServer[];
  /** Per query and server; 2 s by default. */
  timeoutMs?: number;
};

/** Why a name gave no address. */
export class NameResolveError extends Error {
  override name = "NameResolveError";
}

/** The A and AAAA addresses of `name`, with their TTLs; throws NameResolveError when no server answers. */
export async function resolveAddresses(name: string, options: ResolveOptions): Promise<AnsweredAddress[]> {
  const problems: string[] = [];
  for (const server of options.servers) {
    try {
      const [v4, v6] = await Promise.all([
        query(server, name, TYPE.A, options.timeoutMs ?? 2000),
        query(server, name, TYPE.AAAA, options.timeoutMs ?? 2000),
      ]);
      return [...v4, ...v6];
    } catch (error) {
      problems.push(`${server.addr}: ${error instanceof Error ? error.message : error}`);
    }
  }
  throw new NameResolveError(
    `${name} did not resolve: ${problems.join("; ") || "no resolver in /etc/resolv.conf"}`,
  );
}

function query(
  server: NameServer,
  name: string,
  type: number,
  timeoutMs: number,
): Promise<AnsweredAddress[]> {
  const id = crypto.getRandomValues(new Uint16Array(1))[0]!;
  const port = server.port ?? 53;
  const socket = dgram.createSocket(server.addr.includes(":") ? "udp6" : "udp4");
  return new Promise<AnsweredAddress[]>((resolve, reject) => {
    const timer = setTimeout(() => finish(new NameResolveError(`no answer in ${timeoutMs} ms`)), timeoutMs);
    const finish = (result: AnsweredAddress[] | Error) => {
      clearTimeout(timer);
      socket.close();
      if (result instanceof Error) reject(result);
      else resolve(result);
    };
    socket.on("error", (error) => finish(error));
    socket.on("message", (bytes, from) => {
      // An answer to another query, or from another address, is not the answer.
      if (from.address !== server.addr || from.port !== port) return;
      try {
        const message = decodeMessage(bytes);
        if (!message.response || message.id !== id || message.question?.name !== name.toLowerCase()) return;
        if (message.truncated) return finish(new NameResolveError("the answer was truncated"));
        if (message.rcode === 3) return finish([]); // NXDOMAIN: no address
        if (message.rcode !== 0) {
          return finish(new NameResolveError(`the server answered rcode ${message.rcode}`));
        }
        finish(answeredAddresses(message, name));
      } catch (error) {
        finish(error as Error);
      }
    });
    socket.send(encodeQuery(id, name, type), port, server.addr);
  });
}
