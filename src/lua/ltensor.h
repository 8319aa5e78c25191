/*
 * ltensor.h -- argument helpers shared by the tensor bindings (ltensor.c,
 * ltensor_ops.c).  Private to them; other bindings use lnaux.h.
 *
 * Every helper that raises names the function the script called (fname,
 * "Tensor:sum", "lunet.cat") and the value that arrived.  Dimensions come
 * from Lua 1-based, or negative counted from the end (-1 is the last),
 * and are returned 0-based.
 */
#ifndef LN_LTENSOR_H
#define LN_LTENSOR_H

#include <stdbool.h>

#include "lnaux.h"

#define SHAPE_BUF 200  /* "{a,b,...}" for LN_MAX_DIMS 20-digit sizes */

/* Shape of t as "{2,3}" in buf (SHAPE_BUF bytes). */
const char *lnL_tshape(const ln_tensor *t, char *buf);
/* The open tensor at arg, or "fname: expected a lunet.Tensor, got <type>"
 * / "fname: tensor is closed". */
ln_tensor *lnL_checkt(lua_State *L, int arg, const char *fname);
/* A number argument (NaN and infinities allowed: they are valid values). */
float lnL_checkvalue(lua_State *L, int arg, const char *fname);
/* An integer argument (what = "index", "dimension", "start"...). */
lua_Integer lnL_checkint(lua_State *L, int arg, const char *fname, const char *what);
/* The dimension of t at arg (1..ndim or -ndim..-1), returned 0-based. */
int lnL_checkdim(lua_State *L, int arg, const ln_tensor *t, const char *fname);
/* The same for a dimension d already read (from a table, say). */
int lnL_todim(lua_State *L, lua_Integer d, const ln_tensor *t, const char *fname);
/* A position where a new dimension goes in an ndim-D tensor (1..ndim+1,
 * or -(ndim+1)..-1 where -1 appends), returned 0-based (0..ndim). */
int lnL_checkinsert(lua_State *L, int arg, int ndim, const char *fname);
/* An optional boolean at arg (nil or none: dflt); what names it. */
bool lnL_optbool(lua_State *L, int arg, bool dflt, const char *fname, const char *what);
/* Reports the storage of a newly filled tensor to the collector. */
void lnL_tpressure(lua_State *L, const ln_tensor *t);
/* An operand that may be a tensor, a nested table (converted; pushed) or
 * a number (when allow_number).  Returns the tensor, or NULL with *num
 * set. */
ln_tensor *lnL_operand(lua_State *L, int arg, const char *fname, bool allow_number, float *num);

/* Registers the methods of ltensor_ops.c into the method table at index
 * methods and its functions (lunet.cat...) into the lunet table at index
 * lunet. */
void lnL_open_tensor_ops(lua_State *L, int methods, int lunet);

#endif
