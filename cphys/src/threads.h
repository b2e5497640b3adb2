/* Internal: how many threads a batch loop uses, and errors raised inside one.
 * The loops are OpenMP `parallel for`s over independent samples (heat, sine,
 * wave packet, the Poisson stencil); without OpenMP they run on the caller's
 * thread.  PETSc is never called inside them. */
#pragma once
#include <stddef.h>

#include "cphys/environment.h"

/* Threads for a loop over `items` independent items of about `item_seconds`
 * of work each: CPhysGetThreads(), reduced so that every thread gets at least
 * ~1 ms of work (a parallel region costs microseconds on idle cores, but up to
 * a scheduler time slice when a waiting thread's core is taken by another
 * process: measured 0.5 -> 9 ms for the Poisson stencil at B = 64), and never more than `items`; 1 in a
 * process forked from another (libgomp cannot start threads there once the parent had some). */
int cphys_loop_threads(ptrdiff_t items, double item_seconds);

/* The failure with the lowest item index inside a parallel loop, carried to
 * the calling thread (cphys error messages are per thread). */
typedef struct {
  int code;        /* 0: no failure */
  ptrdiff_t index; /* the failing item; PTRDIFF_MAX: none */
  char message[1024];
} CPhysLoopError;

void cphys_loop_error_init(CPhysLoopError *error);
/* On the thread where a cphys call for item `index` returned `code` != 0:
 * keeps that thread's message when `index` is the lowest so far (thread-safe). */
void cphys_loop_error_record(CPhysLoopError *error, int code, ptrdiff_t index);
/* True when a failure of an item before `index` is recorded: item `index` can
 * be skipped, and the failure reported is always the lowest failing item's. */
int cphys_loop_error_skip(const CPhysLoopError *error, ptrdiff_t index);
/* On the calling thread after the loop: 0, or the recorded code, whose message
 * becomes this thread's last error message. */
int cphys_loop_error_raise(const CPhysLoopError *error);

/* error.c: replaces this thread's last error message verbatim. */
void cphys_error_restore_message(const char *message);
