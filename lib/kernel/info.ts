import { libbpfVersion as ffiLibbpfVersion } from "../../ffi/mod.ts";

/** "major.minor" of the libbpf.so.1 this process loaded. */
export function libbpfVersion(): string {
  return ffiLibbpfVersion();
}
