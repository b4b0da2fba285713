/**
 * A tiny network client run as a child process inside a test cgroup (and possibly as another uid):
 *   tcp HOST PORT          connect, print "connected" or the error code
 *   udp-sendto HOST PORT   one datagram without connect(), print "sent" or the error code (--unstable-net)
 *   bind tcp|udp PORT      bind on the wildcard address, print "bound" or the error code
 *   bind6 tcp|udp PORT     the same on [::]
 */
import dgram from "node:dgram";

const [command, a = "", b = ""] = Deno.args;

function code(error: unknown): string {
  const text = String(error);
  const match = /\(os error (\d+)\)/.exec(text);
  if (match?.[1] === "1") return "EPERM";
  const node = (error as { code?: string }).code;
  return node ?? text;
}

async function main(): Promise<string> {
  switch (command) {
    case "tcp": {
      try {
        const connection = await Deno.connect({ hostname: a, port: Number(b) });
        connection.close();
        return "connected";
      } catch (error) {
        return code(error);
      }
    }
    case "udp-sendto": {
      // Deno's datagram socket sends with sendto(2) on an unconnected socket.
      const socket = Deno.listenDatagram({
        transport: "udp",
        hostname: a.includes(":") ? "::" : "0.0.0.0",
        port: 0,
      });
      try {
        await socket.send(new Uint8Array([1]), { transport: "udp", hostname: a, port: Number(b) });
        return "sent";
      } catch (error) {
        return code(error);
      } finally {
        socket.close();
      }
    }
    case "bind":
    case "bind6": {
      const hostname = command === "bind6" ? "::" : "0.0.0.0";
      try {
        if (a === "udp") {
          const socket = dgram.createSocket(command === "bind6" ? "udp6" : "udp4");
          await new Promise<void>((resolve, reject) => {
            socket.once("error", reject);
            socket.bind(Number(b), hostname, () => resolve());
          });
          socket.close();
        } else {
          Deno.listen({ hostname, port: Number(b) }).close();
        }
        return "bound";
      } catch (error) {
        return code(error);
      }
    }
    default:
      return `unknown command ${command}`;
  }
}

console.log(await main());
