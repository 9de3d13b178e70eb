/*
 * spawn_loop.c - the baseline for bench/bookkeeping.sh: run a command N
 * times in a row (fork, exec, wait), replacing {i} in its arguments by the
 * run number. What yolo-evolve spends beyond this is its bookkeeping.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char *substitute(const char *arg, long i)
{
	const char *at = strstr(arg, "{i}");
	if (at == NULL)
		return strdup(arg);
	size_t size = strlen(arg) + 32;
	char *out = malloc(size);
	if (out != NULL)
		snprintf(out, size, "%.*s%ld%s", (int)(at - arg), arg, i, at + 3);
	return out;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: spawn_loop N command [args...]\n");
		return 2;
	}
	long n = strtol(argv[1], NULL, 10);
	for (long i = 0; i < n; i++) {
		char **args = calloc((size_t)argc - 1, sizeof(*args));
		if (args == NULL)
			return 1;
		for (int a = 2; a < argc; a++)
			args[a - 2] = substitute(argv[a], i);
		pid_t pid = fork();
		if (pid == 0) {
			execvp(args[0], args);
			_exit(127);
		}
		int status;
		if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
		    WEXITSTATUS(status) != 0) {
			fprintf(stderr, "run %ld failed\n", i);
			return 1;
		}
		for (int a = 0; a < argc - 2; a++)
			free(args[a]);
		free(args);
	}
	return 0;
}
