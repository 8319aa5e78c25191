-- test_sys.lua -- lunet.sys: directories, processes (spawn, wait, kill,
-- children, sleep) and locks, and the errors of each.  The processes are
-- /bin/sh one-liners; nothing is timed (a child that must stay alive
-- sleeps, and is ended by a signal).
local lunet = lunet or require "lunet"
local sys = lunet.sys

local harness = dofile((arg[0]:match("^(.*)/") or ".") .. "/harness.lua")
local h = harness.new{}
local test, check, eq, raises = h.test, h.check, h.eq, h.raises
local read_file, write_file = h.read_file, h.write_file

local DIR, path = h.tempdir()

local function sorted(t)
	table.sort(t)
	return table.concat(t, " ")
end

-- ---- directories -----------------------------------------------------------------------

test("list_dir and file_type", function()
	sys.mkdir(path("d/sub"))
	write_file(path("d/a.txt"), "x")
	write_file(path("d/.hidden"), "y")
	eq(sorted(assert(sys.list_dir(path("d")))), ".hidden a.txt sub", "names, without . and ..")
	eq(sys.file_type(path("d")), "directory", "a directory")
	eq(sys.file_type(path("d/a.txt")), "file", "a file")
	eq(sys.file_type("/dev/null"), "other", "a device")
	local t, why = sys.file_type(path("nothing"))
	eq(t, nil, "nothing there")
	check(why:find("No such file", 1, true), why)
	local l, err = sys.list_dir(path("nothing"))
	eq(l, nil, "list_dir of nothing")
	eq(err, path("nothing") .. ": No such file or directory", "its message")
	l, err = sys.list_dir(path("d/a.txt"))
	check(l == nil and err:find("Not a directory", 1, true), "list_dir of a file")
	raises("lunet.sys.list_dir: path contains a NUL byte", sys.list_dir, "a\0b")
end)

-- ---- processes ---------------------------------------------------------------------

test("spawn: arguments, exit status, stdout and stderr to files", function()
	local pid = sys.spawn({"sh", "-c", 'echo "$1 $2"; echo oops >&2; exit 3', "sh", "two words", "x"},
		{stdout = path("out"), stderr = path("err")})
	check(math.type(pid) == "integer" and pid > 0, "a pid")
	local p, how, code = sys.wait(pid)
	eq(p, pid, "waited for it")
	eq(how, "exit", "it exited")
	eq(code, 3, "its status")
	eq(read_file(path("out")), "two words x\n", "stdout, arguments as given")
	eq(read_file(path("err")), "oops\n", "stderr")
end)

test("spawn: stdin is /dev/null unless given; append; one file for both streams", function()
	write_file(path("in"), "from the file\n")
	local pid = sys.spawn({"sh", "-c", "cat; echo done >&2"}, {stdout = path("both"), stderr = path("both")})
	sys.wait(pid)
	eq(read_file(path("both")), "done\n", "nothing read from /dev/null")
	pid = sys.spawn({"sh", "-c", "cat; echo end >&2"}, {stdin = path("in"), stdout = path("both"),
		stderr = path("both"), append = true})
	sys.wait(pid)
	eq(read_file(path("both")), "done\nfrom the file\nend\n", "appended, stdin from the file")
end)

test("spawn: env sets and removes variables; the rest is inherited", function()
	local pid = sys.spawn({"sh", "-c", 'echo "${LUNET_T1-unset} ${HOME-unset} ${PATH:+path}"'},
		{stdout = path("env"), env = {LUNET_T1 = "a=b c", HOME = false}})
	sys.wait(pid)
	eq(read_file(path("env")), "a=b c unset path\n", "set, removed, inherited")
end)

