import { errnoName } from "./errno.ts";
import { lastErrno } from "./libbpf.ts";

/** A failed libbpf or BPF syscall operation, with the errno and what libbpf and the verifier said. */
export class BpfError extends Error {
  override name = "BpfError";
  /** The libbpf function or step that failed, e.g. `bpf_object__load`. */
  readonly operation: string;
  /** Positive errno value. */
  readonly errno: number;
  /** Symbolic errno name, e.g. `EPERM`. */
  readonly errnoName: string;
  /** What the operation acted on (a program, map or path), when known. */
  readonly subject: string | undefined;
  /** The verifier's log for a failed program load, when libbpf printed one. */
  readonly verifierLog: string | undefined;
  /** Everything libbpf printed during the operation. */
  readonly libbpfLog: string;

  constructor(
    operation: string,
    errno: number,
    options: { subject?: string | undefined; libbpfLog?: string } = {},
  ) {
    const code = Math.abs(errno);
    const name = errnoName(code);
    const log = options.libbpfLog ?? "";
    const verifierLog = extractVerifierLog(log);
    const subject = options.subject ? ` (${options.subject})` : "";
    const detail = verifierLog ? `${libbpfSummary(log)}\nverifier log:\n${verifierLog}` : libbpfSummary(log);
    super(`${operation}${subject} failed: ${name}${detail ? `: ${detail}` : ""}`);
    this.operation = operation;
    this.errno = code;
    this.errnoName = name;
    this.subject = options.subject;
    this.verifierLog = verifierLog;
    this.libbpfLog = log;
  }
}

/** A failed libc system call (open, flock, mount, statx, setns, mmap...): not a BPF operation. */
export class SysError extends Error {
  override name = "SysError";
  /** Positive errno value. */
  readonly errno: number;
  /** Symbolic errno name, e.g. `ENOENT`. */
  readonly errnoName: string;
  /** The system call that failed, e.g. `flock`. */
  readonly syscall: string;
  /** The path or object it acted on, when there is one. */
  readonly path: string | undefined;

  constructor(syscall: string, errno: number, path?: string) {
    const code = Math.abs(errno);
    const name = errnoName(code);
    super(`${syscall}${path ? ` (${path})` : ""} failed: ${name}`);
    this.errno = code;
    this.errnoName = name;
    this.syscall = syscall;
    this.path = path;
  }
}

/** Throws a BpfError for a negative libbpf return code (-errno); returns non-negative codes unchanged. */
export function unwrap(
  code: number,
  operation: string,
  options: { subject?: string | undefined; libbpfLog?: string } = {},
): number {
  if (code < 0) throw new BpfError(operation, -code, options);
  return code;
}

/**
 * Throws a SysError for a libc call that returned -1, with errno read at once (call it right on the
 * result, so that no other FFI call runs in between); returns other results unchanged.
 */
export function unwrapSys(result: number, syscall: string, path?: string): number {
  if (result < 0) throw sysFailure(syscall, path);
  return result;
}

/** A SysError with the errno the libc call just before left, for calls that signal failure otherwise. */
export function sysFailure(syscall: string, path?: string, fallbackErrno = EIO): SysError {
  return new SysError(syscall, lastErrno() || fallbackErrno, path);
}

const EIO = 5;

const BEGIN_LOG = "-- BEGIN PROG LOAD LOG --";
const END_LOG = "-- END PROG LOAD LOG --";

/** The verifier log libbpf prints between its BEGIN/END PROG LOAD LOG markers, trimmed. */
export function extractVerifierLog(libbpfLog: string): string | undefined {
  const begin = libbpfLog.indexOf(BEGIN_LOG);
  if (begin < 0) return undefined;
  const start = begin + BEGIN_LOG.length;
  const end = libbpfLog.indexOf(END_LOG, start);
  const body = libbpfLog.slice(start, end < 0 ? undefined : end).trim();
  return body.length > 0 ? body : undefined;
}

/** libbpf's own lines (the verifier log left out), joined: they say why an operation failed. */
export function libbpfSummary(libbpfLog: string): string {
  const begin = libbpfLog.indexOf(BEGIN_LOG);
  const end = libbpfLog.indexOf(END_LOG);
  const outside = begin < 0
    ? libbpfLog
    : libbpfLog.slice(0, begin) + (end < 0 ? "" : libbpfLog.slice(end + END_LOG.length));
  return outside.split("\n")
    .map((line) => line.trim().replace(/^libbpf: /, ""))
    .filter((line) => line.length > 0 && !line.endsWith(":"))
    .join("; ");
}
