/** An event of the log (SPEC section 6) as one readable line, columns aligned at fixed widths. */

import type { Palette } from "../text/palette.ts";
import { printable } from "../text/printable.ts";

/** Envelope fields every line shows in its own column; the rest of an agent event follows as key=value. */
const SHOWN = new Set([
  "ts",
  "host",
  "type",
  "decision",
  "mode",
  "rule",
  "policy",
  "process",
  "file",
  "net",
  "count",
]);

type Fields = Record<string, unknown>;

export function eventLine(event: Fields, style: Palette): string {
  const ts = typeof event.ts === "string" ? text(event.ts).replace(/(\.\d{3})\d+/, "$1") : "-";
  const decision = text(event.decision) || "-";
  const coloured = decision === "deny" ? style.red : decision === "audit" ? style.yellow : style.dim;
  const parts = [
    ts.padEnd(24),
    coloured(decision.padEnd(5)),
    text(event.type).padEnd(12),
    (event.rule === undefined ? "" : `rule=${text(event.rule)}`).padEnd(20),
  ];
  const details = [processText(event.process), fileText(event.file), netText(event.net)];
  if (typeof event.count === "number" && event.count > 1) details.push(`x${event.count}`);
  if (event.mode === "audit" && decision === "deny") details.push("(mode audit)");
  for (const [key, value] of Object.entries(event)) {
    if (!SHOWN.has(key)) {
      details.push(printable(`${key}=${typeof value === "string" ? value : JSON.stringify(value)}`));
    }
  }
  return [...parts, ...details.filter((detail) => detail !== "")].join("  ").trimEnd();
}

function text(value: unknown): string {
  return typeof value === "string" || typeof value === "number" ? printable(String(value)) : "";
}

function processText(value: unknown): string {
  if (typeof value !== "object" || value === null) return "";
  const p = value as Fields;
  const who = p.comm === undefined ? `pid ${text(p.pid)}` : `${text(p.comm)}[${text(p.pid)}]`;
  const uid = p.uid === undefined ? "" : ` uid=${text(p.uid)}`;
  const cgroup = (p.cgroup as Fields | undefined)?.path;
  const exe = p.exe as Fields | undefined;
  const program = typeof exe === "object" && exe !== null
    ? ` exe=${typeof exe.path === "string" ? text(exe.path) : `inode ${text(exe.dev)}:${text(exe.ino)}`}`
    : "";
  return `${who}${uid}${
    typeof cgroup === "string" && cgroup !== "/" ? ` cgroup=${text(cgroup)}` : ""
  }${program}`;
}

function fileText(value: unknown): string {
  if (typeof value !== "object" || value === null) return "";
  const f = value as Fields;
  if (typeof f.path === "string") return text(f.path);
  const inode = `inode ${text(f.dev)}:${text(f.ino)}`;
  return typeof f.name === "string" ? `${text(f.name)} (${inode})` : inode;
}

function netText(value: unknown): string {
  if (typeof value !== "object" || value === null) return "";
  const n = value as Fields;
  const host = (addr: unknown, port: unknown) => {
    const a = text(addr);
    const shown = a.includes(":") ? `[${a}]` : a;
    return port === undefined ? shown : `${shown}:${text(port)}`;
  };
  const source = n.saddr !== undefined || n.sport !== undefined ? host(n.saddr ?? "", n.sport) : "";
  const destination = n.daddr !== undefined || n.dport !== undefined ? host(n.daddr ?? "", n.dport) : "";
  const route = source && destination ? `${source} -> ${destination}` : source || destination;
  const iface = typeof n.interface === "string" ? ` on ${text(n.interface)}` : "";
  const carried = typeof n.route === "string" ? ` by ${text(n.route)}` : "";
  return `${text(n.protocol)} ${route}${iface}${carried}`.trim();
}
