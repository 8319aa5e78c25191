-- report.lua -- the report.html of a run and of a sweep: one self-contained
-- HTML page each (inline CSS, SVG charts from plot.lua, a few lines of
-- script to sort tables; nothing fetched from anywhere).  A helper of
-- experiment.lua and sweep.lua (`local report = import("report")`); it adds
-- nothing to the lunet table and writes no file.
--
--   report.run_page(run)     -> the text of a run's page
--   report.sweep_page(sweep) -> the text of a sweep's page
--
-- run = {name=, dir=, status=, started=, updated=, host=, error=, command=,
--        config = {key = value}, columns = {...}, metrics = {rows...},
--        gradients = {rows of gradients.csv}, confusion = {matrix=,
--        classes=, rows=}, version=}
-- The page of a run holds, each in a <section> with an id for readers and
-- tests: "summary" (status, times, final metrics, the error of a failed
-- run), "config", "metrics" (one chart per quantity: train_loss and
-- test_loss on one chart "loss"), "confusion" (with exp:confusion: the
-- matrix, per-class recall and precision, the most confused pairs),
-- "gradients" (with exp:watch: per layer, the norm of its delta and of its
-- parameter gradients along the run, and |delta| against depth) and "rows"
-- (the logged rows).  A running run's page reloads itself every 30 s.
--
-- sweep = {name=, dir=, command=, keys = {...}, key_labels = {key = column
--          title}, sort = {key=, descending=},
--          runs = {{name=, values = {key = text}, status=, epochs=, final =
--          {metric = value}, columns=, metrics=, error=, report = "path"}}}
local lunet, import = ...
local plot, cmdline, runs = import("plot"), import("cmdline"), import("runs")
local esc, show = plot.escape, cmdline.show

local M = {}

-- Columns that are axes, not metrics.
local AXES = {epoch = true, step = true}
local PLOT_X = {"step", "epoch"}

-- Names of the splits of a data set, as prefixes (train_loss) or
-- suffixes (loss_train) of metric names.
local SPLITS = {train = true, test = true, val = true, valid = true, validation = true,
	eval = true, dev = true}

local function finite(v)
	return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge
end

local function cell(v)
	if v == nil then return "" end
	if type(v) == "number" then return esc(show(v, 5)) end
	return esc(tostring(v))
end

-- ---- the page around the sections -------------------------------------------------------

