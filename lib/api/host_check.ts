/**
 * The Host check of the loopback TCP listener. A web page the operator opens can make the browser send
 * requests to 127.0.0.1 under a name the page controls (DNS rebinding) and read the answers as same-origin:
 * only requests naming this listener itself (its address or localhost, with its port) are served.
 */

import { Hono } from "hono";
import { problem } from "./problem.ts";

export type TcpAddress = { hostname: string; port: number };

/** The `Host:` values that name `address`, lower case. */
export function allowedHosts({ hostname, port }: TcpAddress): Set<string> {
  const names = new Set(["localhost", hostname.includes(":") ? `[${hostname}]` : hostname]);
  if (hostname === "localhost") {
    names.add("127.0.0.1");
    names.add("[::1]");
  }
  const hosts = new Set<string>();
  for (const name of names) {
    hosts.add(`${name.toLowerCase()}:${port}`);
    if (port === 80) hosts.add(name.toLowerCase());
  }
  return hosts;
}

/** `app` behind the Host check of `address`: any other Host (or none) gets 421 Misdirected Request. */
export function guardHost(app: Hono, address: TcpAddress): Hono {
  const hosts = allowedHosts(address);
  const expected = `${
    address.hostname.includes(":") ? `[${address.hostname}]` : address.hostname
  }:${address.port}`;
  return new Hono().all("*", (c) => {
    const host = c.req.header("host");
    if (host !== undefined && hosts.has(host.toLowerCase())) return app.fetch(c.req.raw);
    return problem(
      421,
      "Misdirected request",
      `${host === undefined ? "No Host header" : `Host ${JSON.stringify(host)}`}: this listener serves ` +
        `requests for ${expected} only`,
    );
  });
}
