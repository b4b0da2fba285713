/** Linux errno numbers (x86_64) that BPF operations and the file system calls here return, by name. */
const ERRNO_NAMES: Readonly<Record<number, string>> = {
  1: "EPERM",
  2: "ENOENT",
  3: "ESRCH",
  4: "EINTR",
  5: "EIO",
  7: "E2BIG",
  9: "EBADF",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  16: "EBUSY",
  17: "EEXIST",
  18: "EXDEV",
  19: "ENODEV",
  20: "ENOTDIR",
  21: "EISDIR",
  22: "EINVAL",
  24: "EMFILE",
  25: "ENOTTY",
  28: "ENOSPC",
  34: "ERANGE",
  36: "ENAMETOOLONG",
  38: "ENOSYS",
  40: "ELOOP",
  95: "EOPNOTSUPP",
  111: "ECONNREFUSED",
  113: "EHOSTUNREACH",
  116: "ESTALE",
  524: "ENOTSUPP",
  4001: "LIBBPF_ERRNO__LIBELF",
  4002: "LIBBPF_ERRNO__FORMAT",
  4003: "LIBBPF_ERRNO__KVERSION",
  4004: "LIBBPF_ERRNO__ENDIAN",
  4005: "LIBBPF_ERRNO__INTERNAL",
  4006: "LIBBPF_ERRNO__RELOC",
  4007: "LIBBPF_ERRNO__LOAD",
  4008: "LIBBPF_ERRNO__VERIFY",
  4009: "LIBBPF_ERRNO__PROG2BIG",
  4010: "LIBBPF_ERRNO__KVER",
  4011: "LIBBPF_ERRNO__PROGTYPE",
  4012: "LIBBPF_ERRNO__WRNGPID",
  4013: "LIBBPF_ERRNO__INVSEQ",
  4014: "LIBBPF_ERRNO__NLPARSE",
};

/** The symbolic name of an errno value (sign ignored), or `errno N` when unknown. */
export function errnoName(errno: number): string {
  const code = Math.abs(errno);
  return ERRNO_NAMES[code] ?? `errno ${code}`;
}

/** The errno value for a symbolic name, for tests and probes. */
export function errnoValue(name: string): number | undefined {
  for (const [code, known] of Object.entries(ERRNO_NAMES)) {
    if (known === name) return Number(code);
  }
  return undefined;
}
