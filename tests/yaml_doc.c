/*
 * yaml_doc.c - golden .yaml files as libyaml documents (see yaml_doc.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "yaml_doc.h"

void test_yaml_load(const char *path, yaml_document_t *doc)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		fail_msg("%s: cannot open", path);
	yaml_parser_t parser;
	if (!yaml_parser_initialize(&parser))
		fail_msg("%s: out of memory", path);
	yaml_parser_set_input_file(&parser, f);
	int ok = yaml_parser_load(&parser, doc);
	const char *problem = parser.problem ? parser.problem : "?";
	fclose(f);
	if (!ok) {
		char reason[256];
		snprintf(reason, sizeof(reason), "%s", problem);
		yaml_parser_delete(&parser);
		fail_msg("%s: not valid YAML: %s", path, reason);
	}
	yaml_parser_delete(&parser);
	if (yaml_document_get_root_node(doc) == NULL)
		fail_msg("%s: empty YAML document", path);
}
