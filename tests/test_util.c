/*
 * test_util.c - util/ut.c's message helpers: ut_quote escapes and cuts user
 * text so a message stays one line, and ut_err_set / ut_log keep any
 * message on one line whatever their arguments hold.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ut.h"

static void quote_escapes(void **state)
{
	(void)state;
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"lr0", "lr0"},
	    {"", ""},
	    {"bo\ngus", "bo\\ngus"},
	    {"a\tb\rc", "a\\tb\\rc"},
	    {"\x1b[31mred", "\\x1b[31mred"},
	    {"del\x7f", "del\\x7f"},
	    {"back\\slash", "back\\\\slash"},
	    {"caf\xc3\xa9 \xe2\x82\xac", "caf\xc3\xa9 \xe2\x82\xac"}, /* valid UTF-8 kept */
	    {"bad\xff\xc3(", "bad\\xff\\xc3("},			      /* invalid bytes escaped */
	    {"\xed\xa0\x80", "\\xed\\xa0\\x80"},		      /* a surrogate is invalid */
	    {"\xc0\xaf", "\\xc0\\xaf"},				      /* an overlong form too */
	};
	char buf[UT_QUOTE_LEN];
	for (size_t i = 0; i < UT_ARRAY_LEN(cases); i++) {
		ut_quote(cases[i].in, buf, sizeof(buf));
		if (strcmp(buf, cases[i].out) != 0)
			fail_msg("case %zu: got \"%s\", want \"%s\"", i, buf, cases[i].out);
	}
	/* embedded NUL bytes with ut_quote_n */
	assert_string_equal(ut_quote_n("a\0b", 3, buf, sizeof(buf)), "a\\x00b");
	assert_string_equal(ut_quote(NULL, buf, sizeof(buf)), "");
}

static void quote_cuts(void **state)
{
	(void)state;
	char text[200], buf[UT_QUOTE_LEN], want[UT_QUOTE_MAX + 4];
	memset(text, 'x', sizeof(text) - 1);
	text[sizeof(text) - 1] = '\0';
	ut_quote(text, buf, sizeof(buf));
	memset(want, 'x', UT_QUOTE_MAX);
	memcpy(want + UT_QUOTE_MAX, "...", 4);
	assert_string_equal(buf, want);
	/* exactly UT_QUOTE_MAX bytes: not cut */
	text[UT_QUOTE_MAX] = '\0';
	ut_quote(text, buf, sizeof(buf));
	assert_int_equal(strlen(buf), UT_QUOTE_MAX);
	/* the worst case fits UT_QUOTE_LEN: every byte escaped, then "..." */
	memset(text, '\x01', sizeof(text) - 1);
	text[sizeof(text) - 1] = '\0';
	ut_quote(text, buf, sizeof(buf));
	assert_int_equal(strlen(buf), UT_QUOTE_MAX * 4 + 3);
	assert_string_equal(buf + UT_QUOTE_MAX * 4, "...");
	/* a small buffer is never overrun, stays terminated and marks the cut */
	char small[6];
	memset(small, '#', sizeof(small));
	ut_quote("\n\n\n\n", small, sizeof(small));
	assert_string_equal(small, "\\n...");
	/* a path is not cut at UT_QUOTE_MAX, only where the buffer ends */
	char path[300], shown[400];
	memset(path, 'p', sizeof(path) - 1);
	path[sizeof(path) - 1] = '\0';
	path[5] = '\n';
	ut_quote_path(path, shown, sizeof(shown));
	assert_int_equal(strlen(shown), sizeof(path));
	assert_memory_equal(shown, "ppppp\\npp", 9);
	ut_quote_path(path, shown, 100);
	assert_int_equal(strlen(shown), 99);
	assert_string_equal(shown + 96, "...");
}

static void err_set_one_line(void **state)
{
	(void)state;
	struct ut_err err;
	assert_int_equal(ut_err_set(&err, "%s:1: unknown column '%s'", "a\nb.csv", "x\r\ny"), -1);
	assert_string_equal(err.msg, "a\\nb.csv:1: unknown column 'x\\r\\ny'");
	/* the message may quote itself (a wrapper adding context) */
	ut_err_set(&err, "inner\tpart");
	ut_err_set(&err, "outer: %s", err.msg);
	assert_string_equal(err.msg, "outer: inner\\tpart");
	/* UTF-8 in paths is kept as it is */
	ut_err_set(&err, "%s: No such file", "d\xc3\xa9j\xc3\xa0.yaml");
	assert_string_equal(err.msg, "d\xc3\xa9j\xc3\xa0.yaml: No such file");
	assert_int_equal(ut_err_set(NULL, "x"), -1);
}

static void log_one_line(void **state)
{
	(void)state;
	FILE *capture = tmpfile();
	assert_non_null(capture);
	int saved = dup(2);
	assert_true(saved >= 0);
	fflush(stderr);
	assert_true(dup2(fileno(capture), 2) >= 0);
	ut_log(UT_LOG_ERROR, "unknown option '%s'", "--x\ny");
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	char line[256] = "";
	rewind(capture);
	size_t n = fread(line, 1, sizeof(line) - 1, capture);
	fclose(capture);
	line[n] = '\0';
	assert_string_equal(line, "error: unknown option '--x\\ny'\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(quote_escapes),
	    cmocka_unit_test(quote_cuts),
	    cmocka_unit_test(err_set_one_line),
	    cmocka_unit_test(log_one_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
