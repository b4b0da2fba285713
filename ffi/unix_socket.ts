/**
 * A listening Unix stream socket whose accepted connections carry the peer's credentials (SO_PEERCRED),
 * which Deno's own listeners do not expose. Blocking calls (accept, read, write) run on worker threads,
 * so they never block the event loop; `shutdown` wakes a thread blocked on a socket.
 */

import { unwrapSys } from "./error.ts";
import { cString, libc } from "./libbpf.ts";
import { closeFd } from "./sys.ts";
import { AF_UNIX, SOCK_CLOEXEC, SOCK_STREAM } from "./socket_constants.ts";

const SOL_SOCKET = 1;
const SO_PEERCRED = 17;
const SHUT_RDWR = 2;
/** sizeof(struct sockaddr_un): sa_family_t then 108 bytes of path. */
const SOCKADDR_UN_BYTES = 110;
const PATH_MAX_BYTES = 107;

export type PeerCredentials = { pid: number; uid: number; gid: number };

/** One accepted connection. Reads and writes wait on worker threads. */
export class UnixConnection {
  #fd: number;
  readonly peer: PeerCredentials;

  constructor(fd: number, peer: PeerCredentials) {
    this.#fd = fd;
    this.peer = peer;
  }

  /** Reads into `buffer`; 0 at end of stream (or once shut down or failed). */
  async read(buffer: Uint8Array<ArrayBuffer>): Promise<number> {
    if (this.#fd < 0) return 0;
    const n = Number(await libc().read_wait(this.#fd, buffer, BigInt(buffer.byteLength)));
    return n < 0 ? 0 : n;
  }

  /** Writes all of `data`; false when the peer is gone. */
  async write(data: Uint8Array): Promise<boolean> {
    let offset = 0;
    while (offset < data.byteLength) {
      if (this.#fd < 0) return false;
      const chunk = data.slice(offset);
      const n = Number(await libc().write_wait(this.#fd, chunk, BigInt(chunk.byteLength)));
      if (n <= 0) return false;
      offset += n;
    }
    return true;
  }

  /** Ends both directions: a thread blocked in read or write returns. */
  shutdown(): void {
    if (this.#fd >= 0) libc().shutdown(this.#fd, SHUT_RDWR);
  }

  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    libc().shutdown(fd, SHUT_RDWR);
    closeFd(fd);
  }
}

export class UnixListener {
  #fd: number;
  readonly path: string;

  private constructor(fd: number, path: string) {
    this.#fd = fd;
    this.path = path;
  }

  /**
   * Binds and listens on `path` (which must not exist) with the socket file created as `mode`: the umask is
   * narrowed around bind(2), so the file never exists with wider permissions.
   */
  static listen(path: string, mode: number, backlog = 64): UnixListener {
    const encoded = cString(path);
    if (encoded.byteLength - 1 > PATH_MAX_BYTES) throw new Error(`Unix socket path too long: ${path}`);
    const fd = unwrapSys(libc().socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket", path);
    try {
      const address = new Uint8Array(SOCKADDR_UN_BYTES);
      new DataView(address.buffer).setUint16(0, AF_UNIX, true);
      address.set(encoded, 2);
      const previous = Deno.umask(~mode & 0o777);
      try {
        unwrapSys(libc().bind(fd, address, 2 + encoded.byteLength), "bind", path);
      } finally {
        Deno.umask(previous);
      }
      unwrapSys(libc().listen(fd, backlog), "listen", path);
    } catch (error) {
      closeFd(fd);
      throw error;
    }
    return new UnixListener(fd, path);
  }

  /** The next connection with its peer's credentials, or undefined once the listener is closed. */
  async accept(): Promise<UnixConnection | undefined> {
    for (;;) {
      if (this.#fd < 0) return undefined;
      const fd = await libc().accept4_wait(this.#fd, null, null, SOCK_CLOEXEC);
      if (this.#fd < 0) {
        if (fd >= 0) closeFd(fd);
        return undefined;
      }
      if (fd < 0) {
        // A connection reset before it was accepted, or no descriptor left (EMFILE): then the connection
        // stays queued, and retrying at once would only spin.
        await new Promise((resolve) => setTimeout(resolve, 20));
        continue;
      }
      const credentials = new Int32Array(3);
      const length = new Uint32Array([credentials.byteLength]);
      const code = libc().getsockopt(
        fd,
        SOL_SOCKET,
        SO_PEERCRED,
        new Uint8Array(credentials.buffer),
        new Uint8Array(length.buffer),
      );
      if (code < 0) {
        closeFd(fd);
        continue;
      }
      return new UnixConnection(fd, { pid: credentials[0]!, uid: credentials[1]!, gid: credentials[2]! });
    }
  }

  /** Stops listening (a pending accept returns undefined) and removes the socket file. */
  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    libc().shutdown(fd, SHUT_RDWR);
    closeFd(fd);
    try {
      Deno.removeSync(this.path);
    } catch {
      // already gone
    }
  }
}
