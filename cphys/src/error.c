/* The error table, per-thread last error message. */
#include "cphys/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "threads.h"

#ifndef CPHYS_VERSION_STRING
#define CPHYS_VERSION_STRING "0.0.0"
#endif

static _Thread_local char last_message[1024];

const char *CPhysErrorName(int code) {
  switch (code) {
#define CPHYS_ERROR_NAME_(name, value, message) \
  case value:                                   \
    return #name;
    CPHYS_ERROR_TABLE(CPHYS_ERROR_NAME_)
#undef CPHYS_ERROR_NAME_
  }
  return "CPHYS_ERROR_UNKNOWN";
}

const char *CPhysErrorMessage(int code) {
  switch (code) {
#define CPHYS_ERROR_MESSAGE_(name, value, message) \
  case value:                                      \
    return message;
    CPHYS_ERROR_TABLE(CPHYS_ERROR_MESSAGE_)
#undef CPHYS_ERROR_MESSAGE_
  }
  return "unknown error code";
}

const char *CPhysGetLastErrorMessage(void) {
  return last_message;
}

void CPhysClearLastError(void) {
  last_message[0] = '\0';
}

/* A message recorded on a worker thread, handed to the caller's thread (threads.h). */
void cphys_error_restore_message(const char *message) {
  snprintf(last_message, sizeof last_message, "%s", message);
}

int CPhysSetError(int code, const char *func, const char *fmt, ...) {
  char detail[768];
  va_list args;
  va_start(args, fmt);
  vsnprintf(detail, sizeof detail, fmt, args);
  va_end(args);
  snprintf(last_message, sizeof last_message, "%s: %s (%s)", func, detail, CPhysErrorName(code));
  return code;
}

const char *CPhysVersion(void) {
  return CPHYS_VERSION_STRING;
}
