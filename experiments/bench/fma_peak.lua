-- fma_peak.lua -- the single-precision FMA peak of one core, measured,
-- the ceiling the report's "fraction of the FMA peak" divides by.
--
--   lunet experiments/bench/fma_peak.lua [TRIES]
--
-- For each of AVX-512 and AVX2, lunet.bench_fma (src/core/peak.c: twelve
-- independent chains of vector fused multiply-adds on the calling thread,
-- timed in that thread's processor time, so that other processes taking
-- turns on the core do not lower it) runs TRIES times (default 5) for
-- about 0.1 s each, and the best is kept.  Prints
--
--   FACT fma_avx512_gflops=...     (or =unsupported on a CPU without it)
--   FACT fma_avx2_gflops=...
local lunet = lunet or require "lunet"

local tries = tonumber(arg[1] or "5")
if not tries or tries < 1 or tries % 1 ~= 0 then
	io.stderr:write("usage: lunet fma_peak.lua [TRIES]\n")
	os.exit(2)
end

for _, isa in ipairs{"avx512", "avx2"} do
	local ok, s = pcall(lunet.bench_fma, isa, 100000)
	if not ok then
		-- only a CPU without the instruction set is expected here
		assert(tostring(s):find("this CPU has no", 1, true), s)
		print(string.format("FACT fma_%s_gflops=unsupported", isa))
	else
		-- rounds for ~0.1 s, from the short probe
		local iters = math.max(100000, math.floor(100000 * 0.1 / math.max(s, 1e-6)))
		local best = 0
		for _ = 1, tries do
			local _, gflops = lunet.bench_fma(isa, iters)
			best = math.max(best, gflops)
		end
		print(string.format("FACT fma_%s_gflops=%.2f", isa, best))
	end
end
