-- plot.lua -- line charts of logged metrics as SVG text.  A helper for the
-- other embedded scripts (`local plot = import("plot")`); it adds nothing
-- to the lunet table and writes no file: callers decide where the text
-- goes (a .svg file, or inline in a page).
--
--   local s = plot.series(rows, "loss", {"step", "epoch"})
--   if s then write(plot.file_name("loss"), plot.svg_document{title = "loss",
--     xlabel = s.xkey, ylabel = "loss", x = s.x, y = s.y, integer_x = s.integer_x}) end
local M = {}

-- ---- data -----------------------------------------------------------------------

local function finite(v)
	return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge
end

-- plot.series(rows, key, xkeys) -> {x=, y=, xkey=, integer_x=}, or nil when
-- no row holds a finite number for key.  The rows considered are those
-- with a value for key (a string in one of them does not stop the others
-- being plotted; nan and infinities are left out).  x is the first of
-- xkeys (in order of preference) that every such row holds as a number,
-- else the rank of the row among them (xkey "row").  integer_x says that
-- every x is a whole number, so that ticks fall on whole numbers.
function M.series(rows, key, xkeys)
	local with, numeric = {}, false
	for _, r in ipairs(rows) do
		local v = r[key]
		if v ~= nil then
			with[#with + 1] = r
			if type(v) == "number" then numeric = true end
		end
	end
	if not numeric then return nil end
	local xkey
	for _, k in ipairs(xkeys) do
		local all = true
		for _, r in ipairs(with) do
			if type(r[k]) ~= "number" then all = false break end
		end
		if all then xkey = k break end
	end
	local xs, ys, integer_x = {}, {}, true
	for i, r in ipairs(with) do
		local x, y = xkey and r[xkey] or i, r[key]
		if finite(x) and finite(y) then
			xs[#xs + 1], ys[#ys + 1] = x, y
			if math.type(x) ~= "integer" and x ~= math.floor(x) then integer_x = false end
		end
	end
	if #xs == 0 then return nil end
	return {x = xs, y = ys, xkey = xkey or "row", integer_x = integer_x}
end

-- The name of the SVG file for a metric: characters other than letters,
-- digits, '_', '.' and '-' become '_'.
function M.file_name(key)
	return (key:gsub("[^%w_%.%-]", "_")) .. ".svg"
end

-- ---- drawing ----------------------------------------------------------------------

local function xml_escape(s)
	return (tostring(s):gsub("[&<>\"]", {["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
		['"'] = "&quot;"}))
end

-- Tick positions for [lo, hi]: about `count` steps of 1, 2 or 5 times a
-- power of ten (at least 1 when integer_only), covering the range.
-- Returns the ticks and the range they cover.
local function nice_ticks(lo, hi, count, integer_only)
	if hi - lo < 1e-12 * math.max(math.abs(lo), math.abs(hi), 1e-300) then
		local d = lo == 0 and 1 or math.abs(lo) * 0.1
		if integer_only then d = math.max(1, math.ceil(d)) end
		lo, hi = lo - d, hi + d
	end
	local raw = (hi - lo) / count
	local step = 10 ^ math.floor(math.log(raw, 10))
	local r = raw / step
	if r >= 7.5 then step = step * 10 elseif r >= 3.5 then step = step * 5
	elseif r >= 1.5 then step = step * 2 end
	if integer_only and step < 1 then step = 1 end
	local first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
	local ticks = {}
	for k = first, last do ticks[#ticks + 1] = k * step end
	return ticks, first * step, last * step
end

local function tick_label(v)
	if math.abs(v) < 1e-12 then return "0" end
	return (string.format("%.6g", v))
end

local function fmt(v) return string.format("%.2f", v) end

-- plot.svg(chart) -> the <svg> element of one line chart, 640x400, for a
-- file or to put inline in an HTML page.  chart = {title=, xlabel=,
-- ylabel=, x = {...}, y = {...}, integer_x=}: x and y are lists of finite
-- numbers of the same length, at least one.
function M.svg(chart)
	local xs, ys = chart.x, chart.y
	local W, H = 640, 400
	local L, R, T, B = 72, 24, 40, 56   -- margins
	local xmin, xmax, ymin, ymax = math.huge, -math.huge, math.huge, -math.huge
	for i = 1, #xs do
		xmin, xmax = math.min(xmin, xs[i]), math.max(xmax, xs[i])
		ymin, ymax = math.min(ymin, ys[i]), math.max(ymax, ys[i])
	end
	local xt, x0, x1 = nice_ticks(xmin, xmax, 6, chart.integer_x)
	local yt, y0, y1 = nice_ticks(ymin, ymax, 5, false)
	local function px(x) return L + (x - x0) / (x1 - x0) * (W - L - R) end
	local function py(y) return H - B - (y - y0) / (y1 - y0) * (H - T - B) end
	local o = {}
	o[#o + 1] = string.format('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
		.. 'viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">', W, H, W, H)
	o[#o + 1] = string.format('<rect x="0" y="0" width="%d" height="%d" fill="white"/>', W, H)
	o[#o + 1] = string.format('<text x="%d" y="%d" text-anchor="middle" font-size="16">%s</text>',
		W // 2, 24, xml_escape(chart.title))
	-- Grid and tick labels.
	o[#o + 1] = '<g stroke="#e0e0e0" stroke-width="1">'
	for _, v in ipairs(xt) do
		o[#o + 1] = string.format('<line x1="%s" y1="%d" x2="%s" y2="%d"/>', fmt(px(v)), T,
			fmt(px(v)), H - B)
	end
	for _, v in ipairs(yt) do
		o[#o + 1] = string.format('<line x1="%d" y1="%s" x2="%d" y2="%s"/>', L, fmt(py(v)),
			W - R, fmt(py(v)))
	end
	o[#o + 1] = '</g>'
	o[#o + 1] = string.format('<g stroke="black" stroke-width="1"><line x1="%d" y1="%d" x2="%d" y2="%d"/>'
		.. '<line x1="%d" y1="%d" x2="%d" y2="%d"/></g>', L, H - B, W - R, H - B, L, T, L, H - B)
	o[#o + 1] = '<g text-anchor="middle">'
	for _, v in ipairs(xt) do
		o[#o + 1] = string.format('<text x="%s" y="%d">%s</text>', fmt(px(v)), H - B + 16,
			tick_label(v))
	end
	o[#o + 1] = '</g>'
	o[#o + 1] = '<g text-anchor="end">'
	for _, v in ipairs(yt) do
		o[#o + 1] = string.format('<text x="%d" y="%s">%s</text>', L - 6, fmt(py(v) + 4),
			tick_label(v))
	end
	o[#o + 1] = '</g>'
	o[#o + 1] = string.format('<text x="%s" y="%d" text-anchor="middle">%s</text>',
		fmt(L + (W - L - R) / 2), H - 14, xml_escape(chart.xlabel))
	o[#o + 1] = string.format('<text x="16" y="%s" text-anchor="middle" transform="rotate(-90 16 %s)">%s</text>',
		fmt(T + (H - T - B) / 2), fmt(T + (H - T - B) / 2), xml_escape(chart.ylabel))
	-- The data.
	local pts = {}
	for i = 1, #xs do pts[i] = fmt(px(xs[i])) .. "," .. fmt(py(ys[i])) end
	o[#o + 1] = string.format('<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="%s"/>',
		table.concat(pts, " "))
	if #xs <= 50 then
		o[#o + 1] = '<g fill="#1f77b4">'
		for i = 1, #xs do
			o[#o + 1] = string.format('<circle cx="%s" cy="%s" r="3"/>', fmt(px(xs[i])), fmt(py(ys[i])))
		end
		o[#o + 1] = '</g>'
	end
	o[#o + 1] = '</svg>'
	return table.concat(o, "\n") .. "\n"
end

-- plot.svg_document(chart) -> the text of a standalone .svg file.
function M.svg_document(chart)
	return '<?xml version="1.0" encoding="UTF-8"?>\n' .. M.svg(chart)
end

return M
