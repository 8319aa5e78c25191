-- test_bench.lua -- the measuring hooks of src/lua/lbench.c that the
-- benchmark (experiments/bench) relies on: lunet.alloc_stats,
-- lunet.bench_gemm, lunet.bench_fma, lunet.gemm_threads, lunet.gemm_impl,
-- with their errors.  No timing is asserted, only what the values must be.
local lunet = lunet or require "lunet"
local nn, optim = lunet.nn, lunet.optim

local SEED = 31337
lunet.seed(SEED)

local passed, failed = 0, 0

local function test(name, fn)
	local ok, err = pcall(fn)
	if ok then
		passed = passed + 1
	else
		failed = failed + 1
		print(string.format("FAIL %s: %s (seed %d)", name, tostring(err), SEED))
	end
end

local function eq(got, want, what)
	if got ~= want then
		error(string.format("%s: expected %s, got %s", what or "value", tostring(want), tostring(got)), 2)
	end
end

local function fails_with(want, fn, ...)
	local ok, err = pcall(fn, ...)
	if ok then error("expected an error containing '" .. want .. "', got success", 2) end
	if not tostring(err):find(want, 1, true) then
		error("expected an error containing '" .. want .. "', got '" .. tostring(err) .. "'", 2)
	end
end

test("alloc_stats has the five counters as integers", function()
	local s = lunet.alloc_stats()
	for _, k in ipairs{"allocs", "frees", "failures", "bytes_live", "bytes_peak"} do
		eq(math.type(s[k]), "integer", k)
		assert(s[k] >= 0, k .. " is negative")
	end
	assert(s.bytes_peak >= s.bytes_live, "bytes_peak < bytes_live")
	assert(s.allocs >= s.frees, "more frees than allocations")
end)

test("alloc_stats counts a tensor's storage and its release", function()
	local before = lunet.alloc_stats()
	local t <close> = lunet.zeros(1000)
	local mid = lunet.alloc_stats()
	assert(mid.allocs > before.allocs, "creating a tensor made no allocation")
	assert(mid.bytes_live >= before.bytes_live + 4000,
		string.format("bytes_live grew by %d, expected >= 4000", mid.bytes_live - before.bytes_live))
	t:close()
	local after = lunet.alloc_stats()
	assert(after.frees > mid.frees, "closing the tensor freed nothing")
	eq(after.bytes_live, before.bytes_live, "bytes_live after close")
end)

test("reading the counters does not change them", function()
	local a = lunet.alloc_stats()
	local b = lunet.alloc_stats()
	eq(b.allocs, a.allocs, "allocs")
	eq(b.frees, a.frees, "frees")
end)

test("a steady-state training step allocates nothing", function()
	local model = nn.Sequential{nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)}
	local crit = nn.CrossEntropyLoss()
	local opt = optim.SGD(model, {lr = 0.1, momentum = 0.9})
	local x, y = lunet.randn(5, 4), lunet.tensor{1, 2, 1, 2, 2}
	local function step()
		opt:zero_grad()
		local z = model:forward(x)
		crit:forward(z, y)
		model:backward(x, crit:backward(z, y))
		opt:step()
	end
	step()
	local a = lunet.alloc_stats()
	for _ = 1, 5 do step() end
	eq(lunet.alloc_stats().allocs - a.allocs, 0, "allocations in 5 steady-state steps")
end)

test("bench_gemm returns seconds and GFLOP/s, and frees its buffers", function()
	-- the collector must not free earlier tests' tensors in the middle of
	-- the count
	collectgarbage()
	collectgarbage("stop")
	local before = lunet.alloc_stats()
	for _, tr in ipairs{{false, false}, {true, false}, {false, true}, {true, true}} do
		local s, gf = lunet.bench_gemm(7, 5, 3, tr[1], tr[2], 4, 1)
		eq(type(s), "number", "seconds")
		assert(s >= 0, "negative time")
		assert(gf >= 0, "negative GFLOP/s")
	end
	local s = lunet.bench_gemm(1, 1, 1)   -- defaults: no transposes, 10 iterations, beta 0
	assert(s >= 0)
	local after = lunet.alloc_stats()
	collectgarbage("restart")
	eq(after.bytes_live, before.bytes_live, "bytes_live after bench_gemm")
	eq(after.allocs - before.allocs, after.frees - before.frees, "allocations not freed")
end)

test("bench_gemm GFLOP/s is 2*m*n*k*iters / seconds", function()
	local m, n, k, iters = 32, 16, 8, 20
	local s, gf = lunet.bench_gemm(m, n, k, false, false, iters)
	if s > 0 then
		local want = 2 * m * n * k * iters / s * 1e-9
		assert(math.abs(gf - want) <= 1e-9 * want + 1e-12,
			string.format("GFLOP/s %.9g, expected %.9g", gf, want))
	end
end)

