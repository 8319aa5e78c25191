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

-- plot.escape(s): s with &, <, > and " as XML/HTML entities.
local function xml_escape(s)
	return (tostring(s):gsub("[&<>\"]", {["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
		['"'] = "&quot;"}))
end
M.escape = xml_escape

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

-- Ticks of a logarithmic axis over [lo, hi], given as log10 of the values:
-- powers of ten over three decades or more, 1-2-5 over one to three, and
-- evenly spaced values below one decade.  Returns the ticks (as log10) and
-- the range of the axis (as log10).
local function log_ticks(lo, hi)
	if hi - lo < 1e-9 then lo, hi = lo - 0.1, hi + 0.1 end
	local span = hi - lo
	if span < 1 then
		local a, b = 10 ^ lo, 10 ^ hi
		local lin = nice_ticks(a, b, 4, false)
		local ticks = {}
		for _, t in ipairs(lin) do
			if t > 0 and t >= a * (1 - 1e-9) and t <= b * (1 + 1e-9) then
				ticks[#ticks + 1] = math.log(t, 10)
			end
		end
		return ticks, lo, hi
	end
	local mantissas = span >= 3 and {1} or {1, 2, 5}
	local all = {}
	for k = math.floor(lo) - 1, math.ceil(hi) + 1 do
		for _, m in ipairs(mantissas) do all[#all + 1] = k + math.log(m, 10) end
	end
	local first, last = 1, #all
	for i = 1, #all do
		if all[i] <= lo + 1e-9 then first = i end
	end
	for i = #all, 1, -1 do
		if all[i] >= hi - 1e-9 then last = i end
	end
	local ticks = {}
	for i = first, last do ticks[#ticks + 1] = all[i] end
	return ticks, all[first], all[last]
end

local function tick_label(v)
	if math.abs(v) < 1e-12 then return "0" end
	return (string.format("%.6g", v))
end

local function fmt(v) return string.format("%.2f", v) end

-- Colours of the series, in order (then again from the first).
M.COLORS = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
	"#7f7f7f", "#bcbd22", "#17becf"}

-- The series of a chart as a list of {x=, y=, label=, color=}: chart.series,
-- or the one series chart.x, chart.y.  With log_y, points whose y is not
-- positive are left out (and series left with no point).
local function chart_series(chart)
	local list = chart.series or {{x = chart.x, y = chart.y}}
	local out = {}
	for i, s in ipairs(list) do
		local xs, ys = s.x, s.y
		if chart.log_y then
			xs, ys = {}, {}
			for k = 1, #s.y do
				if s.y[k] > 0 then xs[#xs + 1], ys[#ys + 1] = s.x[k], math.log(s.y[k], 10) end
			end
		end
		if #xs > 0 then
			out[#out + 1] = {x = xs, y = ys, label = s.label,
				color = s.color or M.COLORS[(i - 1) % #M.COLORS + 1]}
		end
	end
	return out
end

-- plot.svg(chart) -> the <svg> element of a line chart, for a file or to
-- put inline in an HTML page.  chart = {title=, xlabel=, ylabel=, x = {...},
-- y = {...}, integer_x=}: x and y are lists of finite numbers of the same
-- length, at least one.  Or, for several lines on one chart, series =
-- {{label=, x=, y=[, color=]}, ...} instead of x and y: a legend names them.
-- Options: width and height (640 and 400; smaller charts get smaller
-- margins), log_y (a logarithmic y axis: points with y <= 0 are left out),
-- id (the element's id).  A chart left with no point draws its axes and
-- "no data".
function M.svg(chart)
	local series = chart_series(chart)
	local W, H = chart.width or 640, chart.height or 400
	local small = W < 480
	local L, R, T, B = 72, 24, 40, 56   -- margins
	if small then L, R, T, B = 58, 12, 30, 42 end
	local xmin, xmax, ymin, ymax = math.huge, -math.huge, math.huge, -math.huge
	for _, s in ipairs(series) do
		for i = 1, #s.x do
			xmin, xmax = math.min(xmin, s.x[i]), math.max(xmax, s.x[i])
			ymin, ymax = math.min(ymin, s.y[i]), math.max(ymax, s.y[i])
		end
	end
	if #series == 0 then xmin, xmax, ymin, ymax = 0, 1, 0, 1 end
	local xt, x0, x1 = nice_ticks(xmin, xmax, small and 4 or 6, chart.integer_x)
	local yt, y0, y1
	if chart.log_y then
		yt, y0, y1 = log_ticks(ymin, ymax)
	else
		yt, y0, y1 = nice_ticks(ymin, ymax, small and 4 or 5, false)
	end
	-- The legend: rows of entries under the title, which push the plot down.
	local legend, row_w = {}, 0
	local char_w = small and 6 or 7
	for _, s in ipairs(series) do
		if s.label then
			local w = 26 + (utf8.len(s.label) or #s.label) * char_w
			if #legend == 0 or row_w + w > W - L - R then
				legend[#legend + 1] = {}
				row_w = 0
			end
			table.insert(legend[#legend], {s = s, x = L + row_w})
			row_w = row_w + w
		end
	end
	local legend_top = T - (small and 6 or 8)
	T = T + 16 * #legend
	local function px(x) return L + (x - x0) / (x1 - x0) * (W - L - R) end
	local function py(y) return H - B - (y - y0) / (y1 - y0) * (H - T - B) end
	local function ylabel(v)
		if chart.log_y then return tick_label(tonumber(string.format("%.2g", 10 ^ v))) end
		return tick_label(v)
	end
	local o = {}
	o[#o + 1] = string.format('<svg xmlns="http://www.w3.org/2000/svg"%s width="%d" height="%d" '
		.. 'viewBox="0 0 %d %d" font-family="sans-serif" font-size="%d">',
		chart.id and string.format(' id="%s"', xml_escape(chart.id)) or "", W, H, W, H,
		small and 11 or 12)
	o[#o + 1] = string.format('<rect x="0" y="0" width="%d" height="%d" fill="white"/>', W, H)
	o[#o + 1] = string.format('<text x="%d" y="%d" text-anchor="middle" font-size="%d">%s</text>',
		W // 2, small and 19 or 24, small and 13 or 16, xml_escape(chart.title or ""))
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
		o[#o + 1] = string.format('<text x="%d" y="%s">%s</text>', L - 6, fmt(py(v) + 4), ylabel(v))
	end
	o[#o + 1] = '</g>'
	o[#o + 1] = string.format('<text x="%s" y="%d" text-anchor="middle">%s</text>',
		fmt(L + (W - L - R) / 2), H - (small and 8 or 14), xml_escape(chart.xlabel or ""))
	local yx = small and 12 or 16
	o[#o + 1] = string.format('<text x="%d" y="%s" text-anchor="middle" transform="rotate(-90 %d %s)">%s</text>',
		yx, fmt(T + (H - T - B) / 2), yx, fmt(T + (H - T - B) / 2),
		xml_escape((chart.ylabel or "") .. (chart.log_y and " (log)" or "")))
	if #series == 0 then
		o[#o + 1] = string.format('<text x="%s" y="%s" text-anchor="middle" fill="#888">no data</text>',
			fmt(L + (W - L - R) / 2), fmt(T + (H - T - B) / 2))
	end
	-- The data.
	for _, s in ipairs(series) do
		local pts = {}
		for i = 1, #s.x do pts[i] = fmt(px(s.x[i])) .. "," .. fmt(py(s.y[i])) end
		o[#o + 1] = string.format('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>',
			s.color, table.concat(pts, " "))
		if #s.x <= 50 then
			o[#o + 1] = string.format('<g fill="%s">', s.color)
			for i = 1, #s.x do
				o[#o + 1] = string.format('<circle cx="%s" cy="%s" r="%d"/>', fmt(px(s.x[i])),
					fmt(py(s.y[i])), small and 2 or 3)
			end
			o[#o + 1] = '</g>'
		end
	end
	for r, entries in ipairs(legend) do
		local y = legend_top + 16 * (r - 1) + 4
		o[#o + 1] = '<g class="legend">'
		for _, e in ipairs(entries) do
			o[#o + 1] = string.format('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"/>'
				.. '<text x="%d" y="%d">%s</text>', e.x, y, e.x + 18, y, e.s.color, e.x + 22, y + 4,
				xml_escape(e.s.label))
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
