/* Shared pieces of the physical-gradient contract (cphys/physical_gradient.h). */
#include "cphys/physical_gradient.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cphys_internal.h"

void CPhysSetDirectInfo(CPhysSolveInfo *info, ptrdiff_t batch, const char *reason) {
  if (!info) return;
  for (ptrdiff_t s = 0; s < batch; s++) {
    memset(&info[s], 0, sizeof info[s]);
    info[s].converged = 1;
    snprintf(info[s].reason_text, sizeof info[s].reason_text, "%s", reason ? reason : "DIRECT");
  }
}

int cphys_target(const char *caller, ptrdiff_t count, const double *y, const double *g, double y_step,
                 double **target) {
  *target = NULL;
  CPhysCheckCaller(caller, count >= 0, CPHYS_ERROR_ARGUMENT, "batch size must be >= 0");
  CPhysCheckCaller(caller, count == 0 || (y != NULL && g != NULL), CPHYS_ERROR_ARGUMENT,
                   "y and g must not be NULL");
  *target = malloc(sizeof(double) * (size_t)(count > 0 ? count : 1));
  CPhysCheckCaller(caller, *target != NULL, CPHYS_ERROR_MEMORY, "cannot allocate %td doubles", count);
  for (ptrdiff_t k = 0; k < count; k++) (*target)[k] = y[k] - y_step * g[k];
  return 0;
}
