/* Thread counts of the batch loops (CPhysSetThreads) and their error hand-over. */
#include "threads.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "cphys/error.h"

/* Set per calling thread: the torch ops pass at::get_num_threads() before every call. */
static _Thread_local int requested_threads; /* 0: OpenMP's default */

int CPhysSetThreads(int threads) {
  CPhysCheck(threads >= 0, CPHYS_ERROR_ARGUMENT, "threads must be >= 0 (0: OpenMP's default), got %d",
             threads);
  requested_threads = threads;
  return 0;
}

int CPhysGetThreads(void) {
#ifdef _OPENMP
  const int threads = requested_threads > 0 ? requested_threads : omp_get_max_threads();
  return threads > 1 ? threads : 1;
#else
  return 1;
#endif
}

/* libgomp cannot start a thread team in a process forked from one that had
 * started one (the child hangs: a DataLoader worker, say), so a forked child
 * runs every loop on its calling thread, as torch does with its own pool.
 * Registered when the library is loaded, before any fork. */
static volatile sig_atomic_t in_forked_child = 0;
static void note_forked_child(void) {
  in_forked_child = 1;
}
__attribute__((constructor)) static void register_fork_handler(void) {
  pthread_atfork(NULL, NULL, note_forked_child);
}

int cphys_loop_threads(ptrdiff_t items, double item_seconds) {
  int threads = CPhysGetThreads();
  if (threads <= 1 || items < 2 || in_forked_child) return 1;
  const double minimum_seconds_per_thread = 1e-3;
  const double worth = (double)items * item_seconds / minimum_seconds_per_thread;
  if (worth < (double)threads) threads = worth < 1.0 ? 1 : (int)worth;
  if ((ptrdiff_t)threads > items) threads = (int)items;
  return threads;
}

void cphys_loop_error_init(CPhysLoopError *error) {
  error->code = 0;
  error->index = PTRDIFF_MAX;
  error->message[0] = '\0';
}

void cphys_loop_error_record(CPhysLoopError *error, int code, ptrdiff_t index) {
#pragma omp critical(cphys_loop_error)
  {
    if (index < error->index) {
      error->code = code;
#pragma omp atomic write
      error->index = index;
      snprintf(error->message, sizeof error->message, "%s", CPhysGetLastErrorMessage());
    }
  }
}

int cphys_loop_error_skip(const CPhysLoopError *error, ptrdiff_t index) {
  ptrdiff_t failed;
#pragma omp atomic read
  failed = error->index;
  return failed < index;
}

int cphys_loop_error_raise(const CPhysLoopError *error) {
  if (error->code) cphys_error_restore_message(error->message);
  return error->code;
}
