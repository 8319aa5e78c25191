-- csv.lua -- tables of rows as CSV text, and back: the format of an
-- experiment's metrics.csv.  A helper for the other embedded scripts
-- (`local csv = import("csv")`); it adds nothing to the lunet table.
--
--   csv.line(columns, row)   -> one record with its "\n": row[c] for each c
--   csv.text(columns, rows)  -> the header and every row
--   csv.parse(text)          -> columns, rows | nil, what is wrong, line number
--   csv.read(path)           -> columns, rows | nil, message (file missing,
--                               or "path:N: what is wrong")
--
-- Writing: integers as they are, other numbers with 10 significant digits,
-- nan, inf and -inf by name, booleans as true/false, nil as an empty cell.
-- A string is quoted ("..." with "" for ") when it holds a comma, a quote,
-- a line break, or starts or ends with a space.  Reading gives the values
-- back: integers as integers, other numbers as floats, nan/inf/-inf as
-- those floats, empty cells as nil, anything else as a string.  Quoted
-- cells may span lines.  A row shorter than the header leaves its last
-- cells nil; a longer one is an error.
local M = {}

-- The text of one cell.
function M.field(v)
	if v == nil then return "" end
	if math.type(v) == "integer" then return string.format("%d", v) end
	if type(v) == "number" then
		if v ~= v then return "nan" end
		if v == math.huge then return "inf" end
		if v == -math.huge then return "-inf" end
		return string.format("%.10g", v)
	end
	local s = tostring(v)
	if s:find('[,"\r\n]') or s:find("^%s") or s:find("%s$") then
		s = '"' .. s:gsub('"', '""') .. '"'
	end
	return s
end

function M.line(columns, row)
	local cells = {}
	for i, c in ipairs(columns) do cells[i] = M.field(row[c]) end
	return table.concat(cells, ",") .. "\n"
end

-- The header line: the column names themselves, quoted as cells are.
function M.header(columns)
	local cells = {}
	for i, c in ipairs(columns) do cells[i] = M.field(c) end
	return table.concat(cells, ",") .. "\n"
end

-- The whole file: the header and the rows (nothing at all without columns).
function M.text(columns, rows)
	if #columns == 0 then return "" end
	local parts = {M.header(columns)}
	for _, row in ipairs(rows) do parts[#parts + 1] = M.line(columns, row) end
	return table.concat(parts)
end

local SPECIAL = {nan = 0 / 0, ["-nan"] = 0 / 0, inf = math.huge, ["-inf"] = -math.huge}

-- The value a cell's text stands for (nil for an empty cell).
function M.value(s)
	if s == "" then return nil end
	local n = tonumber(s)
	if n ~= nil then return math.tointeger(n) or n end
	local sp = SPECIAL[s]
	if sp ~= nil then return sp end
	return s
end

-- Splits text into records of raw cell texts.  Returns the list of records
-- (each {line = first line number, cells...}), or nil, what is wrong and
-- the line number.
local function records(text)
	local recs, rec, i, n, line = {}, nil, 1, #text, 1
	while i <= n do
		if rec == nil then rec = {line = line} end
		local cell
		if text:sub(i, i) == '"' then
			local buf, j = {}, i + 1
			while true do
				local q = text:find('"', j, true)
				if not q then return nil, "unclosed quote", line end
				local piece = text:sub(j, q - 1)
				buf[#buf + 1] = piece
				local _, nl = piece:gsub("\n", "")
				line = line + nl
				if text:sub(q + 1, q + 1) == '"' then
					buf[#buf + 1] = '"'
					j = q + 2
				else
					i = q + 1
					break
				end
			end
			cell = table.concat(buf)
		else
			local e = text:find("[,\r\n]", i) or n + 1
			cell = text:sub(i, e - 1)
			if cell:find('"', 1, true) then
				return nil, "a quote inside an unquoted cell", line
			end
			i = e
		end
		rec[#rec + 1] = cell
		local c = text:sub(i, i)
		if c == "," then
			i = i + 1
			if i > n then rec[#rec + 1] = "" end
		elseif c == "\r" or c == "\n" or c == "" then
			if c == "\r" then i = i + 1 end
			if text:sub(i, i) == "\n" then i = i + 1 end
			recs[#recs + 1] = rec
			rec = nil
			line = line + 1
		else
			return nil, "text after a closing quote", line
		end
	end
	if rec ~= nil then recs[#recs + 1] = rec end
	return recs
end

-- csv.parse(text) -> columns, rows; or nil, what is wrong, its line number.
-- Empty lines between rows are skipped.
function M.parse(text)
	local recs, err, line = records(text)
	if not recs then return nil, err, line end
	local columns, rows = nil, {}
	for _, rec in ipairs(recs) do
		if not columns then
			columns = {}
			for k = 1, #rec do columns[k] = rec[k] end
		elseif not (#rec == 1 and rec[1] == "") then
			if #rec > #columns then
				return nil, string.format("%d cells under a header of %d", #rec, #columns), rec.line
			end
			local row = {}
			for k, c in ipairs(columns) do
				if rec[k] ~= nil then row[c] = M.value(rec[k]) end
			end
			rows[#rows + 1] = row
		end
	end
	return columns or {}, rows
end

-- csv.read(path) -> columns, rows; or nil and a message naming the path.
function M.read(path)
	local f, err = io.open(path, "rb")
	if not f then return nil, err end
	local text = f:read("a")
	f:close()
	local columns, rows, line = M.parse(text)
	if not columns then return nil, string.format("%s:%d: %s", path, line, rows) end
	return columns, rows
end

return M
