// THROWAWAY: verifies dlopen of libbpf and libc inside the VM. Delete after use.
Deno.test("[vm] throwaway dlopen libbpf.so.1 and libc.so.6", () => {
  const bpf = Deno.dlopen("libbpf.so.1", { libbpf_major_version: { parameters: [], result: "u32" } });
  const libc = Deno.dlopen("libc.so.6", { getpid: { parameters: [], result: "i32" } });
  console.log(
    `libbpf major ${bpf.symbols.libbpf_major_version()}, getpid ${libc.symbols.getpid()}, pid ${Deno.pid}`,
  );
  if (libc.symbols.getpid() !== Deno.pid) throw new Error("getpid mismatch");
  bpf.close();
  libc.close();
});
