/* placeholder: the nn binding is being written */
#include "lnaux.h"
void lnL_open_nn(lua_State *L) { (void)L; }
