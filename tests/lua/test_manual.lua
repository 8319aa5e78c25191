-- test_manual.lua -- the manual (docs/, compiled in) against the code:
--   - every public name of the lunet table and of the classes' method
--     tables has an entry (the list of those that lack one is the
--     failure), and no name has two;
--   - lunet.help finds the entry of every public function, of objects
--     and of names given as strings, and lists the pages;
--   - the pages compiled in are those of docs/, each listed in
--     docs/README.md;
--   - tests/docs/check_examples.lua fails on every kind of stale example
--     (tests/docs/stale.md) and passes good ones (tests/docs/fresh.md).
local harness = dofile((arg[0]:match("^(.*)/") or ".") .. "/harness.lua")
local h = harness.new{seed = 1234}
local test, check, eq = h.test, h.check, h.eq

local manual = lunet._manual
local here = arg[0]:match("^(.*)/") or "."
local SRC = here .. "/../.."
local BUILD = os.getenv("LUNET_BUILD_DIR")

-- Names that are public but have no entry yet.  Keep it empty: document a
-- name instead of listing it here (docs/README.md says how); a name that
-- is internal begins with '_'.
local UNDOCUMENTED = {}

local function contains(s, needle)
	return s:find(needle, 1, true) ~= nil
end

-- ---- every public name is documented ------------------------------------------------------

