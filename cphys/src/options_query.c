/* Which options PETSc's database holds: lets a caller choose between a PETSc
 * solver, which reads its options, and another that would ignore them. */
#include <string.h>

#include "petsc_env.h"

/* Whether the blank-separated option list `all` names an option "-<prefix>..."
 * that does not start with "-<excluded_prefix>". */
static int names_prefix(const char *all, const char *prefix, const char *excluded_prefix) {
  const size_t length = strlen(prefix), excluded_length = excluded_prefix ? strlen(excluded_prefix) : 0;
  for (const char *token = all; (token = strchr(token, '-')) != NULL; token++) {
    if (token != all && token[-1] != ' ') continue; /* a '-' inside a name or value */
    const char *name = token + 1;
    if (strncmp(name, prefix, length) != 0) continue;
    if (excluded_prefix && strncmp(name, excluded_prefix, excluded_length) == 0) continue;
    return 1;
  }
  return 0;
}

static int has_options_locked(const char *prefix, const char *excluded_prefix, int *found) {
  CPhysCall(CPhysPetscEnsureInitializedLocked());
  char *all = NULL;
  CPhysPetscCall(PetscOptionsGetAll(NULL, &all));
  *found = all ? names_prefix(all, prefix, excluded_prefix) : 0;
  CPhysPetscCall(PetscFree(all));
  return 0;
}

int CPhysHasOptionsWithPrefix(const char *prefix, const char *excluded_prefix, int *found) {
  CPhysCheck(prefix != NULL && prefix[0] != '\0' && found != NULL, CPHYS_ERROR_ARGUMENT,
             "prefix must be a non-empty string and found must not be NULL");
  *found = 0;
  CPhysLibraryLock();
  const int ierr = has_options_locked(prefix, excluded_prefix, found);
  CPhysLibraryUnlock();
  return ierr;
}