test("wait without a pid, nohang, children(), kill of a process group", function()
	eq(#sys.children(), 0, "no children yet")
	local a = sys.spawn({"sleep", "30"}, {group = true})
	local b = sys.spawn({"sh", "-c", "sleep 30 & wait"}, {group = true})
	eq(sorted(sys.children()), sorted{tostring(a), tostring(b)}, "both listed")
	local p, what = sys.wait(a, true)
	eq(p, nil, "nohang: nothing ended")
	eq(what, "running", "says running")
	check(sys.kill(a, 0), "kill 0: a is alive")
	check(sys.kill(-b, "TERM"), "the group of b")
	check(sys.kill(a, "INT"), "INT to a")
	local got = {}
	for _ = 1, 2 do
		local pid, how, sig = sys.wait()
		got[pid] = how .. " " .. sig
	end
	eq(got[a], "signal 2", "a ended by SIGINT")
	eq(got[b], "signal 15", "b's shell ended by SIGTERM")
	eq(#sys.children(), 0, "both collected")
	local ok, err = sys.kill(a, 0)
	eq(ok, false, "a is gone")
	eq(err, "No such process", "kill says why")
	local none, why = sys.wait()
	check(none == nil and why == "no child", "wait with no child")
end)

test("a child does not inherit an ignored SIGINT", function()
	-- sh ignores SIGINT, and so would the lunet it execs; the sleep that
	-- lunet spawns gets SIGINT's default action back, and ends on it.
	local code = [[
		local p = lunet.sys.spawn({"sleep", "30"})
		lunet.sys.kill(p, "INT")
		local _, how, sig = lunet.sys.wait(p)
		io.write(how, " ", sig)]]
	local pid = sys.spawn({"sh", "-c", 'trap "" INT; exec "$0" -e "$1"', sys.exe_path(), code},
		{stdout = path("sigint")})
	sys.wait(pid)
	eq(read_file(path("sigint")), "signal 2", "ended by SIGINT")
end)

test("spawn and kill refuse what they cannot do, naming it", function()
	raises("lunet.sys.spawn: cannot start '" .. path("nothing") .. "': No such file or directory",
		sys.spawn, {path("nothing")})
	raises("lunet.sys.spawn: cannot open '" .. path("no/such") .. "' for stdout: No such file or directory",
		sys.spawn, {"true"}, {stdout = path("no/such")})
	raises("lunet.sys.spawn: expected a list of strings (the program, then its arguments), got an empty table",
		sys.spawn, {})
	raises("lunet.sys.spawn: argv[2] must be a string, got number", sys.spawn, {"echo", 1})
	raises("lunet.sys.spawn: unknown option 'stdot'", sys.spawn, {"true"}, {stdot = "x"})
	raises("lunet.sys.spawn: env.X must be a string or false, got number", sys.spawn, {"true"}, {env = {X = 1}})
	raises("lunet.sys.spawn: bad environment variable name 'A=B'", sys.spawn, {"true"}, {env = {["A=B"] = "x"}})
	raises("lunet.sys.kill: pid must be a process id (or minus a process group's), got -1", sys.kill, -1, "INT")
	raises("lunet.sys.kill: pid must be a process id (or minus a process group's), got 0", sys.kill, 0, "INT")
	raises("lunet.sys.kill: unknown signal BOOM", sys.kill, sys.getpid(), "BOOM")
	raises("lunet.sys.wait: pid must be a process id > 0, got 0", sys.wait, 0)
	raises("lunet.sys.sleep: seconds must be in [0, 1e6]", sys.sleep, -1)
	eq(#sys.children(), 0, "no child left behind by the failures")
end)

test("sleep, getpid, hostname, ncpu, exe_path", function()
	eq(sys.sleep(0), true, "sleep 0")
	eq(sys.sleep(0.001), true, "a short sleep")
	check(math.type(sys.getpid()) == "integer" and sys.getpid() > 1, "pid")
	check(type(sys.hostname()) == "string" and #sys.hostname() > 0, "hostname")
	check(math.type(sys.ncpu()) == "integer" and sys.ncpu() >= 1, "ncpu")
	check(sys.exe_path():find("lunet$"), "the runner: " .. tostring(sys.exe_path()))
end)

-- ---- locks -----------------------------------------------------------------------------

test("lock: exclusive, with the holder's text; released by unlock, close and exit", function()
	local file = path("lock")
	eq(sys.locked(file), false, "no file: not locked")
	local l = sys.lock(file, {text = "me@here\n"})
	eq(read_file(file), "me@here\n", "the text")
	local held, text = sys.locked(file)
	check(held == true and text == "me@here\n", "locked, with its text")
	local again, holder = sys.lock(file)
	check(again == false and holder == "me@here\n", "a second lock is refused with the holder's text")
	l:unlock()
	l:unlock()  -- twice: nothing
	eq(sys.locked(file), false, "unlocked")
	eq(sys.file_type(file), "file", "the file stays")
	do
		local l2 <close> = sys.lock(file)
		check(sys.locked(file), "held in the block")
	end
	eq(sys.locked(file), false, "released on leaving the block")
	local l3 = sys.lock(file, {text = "x"})
	l3:unlock(true)
	eq(sys.file_type(file), nil, "unlock(true) deletes the file")
	-- Another process: held while it lives, released when it is killed.
	local pid = sys.spawn({sys.exe_path(), "-e", string.format(
		"local l = lunet.sys.lock(%q, {text = 'child'}); io.stdout:write('ready\\n'); io.stdout:flush(); " ..
		"while true do lunet.sys.sleep(1) end", file)}, {stdout = path("child"), group = true})
	while not (read_file(path("child")) or ""):find("ready") do sys.sleep(0.01) end
	local ok, txt = sys.locked(file)
	check(ok and txt == "child", "the child holds it")
	eq(sys.lock(file), false, "so it cannot be taken")
	sys.kill(-pid, "KILL")
	sys.wait(pid)
	eq(sys.locked(file), false, "the kernel released it")
	raises("lunet.sys.lock: " .. path("no/dir") .. ": No such file or directory", sys.lock, path("no/dir"))
	raises("lunet.sys.lock: unknown option 'wiat'", sys.lock, file, {wiat = true})
end)

test("lock with wait: blocks until the holder lets go", function()
	local file = path("lockw")
	local l = sys.lock(file)
	local pid = sys.spawn({sys.exe_path(), "-e", string.format([[
		io.stdout:write("trying\n") io.stdout:flush()
		local l = lunet.sys.lock(%q, {wait = true})
		io.stdout:write(l and "got\n" or "refused\n")]], file)}, {stdout = path("childw")})
	while not (read_file(path("childw")) or ""):find("trying") do sys.sleep(0.01) end
	sys.sleep(0.05)
	eq(sys.wait(pid, true), nil, "the child waits while the lock is held")
	l:unlock()
	local _, how, code = sys.wait(pid)
	eq(how .. " " .. code, "exit 0", "the child ended")
	eq(read_file(path("childw")), "trying\ngot\n", "and got the lock")
end)

os.execute("rm -rf '" .. DIR .. "'")
h.done()
