/* Internal: what the single-process and the distributed Poisson objects share. */
#pragma once
#include "cphys/poisson.h"

/* Validates a configuration (sizes, spacing, tolerances, prefix) without MPI or PETSc. */
int CPhysPoissonCheckConfig(const CPhysPoissonConfig *config);
