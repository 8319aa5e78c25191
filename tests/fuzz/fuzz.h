/*
 * fuzz.h -- what the fuzz targets share.
 *
 * Every target is one file, fuzz_<name>.c, that defines
 *
 *     int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
 *
 * and is linked twice: with libFuzzer (-DLUNET_FUZZ=ON, a clang build
 * with ASan and UBSan; the binary is fuzz_<name>), and with replay.c, a
 * main() that feeds it the files of a corpus (every build; the binary is
 * fuzz_<name>_replay, and CTest runs it over tests/fuzz/corpus/<name>/
 * with the label fuzz-replay).
 *
 * A target returns 0 for every input.  A finding is a crash, a sanitizer
 * report or a failed FUZZ_CHECK (which prints what went wrong and
 * aborts): an oracle broken, or memory of lunet's allocator still live
 * after the input was dealt with.
 */
#ifndef LN_FUZZ_H
#define LN_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts with file, line and the printf-formatted message unless cond. */
#define FUZZ_CHECK(cond, ...) \
	((cond) ? (void)0 : fuzz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__))
void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
	__attribute__((noreturn, format(printf, 4, 5)));

/* Once per process: lowers ln_alloc_set_limit to 64 MiB (a fuzz input
 * never needs more, and a size field that asks for more must be refused,
 * not attempted) and silences lunet's warnings. */
void fuzz_init(void);

/* A path naming a file that holds exactly data[0..size) (an anonymous
 * memory file seen through /proc/self/fd, or a temporary file where that
 * is missing), for readers that take a path.  Valid until the next call. */
const char *fuzz_file(const uint8_t *data, size_t size);

/* A Lua state with the standard libraries and lunet loaded as the global
 * `lunet` (created on the first call, then reused: loading lunet once per
 * input would be most of the time spent). */
lua_State *fuzz_lua(void);

/* Makes the Lua code run in L visible to libFuzzer: a line hook counts
 * every pair (previous line, line) of the Lua functions executed, in
 * libFuzzer's extra counters, as its instrumentation counts the edges of
 * C code.  Without it libFuzzer sees no difference between inputs that
 * take different paths through Lua (the interpreter is not instrumented).
 * Harmless without libFuzzer (the counters are then only written). */
void fuzz_lua_coverage(lua_State *L);

/* After an input that used fuzz_lua(): the stack must be empty; a full
 * collection must give every byte of lunet's allocator back (the count
 * taken when the state was made): a tensor or module that outlives every
 * reference to it is a leak, and a finding. */
void fuzz_lua_done(lua_State *L);

/* Checks that lunet's allocator holds as many live bytes as before the
 * input (for targets that call the C readers directly). */
uint64_t fuzz_live_bytes(void);
void fuzz_check_live(uint64_t before, const char *what);

#endif