test("every public name has an entry in the manual", function()
	local documented = manual.entries()
	local missing = {}
	for _, p in ipairs(manual.public_names()) do
		if not documented[p.name] and not UNDOCUMENTED[p.name] then
			missing[#missing + 1] = p.name
		end
	end
	if #missing > 0 then
		error(string.format("%d public name(s) have no entry in docs/ (add a ### heading naming " ..
			"each, with an example; docs/README.md says how):\n  %s", #missing,
			table.concat(missing, "\n  ")), 0)
	end
end)

test("the allow-list of undocumented names holds only names that lack an entry", function()
	local documented = manual.entries()
	local public = {}
	for _, p in ipairs(manual.public_names()) do public[p.name] = true end
	for name in pairs(UNDOCUMENTED) do
		check(public[name], name .. " is listed as undocumented but is not public")
		check(not documented[name], name .. " is listed as undocumented but has an entry")
	end
end)

test("every class of objects with methods is found", function()
	local classes = manual.classes()
	for _, c in ipairs(manual.CLASSES) do
		check(next(classes[c[1]]) ~= nil, "no methods found for the class " .. c[1] ..
			" (lua/lunet/help.lua, CLASSES)")
	end
	check(type(classes.Tensor.reshape) == "function", "Tensor:reshape")
	check(type(classes.Module.forward) == "function", "Module:forward")
	check(type(classes.Optimizer.step) == "function", "Optimizer:step")
	check(type(classes.Experiment.log) == "function", "Experiment:log")
	check(type(classes.Request.wait) == "function", "Request:wait")
end)

test("the walk of public names leaves out internal names and finds nested ones", function()
	local names = {}
	for _, p in ipairs(manual.public_names()) do names[p.name] = true end
	check(names["lunet.zeros"] and names["nn.Linear"] and names["nn.init.xavier"], "top and nested names")
	check(names["optim.schedules.cosine"] and names["data.batches"] and names["sys.mkdir"], "sub-tables")
	check(names["Tensor:reshape"] and names["Module:backward"] and names["Loss:forward"], "methods")
	check(not names["lunet._optionerror"] and not names["Tensor:__add"], "internal names and metamethods")
	for name in pairs(names) do
		check(not name:find("[.:]_"), "an internal name was listed: " .. name)
	end
end)

test("no name has two entries", function()
	local seen, dup = {}, {}
	for _, page in ipairs(manual.pages()) do
		for _, e in ipairs(page.entries) do
			for _, n in ipairs(e.names) do
				local where = page.name .. ".md:" .. e.line
				if seen[n] then dup[#dup + 1] = n .. " (" .. seen[n] .. " and " .. where .. ")" end
				seen[n] = where
			end
		end
	end
	check(#dup == 0, "names with two entries: " .. table.concat(dup, ", "))
end)

test("heading names: qualified names and C functions, not plain calls", function()
	local names = manual.heading_names("`nn.Linear(nin, nout[, {bias=true}])`, `lunet.zeros{d1, ...}`")
	eq(table.concat(names, " "), "nn.Linear lunet.zeros", "names")
	eq(table.concat(manual.heading_names("`lunet.nn.ReLU()`, `Tensor:t()`"), " "), "nn.ReLU Tensor:t",
		"normalized")
	eq(table.concat(manual.heading_names("`lunet_model_free(model)`, `tostring(t)`, `m(x)`, `a + b`"), " "),
		"lunet_model_free", "C functions only")
end)

-- ---- help ---------------------------------------------------------------------------------

test("help finds the entry of every public function", function()
	for _, p in ipairs(manual.public_names()) do
		if type(p.value) == "function" then
			local text = manual.text(p.value)
			check(not text:find("^no manual entry"), "help(" .. p.name .. "): " .. text)
			check(contains(text, "(manual: docs/"), "help(" .. p.name .. ") printed no entry: " .. text)
		end
	end
end)

test("help of a module constructor prints its heading and example", function()
	local text = manual.text(nn.Linear)
	check(text:find("^nn%.Linear%(nin, nout"), text)
	check(contains(text, "nn.Linear(3, 2)"), "the example")
	check(contains(text, "(manual: docs/nn.md, Layers)"), "where it is")
	check(not contains(text, "`") and not contains(text, "###"), "rendered without markup")
end)

test("help of objects prints their class's entry", function()
	check(manual.text(nn.Linear(2, 2)):find("^nn%.Linear"), "a layer")
	check(manual.text(nn.Sequential{nn.ReLU()}):find("^nn%.Sequential"), "a container")
	check(manual.text(nn.MSELoss()):find("^nn%.MSELoss"), "a loss")
	check(manual.text(optim.Adam(nn.Linear(1, 1))):find("^optim%.Adam"), "an optimiser")
	check(manual.text(lunet.zeros(1)):find("^Tensors"), "a tensor: the page")
	check(manual.text(lunet.zeros(1).reshape):find("^Tensor:reshape"), "a method")
	check(manual.text(nn.Linear(1, 1).forward):find("^Module:forward"), "a module method")
	check(manual.text(nn):find("^Modules"), "a namespace: its page")
end)

test("help of names", function()
	check(manual.text("optim.SGD"):find("^optim%.SGD"), "qualified")
	check(manual.text("lunet.nn.Linear"):find("^nn%.Linear"), "with lunet.")
	check(manual.text("SGD"):find("^optim%.SGD"), "short")
	check(manual.text("Tensor.reshape"):find("^Tensor:reshape"), "'.' for ':'")
	check(manual.text("nn.Linear(3, 2)"):find("^nn%.Linear"), "with arguments")
	check(manual.text("lunet_model_load"):find("^lunet_model_load"), "a C function")
	check(contains(manual.text("forward"), "several entries"), "ambiguous: " .. manual.text("forward"))
	check(contains(manual.text("nn.init"), "nn.init.xavier"), "a namespace lists its names")
	check(manual.text("optim"):find("^Optimisers"), "a page")
	check(contains(manual.text("no_such_thing"), "no manual entry for 'no_such_thing'"), "unknown")
	check(contains(manual.text("Linea"), "nn.Linear"), "suggestions")
	check(contains(manual.text(nil), "got nil"), "nil")
	check(contains(manual.text(42), "no manual entry"), "a number")
end)

test("help() lists every page", function()
	local text = manual.text()
	for _, page in ipairs(manual.pages()) do
		check(contains(text, page.name), "help() lacks " .. page.name)
	end
end)

test("lunet.help prints what text gives", function()
	local path = os.tmpname()
	local f = assert(io.open(path, "w"))
	local saved = io.output()
	io.output(f)
	lunet.help("lunet.zeros")
	io.output(saved)
	f:close()
	local printed = h.read_file(path)
	os.remove(path)
	eq(printed, manual.text("lunet.zeros"), "printed")
end)

-- ---- the pages -----------------------------------------------------------------------------

test("the pages compiled in are docs/*.md, each listed in docs/README.md", function()
	local readme = h.read_file(SRC .. "/docs/README.md")
	local p = io.popen("ls '" .. SRC .. "/docs'")
	local files = {}
	for name in p:lines() do
		local page = name:match("^(.*)%.md$")
		if page and page ~= "README" then files[page] = true end
	end
	p:close()
	local compiled = {}
	for _, page in ipairs(manual.pages()) do
		compiled[page.name] = true
		check(files[page.name], page.name .. " is compiled in but not in docs/")
		check(contains(readme, "(" .. page.name .. ".md)"), "docs/README.md does not link " .. page.name)
		check(page.title ~= page.name, page.name .. ".md has no # title")
		check(#page.entries > 0, page.name .. ".md has no entries")
	end
	for name in pairs(files) do
		check(compiled[name], "docs/" .. name .. ".md is not compiled in (rebuild?)")
	end
end)

test("README.md links the manual", function()
	check(contains(h.read_file(SRC .. "/README.md"), "docs/README.md"), "README.md has no link to docs/")
end)

-- ---- the example checker can fail ------------------------------------------------------------

local function check_examples(page)
	local cmd = string.format("'%s/lunet' '%s/tests/docs/check_examples.lua' '%s' '%s' '%s' 2>&1",
		BUILD, SRC, BUILD, SRC, SRC .. "/tests/docs/" .. page)
	local p = assert(io.popen(cmd))
	local out = p:read("a")
	local ok = p:close()
	return ok, out
end

if BUILD then
	test("check_examples.lua reports every stale example", function()
		local ok, out = check_examples("stale.md")
		check(not ok, "exit status 0 on stale examples:\n" .. out)
		check(contains(out, "10 examples run, 10 failed, 0 not run"), out)
		for _, want in ipairs{"--> expected {3, 2}", "got no error", "sizes must be positive",
			"output differs", "expected input of shape {N,3}", "is not an expression",
			"does not agree with lunet.h"} do
			check(contains(out, want), "no report of: " .. want .. "\n" .. out)
		end
	end)

	test("check_examples.lua passes good examples and skips norun", function()
		local ok, out = check_examples("fresh.md")
		check(ok, out)
		check(contains(out, "5 examples run, 0 failed, 1 not run"), out)
	end)
else
	h.skip("check_examples.lua on stale and fresh examples", "LUNET_BUILD_DIR is not set")
end

h.done()
