/* operations.c -- the rows of operations.h, included once, and lookup by name. */
#include <string.h>

#include "lauxlib.h"

#include "compat.h"
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

/* The edit distance of a and b (both short), for "did you mean". */
static size_t distance(const char *a, const char *b) {
  size_t row[64], i, j, la = strlen(a), lb = strlen(b);
  if (la >= 63 || lb >= 63) return (size_t)-1;
  for (j = 0; j <= lb; j++) row[j] = j;
  for (i = 1; i <= la; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (j = 1; j <= lb; j++) {
      size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
      if (up + 1 < best) best = up + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      diag = up;
      row[j] = best;
    }
  }
  return row[lb];
}

/* The operation named most like name, or NULL when none is close. */
static const char *nearest(const char *name) {
  size_t i, best = (size_t)-1;
  const char *found = NULL;
  for (i = 0; i < N_OPERATIONS; i++) {
    size_t d = distance(name, operations[i].name);
    if (d < best) { best = d; found = operations[i].name; }
  }
  return best <= 1 + strlen(name) / 4 ? found : NULL;
}

/* Pushes the err for a value at idx that names no operation: what was given
 * and the nearest known name, under the function the user called. */
void tsim_push_unknown_operation(lua_State *L, const char *who, int idx, const char *field) {
  if (lua_type(L, idx) != LUA_TSTRING) {
    tsim_push_error(L, "invalid_params", "%s: the operation name must be a string such as 'list_sim_cards' (got %s)",
                    who, luaL_typename(L, idx));
  } else {
    const char *near = nearest(lua_tostring(L, idx));
    tsim_push_escaped(L, lua_tostring(L, idx), compat_rawlen(L, idx));
    tsim_push_error(L, "invalid_params", "%s: unknown operation '%s' (%s%s%ssee telnyx.sim.operations)", who,
                    lua_tostring(L, -1), near ? "did you mean '" : "", near ? near : "", near ? "'? " : "");
    lua_remove(L, -2);
  }
  tsim_set_string(L, "field", field);
}
