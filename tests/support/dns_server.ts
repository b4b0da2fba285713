/**
 * A DNS server of the tests' own, for a made-up zone: answers each query from `zone` (name → records, the
 * question's type picking A or AAAA, CNAMEs always), NXDOMAIN for a name it does not hold.
 */
import dgram from "node:dgram";
import { decodeMessage, encodeAnswer, encodeName, TYPE } from "../../lib/names/dns_wire.ts";

export type ZoneRecord = { type: "A" | "AAAA"; addr: string; ttl: number } | {
  type: "CNAME";
  target: string;
  ttl: number;
};

export type DnsServer = { addr: string; port: number; queries: string[]; stop: () => Promise<void> };

export function startDnsServer(zone: Record<string, ZoneRecord[]>, addr = "127.0.0.1"): Promise<DnsServer> {
  const socket = dgram.createSocket("udp4");
  const queries: string[] = [];
  socket.on("message", (bytes, from) => {
    const query = decodeMessage(bytes);
    if (!query.question) return;
    const { name, type } = query.question;
    queries.push(`${name}/${type}`);
    const records = [];
    let current = name;
    for (let hop = 0; hop < 8; hop++) {
      const held = zone[current] ?? [];
      for (const record of held) {
        if (record.type === "CNAME") continue;
        if (TYPE[record.type] !== type) continue;
        records.push({ name: current, type, ttl: record.ttl, data: addressBytes(record.addr) });
      }
      const alias = held.find((record) => record.type === "CNAME");
      if (!alias || alias.type !== "CNAME") break;
      records.unshift({ name: current, type: TYPE.CNAME, ttl: alias.ttl, data: encodeName(alias.target) });
      current = alias.target;
    }
    const known = zone[name] !== undefined;
    socket.send(
      encodeAnswer({ id: query.id, name, type }, records, { rcode: known ? 0 : 3 }),
      from.port,
      from.address,
    );
  });
  return new Promise((resolve) => {
    socket.bind(0, addr, () => {
      resolve({
        addr,
        port: socket.address().port,
        queries,
        stop: () => new Promise<void>((done) => socket.close(() => done())),
      });
    });
  });
}

function addressBytes(addr: string): Uint8Array {
  if (!addr.includes(":")) return new Uint8Array(addr.split(".").map(Number));
  const [head, tail] = addr.split("::") as [string, string | undefined];
  const groups = (text: string | undefined) =>
    text ? text.split(":").map((group) => parseInt(group, 16)) : [];
  const left = groups(head);
  const right = groups(tail);
  const all = [...left, ...new Array(8 - left.length - right.length).fill(0), ...right];
  return new Uint8Array(all.flatMap((group) => [group >> 8, group & 0xff]));
}
