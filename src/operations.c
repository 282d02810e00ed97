/* operations.c -- the rows of operations.h, included once, and lookup by name. */
#include <string.h>

#include "core.h"
#include "operations.h"

const struct operation *const tsim_operations = operations;
const size_t tsim_n_operations = N_OPERATIONS;

const struct operation *tsim_find_operation(const char *name, size_t len) {
  size_t i;
  if (name == NULL || strlen(name) != len) return NULL;
  for (i = 0; i < N_OPERATIONS; i++)
    if (strcmp(operations[i].name, name) == 0) return &operations[i];
  return NULL;
}
