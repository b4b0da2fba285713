// fork + execve + wait in a loop; prints nanoseconds per iteration. The child execs this very binary with
// the argument "child", which exits at once: each iteration is one exec of a dynamically linked program
// (lsm/bprm_check_security, the loader's mmap_file and file_open of its libraries).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "child") == 0)
		return 0;
	if (argc != 2) {
		fprintf(stderr, "usage: exec_loop ITERATIONS\n");
		return 2;
	}
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n < 0) {
		perror("/proc/self/exe");
		return 1;
	}
	self[n] = 0;
	long iterations = atol(argv[1]);
	char *child_argv[] = { self, "child", NULL };
	char *child_envp[] = { NULL };
	struct timespec start, end;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (long i = 0; i < iterations; i++) {
		pid_t pid = fork();
		if (pid < 0) {
			perror("fork");
			return 1;
		}
		if (pid == 0) {
			execve(self, child_argv, child_envp);
			_exit(127);
		}
		int status;
		if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			fprintf(stderr, "exec_loop: the child failed (status %d)\n", status);
			return 1;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &end);
	double ns = (end.tv_sec - start.tv_sec) * 1e9 + (end.tv_nsec - start.tv_nsec);
	printf("%.1f\n", ns / iterations);
	return 0;
}