local STYLE = [[
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#222;background:#f5f6f8}
header{background:#263238;color:#fff;padding:14px 24px}
header h1{margin:0;font-size:22px;font-weight:600}
header .meta{margin:6px 0 0;color:#cfd8dc;font-size:14px}
nav{padding:8px 24px;font-size:14px;background:#eceff1}
nav a{margin-right:14px;color:#1f4e79}
main{padding:4px 24px 24px}
section{background:#fff;border:1px solid #dde1e6;border-radius:6px;margin:14px 0;padding:10px 16px}
h2{font-size:18px;margin:4px 0 10px}
h3{font-size:15px;margin:14px 0 6px}
.status{padding:1px 8px;border-radius:10px;font-weight:600;font-size:13px}
.status-finished{background:#c8e6c9;color:#1b5e20}
.status-running{background:#bbdefb;color:#0d47a1}
.status-failed{background:#ffcdd2;color:#b71c1c}
.status-interrupted{background:#ffe0b2;color:#8a3b00}
table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid #e0e3e7;padding:3px 8px;text-align:right;white-space:nowrap}
th{background:#f0f2f5;font-weight:600}
.text{text-align:left}
table.sortable th{cursor:pointer}
.charts{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;border:1px solid #eef0f2}
figcaption{font-size:12px;color:#555;padding:2px 6px}
svg{display:block;max-width:100%;height:auto}
.scroll{max-height:520px;overflow:auto}
pre.error{background:#fff4f4;border:1px solid #f3c1c1;padding:8px;white-space:pre-wrap;font-size:12px}
.note{color:#555;font-size:13px;margin:4px 0 8px}
footer{color:#777;font-size:12px;padding:0 24px 24px}
]]

local SCRIPT = [[
(function () {
  "use strict";
  function key(cell) {
    var t = cell.textContent.trim(), v = Number(t);
    return t !== "" && !isNaN(v) ? v : t.toLowerCase();
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    if (!table.tHead || !table.tBodies.length) return;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.title = "click to sort";
      th.addEventListener("click", function () {
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        var dir = th.getAttribute("data-dir") === "asc" ? -1 : 1;
        th.setAttribute("data-dir", dir === 1 ? "asc" : "desc");
        rows.sort(function (a, b) {
          var x = key(a.cells[col]), y = key(b.cells[col]);
          if (typeof x !== typeof y) return typeof x === "number" ? -1 : 1;
          return x < y ? -dir : x > y ? dir : 0;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  document.documentElement.setAttribute("data-ready", "true");
})();
]]

-- The whole page: head, header, navigation (list of {id, label}), the
-- sections' text, footer and script.
local function page(o)
	local out = {
		'<!DOCTYPE html>',
		'<html lang="en">',
		'<head>',
		'<meta charset="utf-8">',
		'<meta name="viewport" content="width=device-width, initial-scale=1">',
		string.format('<meta name="generator" content="lunet %s">', esc(o.version or lunet.version)),
	}
	if o.refresh then out[#out + 1] = '<meta http-equiv="refresh" content="30">' end
	out[#out + 1] = string.format('<title>%s</title>', esc(o.title))
	out[#out + 1] = '<style>' .. STYLE .. '</style>'
	out[#out + 1] = '</head>'
	out[#out + 1] = '<body>'
	out[#out + 1] = string.format('<header><h1>%s</h1><p class="meta">%s</p></header>', esc(o.heading),
		o.meta)
	local links = {}
	for _, s in ipairs(o.nav) do
		links[#links + 1] = string.format('<a href="#%s">%s</a>', s[1], esc(s[2]))
	end
	out[#out + 1] = '<nav>' .. table.concat(links) .. '</nav>'
	out[#out + 1] = '<main>'
	out[#out + 1] = table.concat(o.sections, "\n")
	out[#out + 1] = '</main>'
	out[#out + 1] = string.format('<footer>Written by lunet %s on %s. The page is self-contained: ' ..
		'it fetches nothing.</footer>', esc(o.version or lunet.version), os.date("%Y-%m-%d %H:%M:%S"))
	out[#out + 1] = '<script>' .. SCRIPT .. '</script>'
	out[#out + 1] = '</body>'
	out[#out + 1] = '</html>'
	return table.concat(out, "\n") .. "\n"
end

local function status_badge(status)
	status = status or "unknown"
	return string.format('<span class="status status-%s">%s</span>', esc(status:gsub("%W", "")),
		esc(status))
end

-- A table: columns (list of {key, label[, class]}), rows (list of tables
-- of cell html by key), attributes of the <table>.
local function html_table(columns, rows, attrs)
	local out = {string.format('<table%s>', attrs or "")}
	local head = {}
	for _, c in ipairs(columns) do
		if (c[2] or c[1]) ~= "" then head = nil break end
	end
	if head then  -- every label empty: no header row
		out[#out + 1] = '<tbody>'
	else
		out[#out + 1] = '<thead><tr>'
		for _, c in ipairs(columns) do
			out[#out + 1] = string.format('<th class="%s">%s</th>', c[3] or "", esc(c[2] or c[1]))
		end
		out[#out + 1] = '</tr></thead><tbody>'
	end
	for _, r in ipairs(rows) do
		local cells = {}
		for _, c in ipairs(columns) do
			cells[#cells + 1] = string.format('<td class="%s">%s</td>', c[3] or "", r[c[1]] or "")
		end
		out[#out + 1] = '<tr>' .. table.concat(cells) .. '</tr>'
	end
	out[#out + 1] = '</tbody></table>'
	return table.concat(out, "\n")
end

-- ---- metric charts --------------------------------------------------------------------------

-- report.metric_groups(columns, rows) -> list of {title=, xkey=, members =
-- {{key=, label=}}}: the numeric metrics (not epoch or step) grouped by
-- quantity, so that train_loss and test_loss (or loss_train, loss_val)
-- share one chart titled "loss", with a line each labelled by the split.
-- A metric alone in its group keeps its own name as the title.  Groups come
-- in the order of their first column.
function M.metric_groups(columns, rows)
	local groups, by = {}, {}
	for _, c in ipairs(columns) do
		local s = not AXES[c] and plot.series(rows, c, PLOT_X)
		if s then
			local split, quantity = c:match("^(%a+)_(.+)$")
			if not (split and SPLITS[split]) then
				quantity, split = c:match("^(.+)_(%a+)$")
				if not (split and SPLITS[split]) then quantity, split = c, nil end
			end
			local id = quantity .. "|" .. s.xkey
			local g = by[id]
			if not g then
				g = {quantity = quantity, xkey = s.xkey, members = {}}
				by[id] = g
				groups[#groups + 1] = g
			end
			g.members[#g.members + 1] = {key = c, label = split or c, series = s}
		end
	end
	for _, g in ipairs(groups) do
		if #g.members == 1 then
			g.title = g.members[1].key
			g.members[1].label = nil
		else
			g.title = g.quantity
		end
	end
	return groups
end

-- The <figure> of a chart for the page.
local function figure(class, data, chart, caption)
	return string.format('<figure class="%s"%s>%s%s</figure>', class, data or "", plot.svg(chart),
		caption and '<figcaption>' .. esc(caption) .. '</figcaption>' or "")
end

local function metric_charts(columns, rows, name)
	local figs = {}
	for _, g in ipairs(M.metric_groups(columns, rows)) do
		local series, integer_x = {}, true
		for _, m in ipairs(g.members) do
			series[#series + 1] = {label = m.label, x = m.series.x, y = m.series.y}
			integer_x = integer_x and m.series.integer_x
		end
		local keys = {}
		for _, m in ipairs(g.members) do keys[#keys + 1] = m.key end
		figs[#figs + 1] = figure("plot", string.format(' data-metric="%s"', esc(g.title)), {
			title = string.format("%s (%s)", g.title, name), xlabel = g.xkey, ylabel = g.title,
			series = series, integer_x = integer_x, width = 560, height = 340,
		}, #keys > 1 and table.concat(keys, ", ") or nil)
	end
	return figs
end

-- ---- the page of a run ----------------------------------------------------------------------

-- The last value logged in each column.
local function finals(columns, rows)
	local last = {}
	for _, c in ipairs(columns) do
		for i = #rows, 1, -1 do
			if rows[i][c] ~= nil then last[c] = rows[i][c] break end
		end
	end
	return last
end
M.finals = finals

local function summary_section(run)
	local last = finals(run.columns, run.metrics)
	local items = {
		{"status", status_badge(run.status)},
		{"started", cell(run.started)},
		{"last update", cell(run.updated)},
		{"host", run.host and cell(run.host) or ""},
		{"directory", cell(run.dir)},
		{"rows logged", cell(#run.metrics)},
	}
	for _, c in ipairs(run.columns) do
		if last[c] ~= nil then items[#items + 1] = {"final " .. c, cell(last[c])} end
	end
	local rows = {}
	for i, it in ipairs(items) do rows[i] = {k = esc(it[1]), v = it[2]} end
	local out = {'<section id="summary"><h2>Summary</h2>',
		html_table({{"k", "", "text"}, {"v", "", "text"}}, rows, ' id="summary-table"')}
	if run.command and run.command ~= "" then
		out[#out + 1] = '<p class="note">command: <code>' .. esc(run.command) .. '</code></p>'
	end
	if run.error then
		out[#out + 1] = '<h3>Error</h3><pre class="error">' .. esc(run.error) .. '</pre>'
	end
	out[#out + 1] = '</section>'
	return table.concat(out, "\n")
end

local function config_section(config)
	local rows = {}
	for _, k in ipairs(cmdline.sorted_keys(config or {})) do
		rows[#rows + 1] = {k = esc(k), v = cell(config[k])}
	end
	return '<section id="config"><h2>Configuration</h2>' ..
		html_table({{"k", "key", "text"}, {"v", "value", "text"}}, rows, ' id="config-table"') ..
		'</section>'
end

local function metrics_section(run)
	local figs = metric_charts(run.columns, run.metrics, run.name)
	if #figs == 0 then
		return '<section id="metrics"><h2>Metrics</h2><p class="note">No numeric metric logged yet.</p></section>'
	end
	return '<section id="metrics"><h2>Metrics</h2><div class="charts">' .. table.concat(figs, "\n") ..
		'</div></section>'
end

-- The cell colour of the confusion matrix: green on the diagonal, red off
-- it, stronger with the fraction of the true class it holds.
local function confusion_style(t, p, count, total)
	if count == 0 or total == 0 then return "" end
	local f = count / total
	local a = t == p and f or math.min(1, 3 * f)
	local rgb = t == p and "44,160,44" or "214,39,40"
	return string.format(' style="background:rgba(%s,%.3f);color:%s"', rgb, a, a > 0.55 and "#fff" or "#222")
end

-- report.confused_pairs(matrix, n) -> the n largest off-diagonal counts as
-- {true_class=, predicted=, count=, fraction (of the true class)}, largest
-- first (ties: by true class, then predicted).
function M.confused_pairs(matrix, n)
	local pairs_ = {}
	for t, row in ipairs(matrix) do
		local total = 0
		for _, c in ipairs(row) do total = total + c end
		for p, c in ipairs(row) do
			if p ~= t and c > 0 then
				pairs_[#pairs_ + 1] = {true_class = t, predicted = p, count = c, fraction = c / total}
			end
		end
	end
	table.sort(pairs_, function(a, b)
		if a.count ~= b.count then return a.count > b.count end
		if a.true_class ~= b.true_class then return a.true_class < b.true_class end
		return a.predicted < b.predicted
	end)
	local top = {}
	for i = 1, math.min(n, #pairs_) do top[i] = pairs_[i] end
	return top
end

local function confusion_section(run)
	local cm = run.confusion
	local matrix, names = cm.matrix, cm.classes
	local k = #matrix
	local epoch
	local rows = run.metrics
	if cm.rows and cm.rows < #rows then epoch = rows[cm.rows + 1].epoch
	elseif #rows > 0 then epoch = rows[#rows].epoch end
	local col_total, n, correct = {}, 0, 0
	for p = 1, k do col_total[p] = 0 end
	for t = 1, k do
		for p = 1, k do
			col_total[p] = col_total[p] + matrix[t][p]
			n = n + matrix[t][p]
		end
		correct = correct + matrix[t][t]
	end
	local out = {'<section id="confusion"><h2>Confusion matrix</h2>',
		string.format('<p class="note">Test set, %d examples%s; accuracy %s. Rows: true class; ' ..
			'columns: predicted class. Recall is the diagonal over the row, precision over the column.</p>',
			n, epoch and string.format(", epoch %s", show(epoch)) or "", n > 0 and show(correct / n, 4) or "-"),
		'<div class="scroll"><table id="confusion-matrix" class="confusion">',
		'<thead><tr><th class="text">true \\ predicted</th>'}
	for p = 1, k do out[#out + 1] = '<th>' .. esc(names[p]) .. '</th>' end
	out[#out + 1] = '<th>recall</th></tr></thead><tbody>'
	for t = 1, k do
		local total = 0
		for p = 1, k do total = total + matrix[t][p] end
		local cells = {'<th class="text">' .. esc(names[t]) .. '</th>'}
		for p = 1, k do
			local c = matrix[t][p]
			cells[#cells + 1] = string.format('<td title="true %s, predicted %s: %d"%s>%d</td>', esc(names[t]),
				esc(names[p]), c, confusion_style(t, p, c, total), c)
		end
		cells[#cells + 1] = '<td>' .. (total > 0 and show(matrix[t][t] / total, 3) or "-") .. '</td>'
		out[#out + 1] = '<tr>' .. table.concat(cells) .. '</tr>'
	end
	local prec = {'<th class="text">precision</th>'}
	for p = 1, k do
		prec[#prec + 1] = '<td>' .. (col_total[p] > 0 and show(matrix[p][p] / col_total[p], 3) or "-") .. '</td>'
	end
	out[#out + 1] = '<tr>' .. table.concat(prec) .. '<td></td></tr></tbody></table></div>'
	local top = M.confused_pairs(matrix, 5)
	out[#out + 1] = '<h3>Most confused pairs</h3>'
	if #top == 0 then
		out[#out + 1] = '<p class="note" id="confused-pairs">No example was misclassified.</p>'
	else
		out[#out + 1] = '<ol id="confused-pairs">'
		for _, pr in ipairs(top) do
			out[#out + 1] = string.format('<li><b>%s</b> taken for <b>%s</b>: %d times (%.1f%% of %s)</li>',
				esc(names[pr.true_class]), esc(names[pr.predicted]), pr.count, 100 * pr.fraction,
				esc(names[pr.true_class]))
		end
		out[#out + 1] = '</ol>'
	end
	out[#out + 1] = '</section>'
	return table.concat(out, "\n")
end

-- The gradient records by layer: list of {name=, rows = {...}}, and the x
-- key shared by all the records ("epoch", "step" or "record").
local function by_layer(grads)
	local layers = {}
	local xkey = "epoch"
	for _, r in ipairs(grads) do
		if type(r.epoch) ~= "number" then xkey = "step" break end
	end
	if xkey == "step" then
		for _, r in ipairs(grads) do
			if type(r.step) ~= "number" then xkey = "record" break end
		end
	end
	for _, r in ipairs(grads) do
		local k = math.tointeger(r.layer)
		if k and k >= 1 then
			local l = layers[k]
			if not l then
				l = {name = tostring(r.name or ""), rows = {}}
				layers[k] = l
			end
			l.rows[#l.rows + 1] = r
		end
	end
	local list = {}
	for k = 1, #layers do list[k] = layers[k] or {name = "", rows = {}} end
	return list, xkey
end

local function gradients_section(run)
	local layers, xkey = by_layer(run.gradients)
	local out = {'<section id="gradients"><h2>Error signal by layer</h2>',
		'<p class="note">For each layer of the model (in the order of the forward pass), the norm ' ..
		'of its δ, the gradient of the loss with respect to the layer\'s input ' ..
		'(<code>grad_input</code>), and |∇θ|, the norm of its parameter gradients, averaged over ' ..
		'batches spread over each epoch (exp:watch). Read down the page to see the error signal ' ..
		'grow or fade as backpropagation carries it towards the input.</p>'}
	-- |δ| against depth: the first and the last record.
	local nrec = 0
	for _, l in ipairs(layers) do nrec = math.max(nrec, #l.rows) end
	local depth_series = {}
	for _, which in ipairs(nrec > 1 and {1, nrec} or {1}) do
		local xs, ys, label = {}, {}, nil
		for k, l in ipairs(layers) do
			local r = l.rows[which]
			if r then
				label = xkey == "record" and "record " .. which or string.format("%s %s", xkey, show(r[xkey]))
				if finite(r.delta) and r.delta > 0 then xs[#xs + 1], ys[#ys + 1] = k, r.delta end
			end
		end
		if #xs > 0 then depth_series[#depth_series + 1] = {label = label, x = xs, y = ys} end
	end
	out[#out + 1] = '<div class="charts">'
	out[#out + 1] = figure("depth-chart", ' id="depth-chart"', {
		title = "|δ| by layer", xlabel = "layer", ylabel = "|δ|", series = depth_series,
		integer_x = true, log_y = true, width = 560, height = 340,
	})
	out[#out + 1] = '</div><h3>Per layer</h3><div class="charts">'
	for k, l in ipairs(layers) do
		local dx, dy, gx, gy = {}, {}, {}, {}
		for i, r in ipairs(l.rows) do
			local x = xkey == "record" and i or r[xkey]
			if finite(r.delta) then dx[#dx + 1], dy[#dy + 1] = x, r.delta end
			if finite(r.grad) then gx[#gx + 1], gy[#gy + 1] = x, r.grad end
		end
		local series = {{label = "|δ|", x = dx, y = dy}}
		if #gx > 0 then series[2] = {label = "|∇θ|", x = gx, y = gy} end
		out[#out + 1] = figure("layer-chart", string.format(' data-layer="%d"', k), {
			title = string.format("%d  %s", k, l.name), xlabel = xkey, ylabel = "norm",
			series = series, integer_x = true, log_y = true,
			width = 340, height = 220,
		})
	end
	out[#out + 1] = '</div></section>'
	return table.concat(out, "\n")
end

local MAX_ROWS = 500

local function rows_section(columns, rows)
	local cols = {}
	for i, c in ipairs(columns) do cols[i] = {c, c} end
	local from = math.max(1, #rows - MAX_ROWS + 1)
	local body = {}
	for i = from, #rows do
		local r = {}
		for _, c in ipairs(columns) do r[c] = cell(rows[i][c]) end
		body[#body + 1] = r
	end
	local note = from > 1 and string.format('<p class="note">The last %d of %d rows (metrics.csv has them all).</p>',
		#rows - from + 1, #rows) or ""
	return '<section id="rows"><h2>Logged rows</h2>' .. note .. '<div class="scroll">' ..
		html_table(cols, body, ' id="rows-table" class="sortable"') .. '</div></section>'
end

function M.run_page(run)
	local sections, nav = {}, {{"summary", "summary"}, {"config", "configuration"}, {"metrics", "metrics"}}
	sections[#sections + 1] = summary_section(run)
	sections[#sections + 1] = config_section(run.config)
	sections[#sections + 1] = metrics_section(run)
	if run.confusion and run.confusion.matrix and #run.confusion.matrix > 0 then
		sections[#sections + 1] = confusion_section(run)
		nav[#nav + 1] = {"confusion", "confusion matrix"}
	end
	if run.gradients and #run.gradients > 0 then
		sections[#sections + 1] = gradients_section(run)
		nav[#nav + 1] = {"gradients", "gradients by layer"}
	end
	sections[#sections + 1] = rows_section(run.columns, run.metrics)
	nav[#nav + 1] = {"rows", "logged rows"}
	local last = finals(run.columns, run.metrics)
	local meta = {status_badge(run.status)}
	if run.started then meta[#meta + 1] = "started " .. esc(run.started) end
	if last.epoch ~= nil then meta[#meta + 1] = "epoch " .. cell(last.epoch) end
	meta[#meta + 1] = esc(run.dir or "")
	return page{
		title = string.format("%s: lunet run report", run.name), heading = run.name,
		meta = table.concat(meta, " · "), nav = nav, sections = sections,
		refresh = run.status == "running", version = run.version,
	}
end

-- ---- the page of a sweep --------------------------------------------------------------------

function M.sweep_page(sw)
	local summary, counts = runs.count_text(sw.runs)
	local sections = {}
	-- The table of runs.
	local metric_cols = {}
	local seen = {}
	for _, r in ipairs(sw.runs) do
		for _, c in ipairs(r.columns or {}) do
			if not AXES[c] and not seen[c] then
				seen[c] = true
				metric_cols[#metric_cols + 1] = c
			end
		end
	end
	local cols = {{"run", "run", "text"}}
	for _, k in ipairs(sw.keys) do cols[#cols + 1] = {"k:" .. k, sw.key_labels and sw.key_labels[k] or k} end
	cols[#cols + 1] = {"status", "status", "text"}
	cols[#cols + 1] = {"epochs", "epochs"}
	for _, c in ipairs(metric_cols) do cols[#cols + 1] = {"m:" .. c, c} end
	local rows = {}
	for _, r in ipairs(sw.runs) do
		local row = {
			run = r.report and string.format('<a href="%s">%s</a>', esc(r.report), esc(r.name)) or esc(r.name),
			status = status_badge(r.status), epochs = cell(r.epochs),
		}
		for _, k in ipairs(sw.keys) do row["k:" .. k] = cell(r.values[k]) end
		for _, c in ipairs(metric_cols) do row["m:" .. c] = cell(r.final and r.final[c]) end
		rows[#rows + 1] = row
	end
	local sorted = sw.sort and string.format(" Sorted by %s, %s first.", esc(sw.sort.key),
		sw.sort.descending and "largest" or "smallest") or ""
	sections[#sections + 1] = '<section id="runs"><h2>Runs</h2><p class="note">' ..
		string.format("%d runs: %s.", #sw.runs, summary) .. sorted ..
		' Click a column to sort; a run\'s name opens its report.</p><div class="scroll">' ..
		html_table(cols, rows, ' id="runs-table" class="sortable"') .. '</div>' ..
		(sw.command and '<p class="note">command: <code>' .. esc(sw.command) .. '</code></p>' or "") ..
		'</section>'
	-- One chart per metric, a line per run.
	local figs = {}
	for _, c in ipairs(metric_cols) do
		local series, xkey, integer_x = {}, nil, true
		for _, r in ipairs(sw.runs) do
			local s = r.metrics and plot.series(r.metrics, c, PLOT_X)
			if s and (xkey == nil or s.xkey == xkey) then
				xkey = s.xkey
				integer_x = integer_x and s.integer_x
				series[#series + 1] = {label = #sw.runs <= 10 and r.name or nil, x = s.x, y = s.y}
			end
		end
		if #series > 0 then
			figs[#figs + 1] = figure("plot", string.format(' data-metric="%s"', esc(c)), {
				title = c, xlabel = xkey, ylabel = c, series = series, integer_x = integer_x,
				width = 560, height = 360,
			})
		end
	end
	sections[#sections + 1] = '<section id="metrics"><h2>Metrics of every run</h2>' ..
		(#figs > 0 and '<div class="charts">' .. table.concat(figs, "\n") .. '</div>' or
			'<p class="note">No metric logged yet.</p>') .. '</section>'
	local nav = {{"runs", "runs"}, {"metrics", "metrics"}}
	-- Failed runs, with the end of their error output.
	local failed = {}
	for _, r in ipairs(sw.runs) do
		if r.status == "failed" then
			failed[#failed + 1] = string.format('<h3>%s</h3><pre class="error">%s</pre>', esc(r.name),
				esc(r.error or "(no message)"))
		end
	end
	if #failed > 0 then
		sections[#sections + 1] = '<section id="failed"><h2>Failed runs</h2>' .. table.concat(failed, "\n") ..
			'</section>'
		nav[#nav + 1] = {"failed", "failed runs"}
	end
	return page{
		title = string.format("%s: lunet sweep report", sw.name), heading = "sweep " .. sw.name,
		meta = esc(string.format("%d runs: %s", #sw.runs, summary)) .. " · " .. esc(sw.dir),
		nav = nav, sections = sections, refresh = (counts.running or 0) > 0,
	}
end

lunet._report = M  -- for the tests
return M
