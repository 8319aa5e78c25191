-- harness.lua -- the small harness shared by the Lua tests: test() runs one
-- case under pcall and counts it, check/eq/near/truthy/same assert, check_error
-- and raises expect an error carrying given text, and done() prints
-- "N passed, M failed" and raises if any failed, so the runner exits
-- non-zero.  read_file, write_file and tempdir help tests that use files.
--
-- Its name does not match test_*.lua, so CTest does not run it alone.  A
-- test loads it relative to its own path, which works from any directory:
--
--   local harness = dofile((arg[0]:match("^(.*)/") or ".") .. "/harness.lua")
--   local h = harness.new{seed = 1234, reseed = true}
--   local test, check = h.test, h.check
--   test("something", function() check(1 + 1 == 2, "arithmetic") end)
--   h.done()
--
-- Assertions raise at level 2, so a failure names the line of the test
-- that called them.

local M = {}

-- ---- assertions -----------------------------------------------------------------

-- check(cond, msg): fails with msg ("check failed" if none) unless cond.
function M.check(cond, msg)
	if not cond then
		error(msg or "check failed", 2)
	end
end

-- truthy(v, what): fails with "<what> is false" unless v.
function M.truthy(v, what)
	if not v then error((what or "condition") .. " is false", 2) end
end

-- eq(got, want, what): got == want (raw equality).
function M.eq(got, want, what)
	if got ~= want then
		error(string.format("%s: expected %s, got %s", what or "value", tostring(want),
			tostring(got)), 2)
	end
end

-- near(got, want, tol, what): got is a number within tol (1e-6 if nil)
-- of want, relative to max(1, |want|).
function M.near(got, want, tol, what)
	tol = tol or 1e-6
	if type(got) ~= "number" or not (math.abs(got - want) <= tol * math.max(1, math.abs(want))) then
		error(string.format("%s: expected %.9g, got %s", what or "value", want, tostring(got)), 2)
	end
end

-- same(got, want, tol, path): got, nested tables of numbers, matches want
-- entry by entry (a tensor's totable(), say): the same nesting and
-- lengths, each number within tol (0 if nil) of want relative to
-- max(1, |want|); a NaN in want asks for a NaN.  A failure names the
-- path ("at [2][1]").
function M.same(got, want, tol, path)
	path = path or ""
	if type(want) == "table" then
		if type(got) ~= "table" then error("at " .. path .. ": expected a table, got " .. type(got), 2) end
		if #got ~= #want then
			error(string.format("at %s: expected %d elements, got %d", path, #want, #got), 2)
		end
		for i = 1, #want do M.same(got[i], want[i], tol, path .. "[" .. i .. "]") end
	else
		if type(got) ~= "number" then error("at " .. path .. ": expected a number, got " .. type(got), 2) end
		if want ~= want then
			if got == got then error("at " .. path .. ": expected nan, got " .. got, 2) end
		elseif not (got == want or math.abs(got - want) <= (tol or 0) * math.max(1, math.abs(want))) then
			error(string.format("at %s: expected %.9g, got %.9g", path, want, got), 2)
		end
	end
end

-- check_error(fn, ...): calls fn() with no arguments and expects an error
-- whose message contains every string given (plain find, not a pattern).
-- Returns the message.
function M.check_error(fn, ...)
	local ok, err = pcall(fn)
	if ok then error("expected an error, got none", 2) end
	err = tostring(err)
	for _, want in ipairs{...} do
		if not err:find(want, 1, true) then
			error(string.format("error message %q lacks %q", err, want), 2)
		end
	end
	return err
end

-- raises(want, fn, ...): calls fn(...) with the arguments given and
-- expects an error whose message contains want (plain find).  Returns
-- the message.
function M.raises(want, fn, ...)
	local ok, err = pcall(fn, ...)
	if ok then error(string.format("expected an error containing %q, got success", want), 2) end
	err = tostring(err)
	if not err:find(want, 1, true) then
		error(string.format("expected an error containing %q, got %q", want, err), 2)
	end
	return err
end

-- ---- files ---------------------------------------------------------------------

-- read_file(path) -> its bytes; write_file(path, s) replaces them.
function M.read_file(path)
	local f = assert(io.open(path, "rb"))
	local s = f:read("a")
	f:close()
	return s
end

function M.write_file(path, s)
	local f = assert(io.open(path, "wb"))
	f:write(s)
	f:close()
end

-- tempdir() -> a new empty directory and a function giving the path of a
-- name in it; the caller removes it (os.execute("rm -rf '" .. dir .. "'")).
function M.tempdir()
	local dir = os.tmpname()
	os.remove(dir)
	assert(os.execute("mkdir -p '" .. dir .. "'"))
	return dir, function(name) return dir .. "/" .. name end
end

-- ---- a suite: counting, seeding, the closing line -------------------------------

-- new(opts) -> a table with the assertions above and
--   test(name, fn)  runs fn under pcall, counts it, and reports a failure
--                   on stderr as "FAIL <name> (seed <seed>): <message>";
--   skip(name, why) counts a test that cannot run here and says why;
--   done()          prints "N passed, M failed" (and "(K skipped)") and
--                   raises "M test(s) failed (seed <seed>)" if M > 0.
-- opts.seed: the seed of lunet's generator, named in every failure.  It is
--   set once, now, or with opts.reseed = true before every test instead
--   (then each test sees the same stream whatever ran before it).
function M.new(opts)
	opts = opts or {}
	local seed, reseed = opts.seed, opts.reseed
	assert(not reseed or seed, "harness.new: reseed needs a seed")
	local lunet = lunet or require "lunet"
	if seed and not reseed then
		lunet.seed(seed)
	end
	local at = seed and string.format(" (seed %d)", seed) or ""
	local passed, failed, skipped = 0, 0, 0

	local h = {}
	for k, v in pairs(M) do
		if k ~= "new" then h[k] = v end
	end

	function h.test(name, fn)
		if reseed then
			lunet.seed(seed)
		end
		local ok, err = pcall(fn)
		if ok then
			passed = passed + 1
		else
			failed = failed + 1
			io.stdout:flush()
			io.stderr:write(string.format("FAIL %s%s: %s\n", name, at, tostring(err)))
		end
	end

	function h.skip(name, why)
		skipped = skipped + 1
		print("skip " .. name .. ": " .. why)
	end

	function h.done()
		print(string.format("%d passed, %d failed%s", passed, failed,
			skipped > 0 and string.format(" (%d skipped)", skipped) or ""))
		if failed > 0 then
			error(string.format("%d test(s) failed%s", failed, at), 0)
		end
	end

	return h
end

return M
