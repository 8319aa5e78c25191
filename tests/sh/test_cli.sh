#!/bin/bash
# test_cli.sh BUILD_DIR SOURCE_DIR -- the `lunet` runner and REPL.
#
# The checks (run, check, out_has...) come from lib.sh: each prints FAIL
# with what it expected and what arrived; the script ends with "N passed,
# M failed" and exits non-zero if anything failed.
set -u

BUILD=$(cd "${1:?usage: test_cli.sh BUILD_DIR SOURCE_DIR}" && pwd)
SRC=$(cd "${2:?usage: test_cli.sh BUILD_DIR SOURCE_DIR}" && pwd)
LUNET="$BUILD/lunet"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

. "$SRC/tests/sh/lib.sh"

# The version the build stamps in, read from the project declaration.
VERSION=$(sed -n 's/^project(lunet VERSION \([0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt")

if [ ! -x "$LUNET" ]; then
	echo "FAIL: $LUNET is not built"
	echo "0 passed, 1 failed"
	exit 1
fi
if [ -z "$VERSION" ]; then
	echo "FAIL: cannot read the project version from $SRC/CMakeLists.txt"
	echo "0 passed, 1 failed"
	exit 1
fi

# ---- the REPL, piped ---------------------------------------------------------

# The documented example: values print, an error is reported and the
# session goes on, the exit code is 0.
printf 'x = lunet.ones(2,3)\nx:sum()\nerror("boom")\n1+1\n' >"$TMP/in"
run "$LUNET" <"$TMP/in"
check "piped REPL exits 0" test "$rc" -eq 0
check "piped REPL prints 6 then 2" \
	grep -qzE '^6(\.0)?'$'\n''2'$'\n''$' "$TMP/out"
check "piped REPL reports boom" err_has 'stdin:1: boom'

# Same session with both streams in one pipe: the order is kept.
printf 'x = lunet.ones(2,3)\nx:sum()\nerror("boom")\n1+1\n' | "$LUNET" >"$TMP/out" 2>&1
rc=$?
: >"$TMP/err"
first_line() { grep -nE -m1 -- "$1" "$TMP/out" | cut -d: -f1; }
l6=$(first_line '^6$'); lboom=$(first_line boom); l2=$(first_line '^2$')
check "piped REPL order 6, boom, 2" test "${l6:-99}" -lt "${lboom:-0}" -a "${lboom:-99}" -lt "${l2:-0}"

# No prompt, banner or trailing newline when stdin is not a terminal.
printf '1+1\n' >"$TMP/in"
run "$LUNET" <"$TMP/in"
check "piped REPL prints no prompt or banner" out_is "2"

# Several values are tab-separated, nil included; strings print bare.
printf 'return 1, "a", nil, true\n' >"$TMP/in"
run "$LUNET" <"$TMP/in"
check "REPL prints several values tab-separated" out_is $'1\ta\tnil\ttrue'

# A statement with no value prints nothing; "=expr" is kept from Lua 5.2.
printf 'local y = 3\n=2+3\n' >"$TMP/in"
run "$LUNET" <"$TMP/in"
check "REPL statement prints nothing, =expr prints" out_is "5"

# An incomplete statement continues on the next lines.
printf 'for i = 1, 3 do\nio.write(i, " ")\nend\nprint("done")\n' >"$TMP/in"
run "$LUNET" <"$TMP/in"
check "REPL continues incomplete statements" out_is "1 2 3 done"

# Input that ends inside a statement is a syntax error, not a hang.
printf 'for i = 1, 3 do\n' >"$TMP/in"
run "$LUNET" <"$TMP/in"
check "REPL reports unfinished statement at end of input" \
	bash -c "[ $rc -eq 0 ] && grep -q \"'end' expected near <eof>\" '$TMP/err'"

# The globals are set and are the module's own tables.
printf 'type(lunet), lunet.version\nrawequal(nn, lunet.nn), rawequal(optim, lunet.optim), rawequal(data, lunet.data)\nrawequal(require("lunet"), lunet)\n' >"$TMP/in"
run "$LUNET" <"$TMP/in"
check "REPL globals lunet, nn, optim, data" \
	out_is "table	$VERSION"$'\n'"true	true	true"$'\n'"true"

# An error object that is not a string.
printf 'error({})\nerror(setmetatable({}, {__tostring = function() return "custom" end}))\nprint("still here")\n' >"$TMP/in"
run "$LUNET" <"$TMP/in"
check "REPL error objects that are not strings" \
	bash -c "grep -q '(error object is a table value)' '$TMP/err' &&
		grep -q '^custom' '$TMP/err' && [ \"\$(cat '$TMP/out')\" = 'still here' ]"

# A very long line (longer than the 512 bytes lua.c reads at once).
long=$(printf 'x%.0s' $(seq 3000))
printf 'return #"%s"\n' "$long" >"$TMP/in"
run "$LUNET" <"$TMP/in"
check "REPL reads long lines whole" out_is "3000"

# A line with __tostring: modules and tensors print through it.
printf 'setmetatable({}, {__tostring = function() return "T{2,3}" end})\n' >"$TMP/in"
run "$LUNET" <"$TMP/in"
check "REPL prints through __tostring" out_is "T{2,3}"

# Tables print readably, not as "table: 0x...": a shape, keys sorted after
# the sequence, strings quoted, nested tables and long ones abridged.
printf 'lunet.ones(2,3):shape()\n{lr = 0.1, betas = {0.9, 0.999}, name = "sgd", [5] = true}\nlunet.arange(25):totable()\n{{{{{1}}}}}\n{}\nt = {1}; t.self = t\nt\n' >"$TMP/in"
run "$LUNET" <"$TMP/in"
check "REPL prints tables readably" out_is "{2, 3}
{[5] = true, betas = {0.9, 0.999}, lr = 0.1, name = \"sgd\"}
{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, ... (15 more)}
{{{{...}}}}
{}
{1, self = {...}}"

# Tensors and modules inside a table print by their tostring, one entry
# per line; several results stay tab-separated.
printf 'lunet.seed(1)\nm = nn.Linear(3, 2)\nm:zero_grad()\nw, g = m:parameters()\ng\n{nn.ReLU(), lunet.tensor{1, 2}}\n#m:parameters(), {1}\n' >"$TMP/in"
run "$LUNET" <"$TMP/in"
check "REPL prints tensors inside tables by their tostring" out_is "{
  0  0  0
  0  0  0
  [lunet.Tensor of shape {2,3}],
  0  0
  [lunet.Tensor of shape {2}],
}
{
  ReLU,
  1  2
  [lunet.Tensor of shape {2}],
}
2	{1}"
check "REPL prints no table addresses" bash -c "! grep -q 'table: 0x' '$TMP/out'"

# ---- version and help -----------------------------------------------------

run "$LUNET" --version </dev/null
check "--version" bash -c "[ $rc -eq 0 ] && grep -qxE 'lunet $VERSION \(Lua 5\.4\.[0-9]+\)' '$TMP/out'"
run "$LUNET" -v </dev/null
check "-v" bash -c "[ $rc -eq 0 ] && grep -qxE 'lunet $VERSION \(Lua 5\.4\.[0-9]+\)' '$TMP/out'"
run "$LUNET" -h </dev/null
check "-h prints usage and exits 0" bash -c "[ $rc -eq 0 ] && grep -q '^usage: lunet' '$TMP/out'"
run "$LUNET" --help </dev/null
check "--help" bash -c "[ $rc -eq 0 ] && grep -q -- '-e stat' '$TMP/out'"
run "$LUNET" -x </dev/null
check "unknown option fails" bash -c "[ $rc -eq 1 ] && grep -q \"unrecognized option '-x'\" '$TMP/err'"
run "$LUNET" -e </dev/null
check "-e without argument fails" bash -c "[ $rc -eq 1 ] && grep -q \"'-e' needs argument\" '$TMP/err'"

# ---- -e and -l ----------------------------------------------------------------

run "$LUNET" -e 'print(6 * 7)' </dev/null
check "-e runs a chunk" bash -c "[ $rc -eq 0 ] && [ \"\$(cat '$TMP/out')\" = 42 ]"
run "$LUNET" -e 'x = 5' -e 'print(x * 2)' </dev/null
check "-e repeated, in order" bash -c "[ $rc -eq 0 ] && [ \"\$(cat '$TMP/out')\" = 10 ]"
run "$LUNET" -e 'print(lunet.version == "'"$VERSION"'", nn == lunet.nn)' </dev/null
check "-e sees the globals" out_is $'true\ttrue'
run "$LUNET" -e 'error("from -e")' </dev/null
check "-e error exits 1 with message" \
	bash -c "[ $rc -eq 1 ] && grep -q '^lunet: (command line):1: from -e' '$TMP/err'"
run "$LUNET" -e 'x = = 1' </dev/null
check "-e syntax error exits 1" \
	bash -c "[ $rc -eq 1 ] && grep -q '^lunet: (command line):1:.*near' '$TMP/err'"
run "$LUNET" -l m=string -e 'print(m == string)' </dev/null
check "-l g=mod" out_is "true"

# ---- scripts -------------------------------------------------------------------

cat >"$TMP/args.lua" <<'EOF'
-- Prints `arg` from its lowest index to its highest, and `...`.
local lo = 0
while arg[lo - 1] ~= nil do lo = lo - 1 end
local t = {}
for i = lo, #arg do
	local v = arg[i]
	if i == lo then v = "INTERP" end  -- the interpreter's own path differs
	t[#t + 1] = i .. "=" .. tostring(v)
end
print(table.concat(t, " "))
print(select("#", ...), ...)
print(z)
EOF
run "$LUNET" -e 'z = 1' "$TMP/args.lua" a 'b c' "" </dev/null
lunet_out=$(cat "$TMP/out")
check "script with args exits 0" test "$rc" -eq 0
expected=$(lua5.4 -e 'z = 1' "$TMP/args.lua" a 'b c' "" </dev/null)
check "arg and ... as lua5.4 builds them" test "$lunet_out" = "$expected"
check "script sees arg[0], args and -e globals" \
	test "$lunet_out" = "-3=INTERP -2=-e -1=z = 1 0=$TMP/args.lua 1=a 2=b c 3="$'\n'"3	a	b c	"$'\n'"1"

run "$LUNET" -- "$TMP/args.lua" -x </dev/null
check "-- ends options" out_has '^1	-x$'

printf 'print("from stdin", ...)\n' >"$TMP/in"
run "$LUNET" - p q <"$TMP/in"
check "'-' runs stdin as a script with args" out_is $'from stdin\tp\tq'

cat >"$TMP/fails.lua" <<'EOF'
local function inner()
	error("deliberate failure 17")
end
local function outer() inner() end
outer()
EOF
run "$LUNET" "$TMP/fails.lua" </dev/null
check "script error exits 1" test "$rc" -eq 1
check "script error message names script and line" \
	err_has "^lunet: $TMP/fails.lua:2: deliberate failure 17\$"
check "script error has a traceback naming the script" \
	bash -c "grep -q '^stack traceback:' '$TMP/err' &&
		grep -qE '^	$TMP/fails.lua:2: in (upvalue|local|function) .inner.' '$TMP/err' &&
		grep -qE '^	$TMP/fails.lua:5: in main chunk' '$TMP/err'"
check "script error prints nothing on stdout" out_is ""

printf 'local x = = 1\n' >"$TMP/syntax.lua"
run "$LUNET" "$TMP/syntax.lua" </dev/null
check "syntax error exits 1 naming file and line" \
	bash -c "[ $rc -eq 1 ] && grep -qE '^lunet: $TMP/syntax.lua:1: unexpected symbol near .=.' '$TMP/err'"

run "$LUNET" "$TMP/no_such_script.lua" </dev/null
check "missing script exits 1 with a clear message" \
	bash -c "[ $rc -eq 1 ] && grep -qx 'lunet: cannot open $TMP/no_such_script.lua: No such file or directory' '$TMP/err'"

printf 'os.exit(3)\n' >"$TMP/exit3.lua"
run "$LUNET" "$TMP/exit3.lua" </dev/null
check "os.exit code passes through" test "$rc" -eq 3

printf 'error(setmetatable({}, {__tostring = function() return "typed error" end}))\n' >"$TMP/obj.lua"
run "$LUNET" "$TMP/obj.lua" </dev/null
check "error object with __tostring" bash -c "[ $rc -eq 1 ] && grep -q '^lunet: typed error' '$TMP/err'"

# -i: the REPL after the script, on piped input: no banner.
printf 'v = 41\n' >"$TMP/setv.lua"
printf 'v + 1\n' >"$TMP/in"
run "$LUNET" -i "$TMP/setv.lua" <"$TMP/in"
check "-i enters the REPL after the script" bash -c "[ $rc -eq 0 ] && [ \"\$(cat '$TMP/out')\" = 42 ]"

# LUNET_INIT runs before the arguments; -E ignores it.
LUNET_INIT='init_ran = "yes"' run "$LUNET" -e 'print(init_ran)' </dev/null
check "LUNET_INIT runs first" out_is "yes"
LUNET_INIT='init_ran = "yes"' run "$LUNET" -E -e 'print(init_ran)' </dev/null
check "-E ignores LUNET_INIT" out_is "nil"
printf 'init_file = 7\n' >"$TMP/init.lua"
LUNET_INIT="@$TMP/init.lua" run "$LUNET" -e 'print(init_file)' </dev/null
check "LUNET_INIT=@file" out_is "7"

# ---- on a terminal ---------------------------------------------------------------

# Through a pseudo-terminal (script(1), from util-linux): banner, prompts,
# Tab completion of fields and methods, and the history file.
if command -v script >/dev/null; then
	mkdir -p "$TMP/home"
	printf '1+1\nlunet.on\t\nx = lunet.ones(2)\nx:resh\t(1,2):size(1)\n' >"$TMP/in"
	HOME="$TMP/home" timeout 60 script -qec "'$LUNET'" /dev/null <"$TMP/in" >"$TMP/tty" 2>"$TMP/err"
	rc=$?
	tr -d '\r' <"$TMP/tty" >"$TMP/out"
	check "tty: banner" out_has "^lunet $VERSION \(Lua 5\.4\.[0-9]+\)\$"
	check "tty: prompt and result" out_has '^> 1\+1$'
	check "tty: Tab completes lunet.on to lunet.ones" out_has '^function: (builtin: )?0x'
	check "tty: Tab completes a tensor method" out_has '^1$'
	check "tty: exit code 0 at end of input" test "$rc" -eq 0
	printf '%s\n' _HiStOrY_V2_ '1+1' lunet.ones 'x\040=\040lunet.ones(2)' 'x:reshape(1,2):size(1)' \
		>"$TMP/expected_history"
	check "tty: history saved in ~/.lunet_history" \
		cmp -s "$TMP/expected_history" "$TMP/home/.lunet_history"
	printf '2+3\n' >"$TMP/in"
	env -u HOME timeout 60 script -qec "'$LUNET'" /dev/null <"$TMP/in" >"$TMP/tty" 2>"$TMP/err"
	rc=$?
	tr -d '\r' <"$TMP/tty" >"$TMP/out"
	check "tty: works without HOME" bash -c "[ $rc -eq 0 ] && grep -qx 5 '$TMP/out'"
fi

# ---- Ctrl-C ------------------------------------------------------------------

# wait_for FILE PATTERN: polls until FILE holds PATTERN (30 s at most).
wait_for() {
	for _ in $(seq 300); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# wait_exit PID: waits for the process (30 s at most, then kills it) and
# sets rc to its exit status.
wait_exit() {
	for _ in $(seq 300); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$1" 2>/dev/null; then
		kill -KILL "$1"
		wait "$1" 2>/dev/null
		rc=999
	else
		wait "$1"
		rc=$?
	fi
}

# A running chunk is interrupted: "interrupted!", exit 1, no crash.
"$LUNET" -e 'io.write("ready\n") io.stdout:flush() while true do end' \
	</dev/null >"$TMP/out" 2>"$TMP/err" &
pid=$!
if wait_for "$TMP/out" ready; then
	kill -INT "$pid"
	wait_exit "$pid"
	check "SIGINT interrupts a running chunk" \
		bash -c "[ $rc -eq 1 ] && grep -q '^lunet: interrupted!' '$TMP/err'"
	check "SIGINT: one line, no traceback" test "$(wc -l <"$TMP/err")" -eq 1
else
	kill -KILL "$pid" 2>/dev/null
	rc=999
	fail "SIGINT test: lunet never started the loop"
fi

# In the REPL, the interrupted line fails and the session goes on.
mkfifo "$TMP/fifo"
"$LUNET" <"$TMP/fifo" >"$TMP/out" 2>"$TMP/err" &
pid=$!
exec 3<>"$TMP/fifo"
echo 'io.write("ready\n") io.stdout:flush() while true do end' >&3
if wait_for "$TMP/out" ready; then
	kill -INT "$pid"
	wait_for "$TMP/err" interrupted
	echo 'print("after")' >&3
	exec 3>&-
	wait_exit "$pid"
	check "SIGINT in the REPL: session goes on" \
		bash -c "[ $rc -eq 0 ] && grep -q 'interrupted!' '$TMP/err' &&
			[ \"\$(cat '$TMP/out')\" = \$'ready\nafter' ]"
else
	exec 3>&-
	kill -KILL "$pid" 2>/dev/null
	rc=999
	fail "REPL SIGINT test: lunet never started the loop"
fi

# ---- help in the REPL: the manual compiled in ---------------------------------

# help(x) prints the entry of a constructor, a name, an object and a
# method: its heading first, then its text, then where it is in docs/.
printf 'help(nn.Linear)\n' >"$TMP/in"
run "$LUNET" <"$TMP/in"
check "help(nn.Linear) prints its entry" \
	bash -c "head -n 1 '$TMP/out' | grep -q '^nn.Linear(nin, nout' && grep -q '(manual: docs/nn.md, Layers)' '$TMP/out'"
check "help(nn.Linear) prints its example" out_has 'nn.Linear\(3, 2\)'
check "help(nn.Linear) prints nothing on stderr" test ! -s "$TMP/err"
printf 'help("optim.SGD")\nhelp(lunet.zeros(2):reshape(2, 1))\nm = nn.Sequential{nn.ReLU()}\nhelp(m.forward)\n' >"$TMP/in"
run "$LUNET" <"$TMP/in"
check "help(\"optim.SGD\")" out_has '^optim.SGD\(model, \{lr='
check "help(tensor): the tensors page" out_has '^Tensors$'
check "help(m.forward): the method" out_has '^Module:forward\(x\)'

# help() lists the pages; an unknown name says so; help() lists the pages
# of docs/ as built.
printf 'help()\nhelp("nonesuch")\n' >"$TMP/in"
run "$LUNET" <"$TMP/in"
for page in "$SRC"/docs/*.md; do
	name=$(basename "$page" .md)
	[ "$name" = README ] && continue
	check "help() lists the page $name" out_has "^  $name +"
done
check "help(\"nonesuch\") says there is no entry" out_has "no manual entry for 'nonesuch'"

# A script's own `help` is left alone.
printf 'help\n' >"$TMP/in"
run "$LUNET" -e 'help = 42' -i <"$TMP/in"
check "a script's global help is kept" out_is "42"

finish
