/*
 * yaml_doc.h - for the tests: load a golden .yaml file as a libyaml
 * document, failing the running cmocka test (with the file and libyaml's
 * reason) when it cannot be read or parsed.
 */
#ifndef TEST_YAML_DOC_H
#define TEST_YAML_DOC_H

#include <yaml.h>

void test_yaml_load(const char *path, yaml_document_t *doc);

#endif
