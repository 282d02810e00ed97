/*
 * formats.c -- the string formats of the rule engine: one row each in
 * TSIM_FORMATS (rules.h), checked here. No I/O, no Lua.
 */
#include <ctype.h>
#include <string.h>

#include "core.h"

static int is_uuid(const char *s, size_t n) {
  size_t i;
  if (n != 36) return 0;
  for (i = 0; i < n; i++) {
    int dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i])) return 0;
  }
  return 1;
}

static int is_decimal(const char *s, size_t n) {
  size_t i, seen = 0, dots = 0;
  for (i = 0; i < n; i++) {
    if (isdigit((unsigned char)s[i])) seen++;
    else if (s[i] == '.' && dots++ == 0 && seen > 0) continue;
    else return 0;
  }
  return seen > 0 && s[n - 1] != '.';
}

static int is_spn(const char *s, size_t n) {
  size_t i, letters = 0;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) letters++;
    else if (c != ' ' && c != '\t') return 0;
  }
  return letters > 0;
}

/* Whether s starts with text of this shape: 'd' a digit, 'T' T or t, '+'
 * + or -, any other character itself. */
static int shaped(const char *s, const char *shape) {
  for (; *shape; s++, shape++) {
    unsigned char c = (unsigned char)*s;
    int ok = *shape == 'd'   ? isdigit(c)
             : *shape == 'T' ? c == 'T' || c == 't'
             : *shape == '+' ? c == '+' || c == '-'
                             : c == (unsigned char)*shape;
    if (!ok) return 0;
  }
  return 1;
}

/* Two digits at s[at] within lo..hi (the shape is checked already). */
static int two_digits_in(const char *s, size_t at, int lo, int hi) {
  int v = (s[at] - '0') * 10 + (s[at + 1] - '0');
  return v >= lo && v <= hi;
}

/* RFC 3339: YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM), fields in range. */
static int is_datetime(const char *s, size_t n) {
  size_t i = 19;
  if (n < 19 || !shaped(s, "dddd-dd-ddTdd:dd:dd") || !two_digits_in(s, 5, 1, 12) || !two_digits_in(s, 8, 1, 31) ||
      !two_digits_in(s, 11, 0, 23) || !two_digits_in(s, 14, 0, 59) || !two_digits_in(s, 17, 0, 60))
    return 0;
  if (i < n && s[i] == '.') {
    do i++; while (i < n && isdigit((unsigned char)s[i]));
    if (i == 20) return 0; /* no digit after the dot */
  }
  if (i < n && (s[i] == 'Z' || s[i] == 'z')) return i + 1 == n;
  return i + 6 == n && shaped(s + i, "+dd:dd");
}

static int header_safe(const char *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0') return 0;
  return 1;
}

#define TSIM_FORMAT_ROW(e, name, check, text, bounded) [e] = {name, check, text, bounded},

const struct format_row tsim_formats[F_COUNT_] = {
  [F_NONE] = {NULL, NULL, "a UTF-8 string", 1},
  TSIM_FORMATS(TSIM_FORMAT_ROW)
};
