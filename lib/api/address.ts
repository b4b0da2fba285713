/** Where the API listens, as `run --api` names it: light, for the command's declaration and checks. */

import { InputError } from "../errors.ts";

export type ApiAddress = { transport: "unix"; path: string } | {
  transport: "tcp";
  hostname: string;
  port: number;
};

export const DEFAULT_API_SOCKET = "/run/aegisbpf/api.sock";

/** `unix:PATH` or `tcp:HOST:PORT` (HOST a loopback address), as `run --api` takes it. */
export function parseApiAddress(text: string): ApiAddress {
  if (text.startsWith("unix:")) {
    const path = text.slice(5);
    if (!path.startsWith("/")) {
      throw new InputError(`--api ${text}: give an absolute socket path, unix:/run/aegisbpf/api.sock`);
    }
    return { transport: "unix", path };
  }
  const tcp = /^tcp:(\[[0-9a-fA-F:]+\]|[^:]+):(\d{1,5})$/.exec(text);
  if (tcp) {
    const hostname = tcp[1]!.replace(/^\[|\]$/g, "");
    const port = Number(tcp[2]);
    if (port < 1 || port > 65535) throw new InputError(`--api ${text}: port ${port} is not 1 to 65535`);
    if (!isLoopback(hostname)) {
      throw new InputError(
        `--api ${text}: the TCP listener serves only loopback (127.0.0.0/8, ::1, localhost); ` +
          "put a proxy in front for anything else",
      );
    }
    return { transport: "tcp", hostname, port };
  }
  throw new InputError(`--api ${text}: give unix:PATH or tcp:HOST:PORT`);
}

function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}
