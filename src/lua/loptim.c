/* placeholder: the optim binding is being written */
#include "lnaux.h"
void lnL_open_optim(lua_State *L) { (void)L; }
