/*
 * rules.h -- the shape of the data: a rule tree per parameter, a row per
 * operation. The rows live in operations.h (spec/operations_spec.lua checks
 * them); everything that walks them (validate, emit, describe) is in rules.c.
 *
 * A rule is one node: a kind, optional constraints, and children (an object's
 * fields, or an array's item rule). A field list is an array of rules ended
 * by END. Rows are written with C99 designated initializers, e.g.
 *
 *   static const struct rule threshold_fields[] = {
 *     { "amount", K_STRING, REQUIRED, FORMAT(F_DECIMAL) },
 *     { "unit", K_STRING, REQUIRED, ONE_OF(data_units) },
 *     END
 *   };
 */
#ifndef TSIM_RULES_H
#define TSIM_RULES_H

#include <stddef.h>

/* What a value must be. The first five are the API's JSON types; the last
 * three exist for client and per-call options only. */
enum kind {
  K_INTEGER,  /* a whole number; written as an integer in JSON and URLs alike */
  K_STRING,   /* UTF-8 text */
  K_BOOLEAN,
  K_OBJECT,   /* a table with string keys, each one of `fields` */
  K_ARRAY,    /* a sequence 1..n, each item obeying `items` */
  K_NUMBER,   /* options only: any finite number (seconds) */
  K_FUNCTION, /* options only: a callable (sleep) */
  K_MAP,      /* options only: string keys -> values obeying `items` (headers) */
  K_COUNT_    /* number of kinds */
};

/* Extra checks on strings: one row each, X(enum, describe name, check
 * function in formats.c, what a message says it must be, whether length
 * bounds follow that text). A new format is a row here and its check. */
#define TSIM_FORMATS(X)                                                                            \
  X(F_UUID, "uuid", is_uuid, "a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)", 0)                   \
  X(F_DECIMAL, "decimal", is_decimal, "a decimal string such as \"2048\" or \"0.5\"", 0)         \
  /* the API: "letters, numbers and whitespaces"; what it takes beyond ASCII is unsaid, so not sent */ \
  X(F_SPN, "spn", is_spn,                                                                          \
    "a string of only ASCII letters (A-Z, a-z), digits and spaces or tabs (at least one letter or digit)", 0) \
  X(F_DATETIME, "date-time", is_datetime, "an RFC 3339 date-time such as \"2026-01-31T12:00:00Z\"", 0) \
  /* options only: it becomes a header value */                                                   \
  X(F_HEADER, "header", header_safe, "a string without CR, LF or NUL", 1)

#define TSIM_FORMAT_ENUM(e, name, check, text, bounded) e,
enum format { F_NONE, TSIM_FORMATS(TSIM_FORMAT_ENUM) F_COUNT_ };
#undef TSIM_FORMAT_ENUM

/* Where a top-level param travels. Fields below the top inherit their root's. */
enum place { IN_BODY, IN_PATH, IN_QUERY };

#define R_REQUIRED 1u /* must be present */
#define R_NULLABLE 2u /* sim.null is accepted and sent as JSON null */

struct rule {
  const char *name;            /* field name in its parent object; NULL ends a list */
  enum kind kind;
  unsigned flags;              /* R_REQUIRED | R_NULLABLE */
  enum place place;            /* top-level params only */
  enum format format;          /* K_STRING only */
  const char *const *choices;  /* K_STRING: allowed values, NULL-terminated */
  double min, max;             /* K_INTEGER / K_NUMBER: the value; K_STRING / K_ARRAY: the length */
  unsigned char has_min, has_max;
  const struct rule *fields;   /* K_OBJECT: the field list */
  const struct rule *items;    /* K_ARRAY / K_MAP: one rule for every item */
  size_t into, into_size;      /* options: the field of the option struct this one fills (INTO) */
};

/* An option's value in its option struct (tsim_fill_options), by kind:
 * K_INTEGER a long, K_NUMBER a double, K_BOOLEAN an int, K_STRING a
 * struct tsim_text (the bytes stay the options table's), K_FUNCTION and
 * K_MAP an int: the stack slot that holds the value, 0 when absent. Fields
 * of absent options keep what the caller put there (the defaults). */
struct tsim_text {
  const char *s; /* NULL: absent */
  size_t len;
};

/* Row-writing shorthands (all designated, so any order after kind). */
#define END           { NULL, K_INTEGER, 0 }
#define REQUIRED      .flags = R_REQUIRED
#define NULLABLE      .flags = R_NULLABLE
#define IN(p)         .place = (p)
#define FORMAT(f)     .format = (f)
#define ONE_OF(list)  .choices = (list)
#define MIN(v)        .min = (v), .has_min = 1
#define MAX(v)        .max = (v), .has_max = 1
#define FIELDS(list)  .fields = (list)
#define ITEMS(rule)   .items = (rule)
#define INTO(type, member) .into = offsetof(type, member), .into_size = sizeof(((type *)0)->member)

/* What a second copy of the request may do (NOTES.md: "What a second copy of
 * a request does"). */
enum resend {
  RESEND_SAFE,       /* converges: retried after any transient failure */
  RESEND_DUPLICATES, /* creates one more object each time */
  RESEND_SPENDS      /* spends money each time */
};

enum body_mode {
  BODY_NONE,  /* no body: Content-Length: 0, no Content-Type */
  BODY_JSON   /* the IN_BODY params as one JSON object (possibly {}) */
};

enum result_kind {
  RESULT_LIST, /* data: an array, meta: the page */
  RESULT_ONE,  /* data: one object */
  RESULT_NONE  /* nothing the caller needs beyond the status */
};

struct operation {
  const char *name;         /* the client method, e.g. "enable_sim_card" */
  const char *method;       /* GET, POST, PATCH, DELETE */
  const char *path;         /* below base_url; each {x} is a required IN_PATH param */
  enum body_mode body;
  enum result_kind result;
  enum resend resend;
  const char *noun;         /* what messages call the object: "SIM card order" */
  const char *check;        /* where to look when a non-safe call may have gone
                               through: "the SIM card order list" (NULL if safe) */
  const struct rule *params;/* the top-level field list */
};

#endif
