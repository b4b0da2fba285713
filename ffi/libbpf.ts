/**
 * The libbpf symbol table (libbpf.so.1, 1.x API) and libc helpers, opened on first use.
 * This folder is the only place that touches raw pointers; everything above it sees typed objects.
 */

const libbpfSymbols = {
  // long libbpf_get_error(const void *ptr)
  libbpf_get_error: { parameters: ["pointer"], result: "i64" },
  // libbpf_print_fn_t libbpf_set_print(libbpf_print_fn_t fn)
  libbpf_set_print: { parameters: ["function"], result: "pointer" },
  // __u32 libbpf_major_version(void)
  libbpf_major_version: { parameters: [], result: "u32" },
  // __u32 libbpf_minor_version(void)
  libbpf_minor_version: { parameters: [], result: "u32" },
  // int libbpf_num_possible_cpus(void)
  libbpf_num_possible_cpus: { parameters: [], result: "i32" },

  // struct bpf_object *bpf_object__open_mem(const void *obj_buf, size_t obj_buf_sz,
  //                                         const struct bpf_object_open_opts *opts)
  bpf_object__open_mem: { parameters: ["buffer", "usize", "buffer"], result: "pointer" },
  // int bpf_object__load(struct bpf_object *obj)
  bpf_object__load: { parameters: ["pointer"], result: "i32" },
  // void bpf_object__close(struct bpf_object *obj)
  bpf_object__close: { parameters: ["pointer"], result: "void" },
  // struct bpf_program *bpf_object__find_program_by_name(const struct bpf_object *obj, const char *name)
  bpf_object__find_program_by_name: { parameters: ["pointer", "buffer"], result: "pointer" },
  // struct bpf_map *bpf_object__find_map_by_name(const struct bpf_object *obj, const char *name)
  bpf_object__find_map_by_name: { parameters: ["pointer", "buffer"], result: "pointer" },
  // struct bpf_program *bpf_object__next_program(const struct bpf_object *obj, struct bpf_program *prog)
  bpf_object__next_program: { parameters: ["pointer", "pointer"], result: "pointer" },
  // struct bpf_map *bpf_object__next_map(const struct bpf_object *obj, const struct bpf_map *map)
  bpf_object__next_map: { parameters: ["pointer", "pointer"], result: "pointer" },

  // const char *bpf_program__name(const struct bpf_program *prog)
  bpf_program__name: { parameters: ["pointer"], result: "pointer" },
  // const char *bpf_program__section_name(const struct bpf_program *prog)
  bpf_program__section_name: { parameters: ["pointer"], result: "pointer" },
  // int bpf_program__set_autoload(struct bpf_program *prog, bool autoload)
  bpf_program__set_autoload: { parameters: ["pointer", "bool"], result: "i32" },
  // int bpf_program__fd(const struct bpf_program *prog)
  bpf_program__fd: { parameters: ["pointer"], result: "i32" },
  // struct bpf_link *bpf_program__attach(const struct bpf_program *prog)
  bpf_program__attach: { parameters: ["pointer"], result: "pointer" },
  // struct bpf_link *bpf_program__attach_cgroup(const struct bpf_program *prog, int cgroup_fd)
  bpf_program__attach_cgroup: { parameters: ["pointer", "i32"], result: "pointer" },
  // struct bpf_link *bpf_program__attach_xdp(const struct bpf_program *prog, int ifindex)
  bpf_program__attach_xdp: { parameters: ["pointer", "i32"], result: "pointer" },
  // int bpf_program__pin(struct bpf_program *prog, const char *path)
  bpf_program__pin: { parameters: ["pointer", "buffer"], result: "i32" },

  // const char *bpf_map__name(const struct bpf_map *map)
  bpf_map__name: { parameters: ["pointer"], result: "pointer" },
  // int bpf_map__fd(const struct bpf_map *map)
  bpf_map__fd: { parameters: ["pointer"], result: "i32" },
  // __u32 bpf_map__key_size(const struct bpf_map *map)
  bpf_map__key_size: { parameters: ["pointer"], result: "u32" },
  // __u32 bpf_map__value_size(const struct bpf_map *map)
  bpf_map__value_size: { parameters: ["pointer"], result: "u32" },
  // __u32 bpf_map__max_entries(const struct bpf_map *map)
  bpf_map__max_entries: { parameters: ["pointer"], result: "u32" },
  // enum bpf_map_type bpf_map__type(const struct bpf_map *map)
  bpf_map__type: { parameters: ["pointer"], result: "u32" },
  // __u32 bpf_map__map_flags(const struct bpf_map *map)
  bpf_map__map_flags: { parameters: ["pointer"], result: "u32" },
  // int bpf_map__set_max_entries(struct bpf_map *map, __u32 max_entries)
  bpf_map__set_max_entries: { parameters: ["pointer", "u32"], result: "i32" },
  // int bpf_map__set_pin_path(struct bpf_map *map, const char *path)
  bpf_map__set_pin_path: { parameters: ["pointer", "buffer"], result: "i32" },
  // int bpf_map__reuse_fd(struct bpf_map *map, int fd)
  bpf_map__reuse_fd: { parameters: ["pointer", "i32"], result: "i32" },
  // int bpf_map__lookup_elem(const struct bpf_map *map, const void *key, size_t key_sz,
  //                          void *value, size_t value_sz, __u64 flags)
  bpf_map__lookup_elem: {
    parameters: ["pointer", "buffer", "usize", "buffer", "usize", "u64"],
    result: "i32",
  },
  // int bpf_map__update_elem(const struct bpf_map *map, const void *key, size_t key_sz,
  //                          const void *value, size_t value_sz, __u64 flags)
  bpf_map__update_elem: {
    parameters: ["pointer", "buffer", "usize", "buffer", "usize", "u64"],
    result: "i32",
  },
  // int bpf_map__delete_elem(const struct bpf_map *map, const void *key, size_t key_sz, __u64 flags)
  bpf_map__delete_elem: { parameters: ["pointer", "buffer", "usize", "u64"], result: "i32" },
  // int bpf_map__get_next_key(const struct bpf_map *map, const void *cur_key, void *next_key, size_t key_sz)
  bpf_map__get_next_key: { parameters: ["pointer", "buffer", "buffer", "usize"], result: "i32" },
  // int bpf_map_update_batch(int fd, const void *keys, const void *values, __u32 *count,
  //                          const struct bpf_map_batch_opts *opts)
  bpf_map_update_batch: { parameters: ["i32", "buffer", "buffer", "buffer", "buffer"], result: "i32" },
  // the same, run on a worker thread: a rule set's 100,000 CIDR entries take the kernel about 0.1 s, which
  // the apply spends on its checks meanwhile
  bpf_map_update_batch_wait: {
    name: "bpf_map_update_batch",
    parameters: ["i32", "buffer", "buffer", "buffer", "buffer"],
    result: "i32",
    nonblocking: true,
  },

  // int bpf_link_create(int prog_fd, int target_fd, enum bpf_attach_type attach_type,
  //                     const struct bpf_link_create_opts *opts)
  bpf_link_create: { parameters: ["i32", "i32", "u32", "buffer"], result: "i32" },
  // int bpf_iter_create(int link_fd)
  bpf_iter_create: { parameters: ["i32"], result: "i32" },
  // int bpf_map_get_next_key(int fd, const void *key, void *next_key)
  bpf_map_get_next_key: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  // int bpf_map_delete_elem(int fd, const void *key)
  bpf_map_delete_elem: { parameters: ["i32", "buffer"], result: "i32" },
  // int bpf_map_update_elem(int fd, const void *key, const void *value, __u64 flags)
  bpf_map_update_elem: { parameters: ["i32", "buffer", "buffer", "u64"], result: "i32" },
  // the same two, run on a worker thread: an update or delete of a map-of-maps returns only after an RCU
  // grace period, and two of them waited for at once share one
  bpf_map_update_elem_wait: {
    name: "bpf_map_update_elem",
    parameters: ["i32", "buffer", "buffer", "u64"],
    result: "i32",
    nonblocking: true,
  },
  bpf_map_delete_elem_wait: {
    name: "bpf_map_delete_elem",
    parameters: ["i32", "buffer"],
    result: "i32",
    nonblocking: true,
  },
  // int bpf_map_get_fd_by_id(__u32 id)
  bpf_map_get_fd_by_id: { parameters: ["u32"], result: "i32" },
  // int bpf_map_lookup_elem(int fd, const void *key, void *value)
  bpf_map_lookup_elem: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  // int bpf_map_create(enum bpf_map_type map_type, const char *map_name, __u32 key_size, __u32 value_size,
  //                    __u32 max_entries, const struct bpf_map_create_opts *opts)
  bpf_map_create: { parameters: ["u32", "buffer", "u32", "u32", "u32", "buffer"], result: "i32" },
  // int bpf_prog_test_run_opts(int prog_fd, struct bpf_test_run_opts *opts)
  bpf_prog_test_run_opts: { parameters: ["i32", "buffer"], result: "i32" },
  // int bpf_link_update(int link_fd, int new_prog_fd, const struct bpf_link_update_opts *opts)
  bpf_link_update: { parameters: ["i32", "i32", "buffer"], result: "i32" },
  // int bpf_obj_get_info_by_fd(int bpf_fd, void *info, __u32 *info_len)
  bpf_obj_get_info_by_fd: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  // int bpf_obj_get(const char *pathname)
  bpf_obj_get: { parameters: ["buffer"], result: "i32" },
  // int bpf_obj_pin(int fd, const char *pathname)
  bpf_obj_pin: { parameters: ["i32", "buffer"], result: "i32" },

  // int bpf_tc_hook_create(struct bpf_tc_hook *hook)
  bpf_tc_hook_create: { parameters: ["buffer"], result: "i32" },
  // int bpf_tc_attach(const struct bpf_tc_hook *hook, struct bpf_tc_opts *opts)
  bpf_tc_attach: { parameters: ["buffer", "buffer"], result: "i32" },
  // int bpf_tc_detach(const struct bpf_tc_hook *hook, const struct bpf_tc_opts *opts)
  bpf_tc_detach: { parameters: ["buffer", "buffer"], result: "i32" },
  // int bpf_tc_query(const struct bpf_tc_hook *hook, struct bpf_tc_opts *opts)
  bpf_tc_query: { parameters: ["buffer", "buffer"], result: "i32" },

  // struct bpf_link *bpf_link__open(const char *path)
  bpf_link__open: { parameters: ["buffer"], result: "pointer" },
  // int bpf_link__fd(const struct bpf_link *link)
  bpf_link__fd: { parameters: ["pointer"], result: "i32" },
  // int bpf_link__pin(struct bpf_link *link, const char *path)
  bpf_link__pin: { parameters: ["pointer", "buffer"], result: "i32" },
  // int bpf_link__unpin(struct bpf_link *link)
  bpf_link__unpin: { parameters: ["pointer"], result: "i32" },
  // int bpf_link__detach(struct bpf_link *link)
  bpf_link__detach: { parameters: ["pointer"], result: "i32" },
  // int bpf_link__destroy(struct bpf_link *link)
  bpf_link__destroy: { parameters: ["pointer"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

const libcSymbols = {
  // int open(const char *pathname, int flags)
  open: { parameters: ["buffer", "i32"], result: "i32" },
  // int openat(int dirfd, const char *pathname, int flags): no O_CREAT, so no mode argument
  openat: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  // ssize_t getdents64(int fd, void *dirp, size_t count)
  getdents64: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  // int close(int fd)
  close: { parameters: ["i32"], result: "i32" },
  // int *__errno_location(void)
  __errno_location: { parameters: [], result: "pointer" },
  // int vsnprintf(char *str, size_t size, const char *format, va_list ap)
  vsnprintf: { parameters: ["buffer", "usize", "pointer", "pointer"], result: "i32" },
  // int clock_gettime(clockid_t clockid, struct timespec *tp)
  clock_gettime: { parameters: ["i32", "buffer"], result: "i32" },
  // int mount(const char *source, const char *target, const char *filesystemtype,
  //           unsigned long mountflags, const void *data)
  mount: { parameters: ["buffer", "buffer", "buffer", "u64", "pointer"], result: "i32" },
  // int umount2(const char *target, int flags)
  umount2: { parameters: ["buffer", "i32"], result: "i32" },
  // int setgroups(size_t size, const gid_t *list)
  setgroups: { parameters: ["usize", "pointer"], result: "i32" },
  // int setresgid(gid_t rgid, gid_t egid, gid_t sgid)
  setresgid: { parameters: ["u32", "u32", "u32"], result: "i32" },
  // int setresuid(uid_t ruid, uid_t euid, uid_t suid)
  setresuid: { parameters: ["u32", "u32", "u32"], result: "i32" },
  // int statx(int dirfd, const char *pathname, int flags, unsigned int mask, struct statx *statxbuf)
  statx: { parameters: ["i32", "buffer", "i32", "u32", "buffer"], result: "i32" },
  // int name_to_handle_at(int dirfd, const char *pathname, struct file_handle *handle, int *mount_id, int flags)
  name_to_handle_at: { parameters: ["i32", "buffer", "buffer", "buffer", "i32"], result: "i32" },
  // int flock(int fd, int operation)
  flock: { parameters: ["i32", "i32"], result: "i32" },
  // the same, run on a worker thread: waits without blocking the event loop
  flock_wait: { name: "flock", parameters: ["i32", "i32"], result: "i32", nonblocking: true },
  // int setns(int fd, int nstype)
  setns: { parameters: ["i32", "i32"], result: "i32" },
  // unsigned int if_nametoindex(const char *ifname)
  if_nametoindex: { parameters: ["buffer"], result: "u32" },
  // char *if_indextoname(unsigned int ifindex, char *ifname)
  if_indextoname: { parameters: ["u32", "buffer"], result: "pointer" },
  // void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset)
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  // int munmap(void *addr, size_t length)
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  // long sysconf(int name)
  sysconf: { parameters: ["i32"], result: "i64" },
  // int socket(int domain, int type, int protocol)
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  // int connect(int sockfd, const struct sockaddr *addr, socklen_t addrlen)
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  // int ioctl(int fd, unsigned long request, void *argp)
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  // int bind(int sockfd, const struct sockaddr *addr, socklen_t addrlen)
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  // int listen(int sockfd, int backlog)
  listen: { parameters: ["i32", "i32"], result: "i32" },
  // int accept4(int sockfd, struct sockaddr *addr, socklen_t *addrlen, int flags), on a worker thread
  accept4_wait: {
    name: "accept4",
    parameters: ["i32", "pointer", "pointer", "i32"],
    result: "i32",
    nonblocking: true,
  },
  // int getsockopt(int sockfd, int level, int optname, void *optval, socklen_t *optlen)
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  // ssize_t read(int fd, void *buf, size_t count), on a worker thread
  read_wait: { name: "read", parameters: ["i32", "buffer", "usize"], result: "isize", nonblocking: true },
  // ssize_t write(int fd, const void *buf, size_t count), on a worker thread
  write_wait: { name: "write", parameters: ["i32", "buffer", "usize"], result: "isize", nonblocking: true },
  // ssize_t read(int fd, void *buf, size_t count)
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  // int inotify_init1(int flags)
  inotify_init1: { parameters: ["i32"], result: "i32" },
  // int inotify_add_watch(int fd, const char *pathname, uint32_t mask)
  inotify_add_watch: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  // int epoll_create1(int flags)
  epoll_create1: { parameters: ["i32"], result: "i32" },
  // int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event)
  epoll_ctl: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  // int epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout), on a worker thread
  epoll_wait_nb: {
    name: "epoll_wait",
    parameters: ["i32", "buffer", "i32", "i32"],
    result: "i32",
    nonblocking: true,
  },
  // int eventfd(unsigned int initval, int flags)
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  // int eventfd_write(int fd, eventfd_t value)
  eventfd_write: { parameters: ["i32", "u64"], result: "i32" },
  // int malloc_trim(size_t pad): glibc gives freed heap memory back to the system
  malloc_trim: { parameters: ["usize"], result: "i32" },
  // int shutdown(int sockfd, int how)
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  // sighandler_t signal(int signum, sighandler_t handler)
  signal: { parameters: ["i32", "pointer"], result: "pointer" },
  // long syscall(long number, ...): four integer arguments (variadic, passed in registers on x86-64)
  syscall4: { name: "syscall", parameters: ["i64", "i64", "i64", "i64", "i64"], result: "i64" },
} as const satisfies Deno.ForeignLibraryInterface;

export type Libbpf = Deno.DynamicLibrary<typeof libbpfSymbols>["symbols"];
export type Libc = Deno.DynamicLibrary<typeof libcSymbols>["symbols"];

let libbpfHandle: Libbpf | undefined;
let libcHandle: Libc | undefined;

/** libbpf's symbols; opens libbpf.so.1 on first use, and binds each symbol on its first use. */
export function libbpf(): Libbpf {
  libbpfHandle ??= lazySymbols("libbpf.so.1", libbpfSymbols, ["libbpf_get_error"]);
  return libbpfHandle;
}

/** libc's symbols; opens libc.so.6 on first use, and binds each symbol on its first use. */
export function libc(): Libc {
  libcHandle ??= lazySymbols("libc.so.6", libcSymbols, ["__errno_location"]);
  return libcHandle;
}

/**
 * The symbols of `path`, each bound by its own `Deno.dlopen` the first time it is read: binding costs about
 * half a millisecond a symbol, and a command uses a few of the whole table (binding all of libbpf's took
 * 20-50 ms of every command that reads a pin). `eager` are bound at once: the errno readers, so that no
 * binding (whose dlopen may set errno) runs between a failed call and the read of its errno. The library
 * itself is opened at once too: a missing library fails here, as before.
 */
function lazySymbols<S extends Deno.ForeignLibraryInterface>(
  path: string,
  symbols: S,
  eager: readonly (keyof S & string)[],
): Deno.DynamicLibrary<S>["symbols"] {
  const bound = {} as Deno.DynamicLibrary<S>["symbols"];
  const bind = (name: keyof S & string) => {
    const symbol = Deno.dlopen(path, { [name]: symbols[name] } as S).symbols[name];
    Object.defineProperty(bound, name, { value: symbol, enumerable: true });
    return symbol;
  };
  for (const name of Object.keys(symbols) as (keyof S & string)[]) {
    Object.defineProperty(bound, name, { get: () => bind(name), enumerable: true, configurable: true });
  }
  for (const name of eager) bind(name);
  return bound;
}

/** A NUL-terminated C string for a `const char *` parameter. */
export function cString(text: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(`${text}\0`);
}

/** Reads a `const char *` result; null reads as an empty string. */
export function readCString(pointer: Deno.PointerValue): string {
  return pointer === null ? "" : Deno.UnsafePointerView.getCString(pointer);
}

/** The current thread's errno; call it right after the FFI call whose errno matters. */
export function lastErrno(): number {
  const location = libc().__errno_location();
  return location === null ? 0 : new Deno.UnsafePointerView(location).getInt32();
}
