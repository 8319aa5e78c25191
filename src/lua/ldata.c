/* placeholder: the data binding is being written */
#include "lnaux.h"
void lnL_open_data(lua_State *L) { (void)L; }