test("bench_gemm errors name the function and the value", function()
	fails_with("lunet.bench_gemm: expected 1 <= m <= 2147483647, got 0", lunet.bench_gemm, 0, 1, 1)
	fails_with("lunet.bench_gemm: expected 1 <= n <= 2147483647, got -3", lunet.bench_gemm, 1, -3, 1)
	fails_with("lunet.bench_gemm: expected 1 <= k <= 2147483647, got 2147483648", lunet.bench_gemm,
		1, 1, 2147483648)
	fails_with("lunet.bench_gemm: expected iters >= 1, got 0", lunet.bench_gemm, 1, 1, 1, false, false, 0)
	fails_with("lunet.bench_gemm: expected a finite beta", lunet.bench_gemm, 1, 1, 1, false, false, 1,
		0 / 0)
	fails_with("exceeds the allocation limit", lunet.bench_gemm, 2147483647, 2147483647, 1)
	fails_with("number expected", lunet.bench_gemm, "x", 1, 1)
end)

test("gemm_threads reports and sets the matrix library's threads", function()
	local n = lunet.gemm_threads()
	eq(math.type(n), "integer", "gemm_threads()")
	assert(n >= 1, "gemm_threads() < 1")
	eq(lunet.gemm_threads(1), 1, "gemm_threads(1)")
	eq(lunet.gemm_threads(n), n, "gemm_threads restored")
	fails_with("lunet.gemm_threads: expected 1 <= n <= 1024, got 0", lunet.gemm_threads, 0)
end)

test("gemm_impl reports, selects and rejects implementations", function()
	local was = lunet.gemm_impl()
	eq(type(was), "string", "gemm_impl()")
	eq(lunet.gemm_impl("blas"), "openblas", "gemm_impl('blas')")
	local auto = lunet.gemm_impl("auto")
	eq(auto:sub(1, 4), "auto", "gemm_impl('auto')")
	fails_with('lunet.gemm_impl: expected impl "auto", "blas", "avx512" or "avx2", got "fast"',
		lunet.gemm_impl, "fast")
	eq(lunet.gemm_impl(), auto, "gemm_impl after a rejected name")
	-- back to what the build chose ("auto (...)" or "openblas")
	lunet.gemm_impl(was == "openblas" and "blas" or "auto")
	eq(lunet.gemm_impl(), was, "gemm_impl restored")
end)

test("bench_gemm with impl times that code and restores the setting", function()
	local was = lunet.gemm_impl()
	local s = lunet.bench_gemm(40, 30, 20, false, true, 3, 0, "blas")
	assert(s >= 0)
	eq(lunet.gemm_impl(), was, "gemm_impl after bench_gemm(..., 'blas')")
	fails_with('lunet.bench_gemm: expected impl "auto", "blas", "avx512" or "avx2", got "gpu"',
		lunet.bench_gemm, 4, 4, 4, false, false, 1, 0, "gpu")
	eq(lunet.gemm_impl(), was, "gemm_impl after a rejected impl")
end)

test("bench_fma returns seconds and GFLOP/s = 2*12*lanes*iters / seconds", function()
	local ran = 0
	for isa, lanes in pairs{avx512 = 16, avx2 = 8} do
		local ok, s, gf = pcall(lunet.bench_fma, isa, 2000)
		if ok then
			ran = ran + 1
			eq(type(s), "number", isa .. " seconds")
			assert(s >= 0 and gf >= 0, isa .. ": negative time or GFLOP/s")
			if s > 0 then
				local want = 2 * 12 * lanes * 2000 / s * 1e-9
				assert(math.abs(gf - want) <= 1e-9 * want,
					string.format("%s GFLOP/s %.9g, expected %.9g", isa, gf, want))
			end
		else
			-- the only acceptable failure: the CPU lacks the instruction set
			local want = isa == "avx512" and "lunet.bench_fma: this CPU has no AVX-512"
				or "lunet.bench_fma: this CPU has no AVX2 and FMA"
			eq(s, want, isa .. " error")
		end
	end
	-- an x86-64 machine with neither runs no vector FMA at all; say so
	if ran == 0 then print("note: bench_fma: neither AVX-512 nor AVX2 on this CPU") end
end)

test("bench_fma allocates nothing", function()
	local before = lunet.alloc_stats()
	pcall(lunet.bench_fma, "avx2", 100)
	pcall(lunet.bench_fma, "avx512", 100)
	eq(lunet.alloc_stats().allocs, before.allocs, "allocations")
end)

test("bench_fma errors name the function and the value", function()
	fails_with('lunet.bench_fma: expected isa "avx512" or "avx2", got "sse"', lunet.bench_fma, "sse")
	fails_with("lunet.bench_fma: expected iters >= 1, got 0", lunet.bench_fma, "avx2", 0)
	fails_with("lunet.bench_fma: expected iters >= 1, got -5", lunet.bench_fma, "avx512", -5)
	fails_with("number has no integer representation", lunet.bench_fma, "avx2", 1.5)
	fails_with("string expected", lunet.bench_fma)
end)

print(string.format("%d passed, %d failed", passed, failed))
if failed > 0 then error(failed .. " test(s) failed", 0) end
