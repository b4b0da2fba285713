/*
 * Makes the trees the tree-walk tests attack with, fast and relative to open directories (so depth is no
 * limit): `tree_maker chain DIR DEPTH` nests DEPTH directories named "d" under DIR and puts a file "top"
 * in DIR and "bottom" in the deepest; `tree_maker wide DIR FILES PER_DIR` makes FILES empty files in
 * subdirectories s0, s1, ... of PER_DIR files each; `tree_maker read DIR DEPTH` opens and reads the
 * file "bottom" of such a chain (exit 0 when the read succeeded, else the errno).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int touch(int dir, const char *name)
{
	int fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		perror(name);
		return -1;
	}
	close(fd);
	return 0;
}

static int chain(int dir, long depth)
{
	if (touch(dir, "top"))
		return 1;
	for (long i = 0; i < depth; i++) {
		if (mkdirat(dir, "d", 0755)) {
			perror("mkdirat");
			return 1;
		}
		int next = openat(dir, "d", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0) {
			perror("openat");
			return 1;
		}
		close(dir);
		dir = next;
	}
	return touch(dir, "bottom") ? 1 : 0;
}

static int wide(int dir, long files, long per_dir)
{
	char name[32];
	for (long made = 0, sub = 0; made < files; sub++) {
		snprintf(name, sizeof name, "s%ld", sub);
		if (mkdirat(dir, name, 0755)) {
			perror("mkdirat");
			return 1;
		}
		int child = openat(dir, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (child < 0) {
			perror("openat");
			return 1;
		}
		for (long i = 0; i < per_dir && made < files; i++, made++) {
			snprintf(name, sizeof name, "f%ld", i);
			if (touch(child, name))
				return 1;
		}
		close(child);
	}
	return 0;
}

static int read_bottom(int dir, long depth)
{
	char buffer[64];
	for (long i = 0; i < depth; i++) {
		int next = openat(dir, "d", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0) {
			perror("openat");
			return 1;
		}
		close(dir);
		dir = next;
	}
	int fd = openat(dir, "bottom", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		perror("bottom");
		return errno;
	}
	if (read(fd, buffer, sizeof buffer) < 0)
		return errno;
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: tree_maker chain|read DIR DEPTH | wide DIR FILES PER_DIR\n");
		return 2;
	}
	int dir = open(argv[2], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0) {
		perror(argv[2]);
		return 1;
	}
	if (strcmp(argv[1], "chain") == 0)
		return chain(dir, atol(argv[3]));
	if (strcmp(argv[1], "read") == 0)
		return read_bottom(dir, atol(argv[3]));
	if (strcmp(argv[1], "wide") == 0 && argc == 5)
		return wide(dir, atol(argv[3]), atol(argv[4]));
	fprintf(stderr, "usage: tree_maker chain|read DIR DEPTH | wide DIR FILES PER_DIR\n");
	return 2;
}
