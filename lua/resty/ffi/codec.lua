-- MessagePack for the Lua side of resty.ffi, on LuaJIT's FFI.
--
-- Mapping (the Go side, core/codec.go, mirrors it):
--   nil            <-> msgpack nil (inside tables it decodes as ngx.null)
--   ngx.null       <-> ext 0, length 0 (Go core.Null)
--   boolean        <-> bool
--   number         <-> int (when integral and |n| <= 2^53) or float64
--   int64_t cdata  <-> int64; uint64_t cdata <-> uint64; integers beyond
--                      2^53 decode as int64_t / uint64_t cdata, exactly
--   string         <-> str (any bytes); msgpack bin decodes as a string too
--   table          <-> array when it is a sequence 1..n, map otherwise; an
--                      empty table is a map unless it has codec.array_mt
--   handle object  <-> ext 1 (8-byte id)
--   array of maps  <-  ext 2, Records: the keys once, then every record's
--                      cells (Go writes it for tabular results; each key
--                      becomes a Lua string once per result, not per row)
-- Decoded arrays and maps carry array_mt / map_mt so they re-encode the
-- same way, empty ones included.

local ffi = require "ffi"
local bit = require "bit"

local ffi_new = ffi.new
local ffi_string = ffi.string
local ffi_copy = ffi.copy
local ffi_istype = ffi.istype
local band = bit.band
local rshift = bit.rshift
local floor = math.floor
local type = type
local tostring = tostring
local pairs = pairs
local error = error
local pcall = pcall
local getmetatable = getmetatable
local setmetatable = setmetatable
local tonumber = tonumber
local ngx_null = ngx and ngx.null

local ok, new_tab = pcall(require, "table.new")
if not ok then
    new_tab = function() return {} end
end

-- table.clone (OpenResty's LuaJIT) copies a table's hash part in one go,
-- more than twice as fast as inserting the same keys one by one.
local clone
ok, clone = pcall(require, "table.clone")
if not ok then
    clone = function(t)
        local c = {}
        for k, v in pairs(t) do
            c[k] = v
        end
        return c
    end
end

local _M = { _VERSION = "0.1.0" }

local array_mt = { __name = "resty.ffi array" }
local map_mt = { __name = "resty.ffi map" }
_M.array_mt = array_mt
_M.map_mt = map_mt
_M.empty_array = setmetatable({}, array_mt)

-- Set by resty.ffi: wraps a handle id into an object, and returns the id of
-- such an object (or nil when v is not one).
_M.wrap_handle = function(id) return id end
_M.handle_id = function() return nil end

local int64_t = ffi.typeof("int64_t")
local uint64_t = ffi.typeof("uint64_t")
local scratch = ffi_new("union { double d; float f; int64_t i; uint64_t u; uint8_t b[8]; }")

local DEFAULT_SIZE = 4096
local SHRINK_ABOVE = 1024 * 1024

---------------------------------------------------------------- encoder
-- One growable buffer per worker. A frame stays valid until the next
-- encode; Go copies it at submit, so the buffer is free again right after.
local buf_size = DEFAULT_SIZE
local buf = ffi_new("uint8_t[?]", buf_size)
local pos = 0
local arg_index -- which argument is being encoded, for error messages
local sort_keys = false -- encode_sorted: map keys in a stable order

local function grow(need)
    local size = buf_size * 2
    while size < pos + need do
        size = size * 2
    end
    local nbuf = ffi_new("uint8_t[?]", size)
    ffi_copy(nbuf, buf, pos)
    buf, buf_size = nbuf, size
end

local function fail(what)
    if arg_index then
        error("resty.ffi: argument #" .. arg_index .. ": " .. what, 0)
    end
    error("resty.ffi: " .. what, 0)
end

-- write the low n bytes (n = 1, 2, 4) of a non-negative integer, big-endian
local function put_uint(tag, v, n)
    if pos + n + 1 > buf_size then grow(n + 1) end
    buf[pos] = tag
    if n == 1 then
        buf[pos + 1] = v
    elseif n == 2 then
        buf[pos + 1] = rshift(v, 8)
        buf[pos + 2] = band(v, 0xff)
    else
        -- v may exceed 2^31: split without bit ops on the high half
        local hi = floor(v / 65536)
        buf[pos + 1] = rshift(hi, 8)
        buf[pos + 2] = band(hi, 0xff)
        local lo = v - hi * 65536
        buf[pos + 3] = rshift(lo, 8)
        buf[pos + 4] = band(lo, 0xff)
    end
    pos = pos + n + 1
end

local function put_scratch64(tag)
    if pos + 9 > buf_size then grow(9) end
    buf[pos] = tag
    local b = scratch.b
    for i = 0, 7 do
        buf[pos + 1 + i] = b[7 - i]
    end
    pos = pos + 9
end

local function put_number(n)
    if n == floor(n) and n >= -9007199254740992 and n <= 9007199254740992 then
        if n >= 0 then
            if n < 128 then
                if pos + 1 > buf_size then grow(1) end
                buf[pos] = n
                pos = pos + 1
            elseif n < 256 then
                put_uint(0xcc, n, 1)
            elseif n < 65536 then
                put_uint(0xcd, n, 2)
            elseif n < 4294967296 then
                put_uint(0xce, n, 4)
            else
                scratch.i = n
                put_scratch64(0xcf)
            end
        elseif n >= -32 then
            if pos + 1 > buf_size then grow(1) end
            buf[pos] = n + 256
            pos = pos + 1
        elseif n >= -2147483648 then
            put_uint(0xd2, n + 4294967296, 4)
        else
            scratch.i = n
            put_scratch64(0xd3)
        end
        return
    end
    scratch.d = n
    put_scratch64(0xcb)
end

local function put_head(n, fix, fixmax, t8, t16, t32)
    if n <= fixmax then
        if pos + 1 > buf_size then grow(1) end
        buf[pos] = fix + n
        pos = pos + 1
    elseif t8 and n < 256 then
        put_uint(t8, n, 1)
    elseif n < 65536 then
        put_uint(t16, n, 2)
    else
        put_uint(t32, n, 4)
    end
end

local function put_string(s)
    local n = #s
    put_head(n, 0xa0, 31, 0xd9, 0xda, 0xdb)
    if pos + n > buf_size then grow(n) end
    ffi_copy(buf + pos, s, n)
    pos = pos + n
end

local put_value

-- key_order sorts keys of mixed types: by type name, then by value
-- (cdata keys by their decimal text).
local function key_order(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then
        return ta < tb
    end
    if ta == "boolean" then
        return (not a) and b
    elseif ta == "cdata" then
        return tostring(a) < tostring(b)
    end
    return a < b
end

local function put_table(t, depth)
    if depth > 200 then
        fail("tables nested deeper than 200 levels (a cycle?)")
    end
    local mt = getmetatable(t)
    local n = #t
    local is_array
    if mt == array_mt then
        is_array = true
    elseif mt == map_mt then
        is_array = false
    elseif n == 0 then
        is_array = false
    else
        -- a sequence has exactly the integer keys 1..n
        is_array = true
        local count = 0
        for k in pairs(t) do
            if type(k) ~= "number" or k < 1 or k > n or k ~= floor(k) then
                is_array = false
                break
            end
            count = count + 1
        end
        if count ~= n then
            is_array = false
        end
    end
    if is_array then
        put_head(n, 0x90, 15, nil, 0xdc, 0xdd)
        for i = 1, n do
            put_value(t[i], depth + 1)
        end
        return
    end
    local count = 0
    for k in pairs(t) do
        local kt = type(k)
        if kt ~= "string" and kt ~= "number" and kt ~= "boolean"
           and not (kt == "cdata" and (ffi_istype(int64_t, k) or ffi_istype(uint64_t, k)))
        then
            fail("cannot encode a table key of type " .. kt)
        end
        count = count + 1
    end
    put_head(count, 0x80, 15, nil, 0xde, 0xdf)
    if sort_keys then
        local keys = {}
        for k in pairs(t) do
            keys[#keys + 1] = k
        end
        table.sort(keys, key_order)
        for i = 1, #keys do
            put_value(keys[i], depth + 1)
            put_value(t[keys[i]], depth + 1)
        end
        return
    end
    for k, v in pairs(t) do
        put_value(k, depth + 1)
        put_value(v, depth + 1)
    end
end

put_value = function(v, depth)
    local t = type(v)
    if t == "string" then
        put_string(v)
    elseif t == "number" then
        if v ~= v then
            scratch.d = v
            put_scratch64(0xcb)
        else
            put_number(v)
        end
    elseif t == "table" then
        local id = _M.handle_id(v)
        if id then
            -- fixext 8, extension type 1, the id big-endian
            if pos + 1 > buf_size then grow(1) end
            buf[pos] = 0xd7
            pos = pos + 1
            scratch.u = id
            put_scratch64(1)
            return
        end
        put_table(v, depth)
    elseif t == "boolean" then
        if pos + 1 > buf_size then grow(1) end
        buf[pos] = v and 0xc3 or 0xc2
        pos = pos + 1
    elseif t == "nil" then
        if pos + 1 > buf_size then grow(1) end
        buf[pos] = 0xc0
        pos = pos + 1
    elseif v == ngx_null then
        if pos + 3 > buf_size then grow(3) end
        buf[pos], buf[pos + 1], buf[pos + 2] = 0xc7, 0, 0
        pos = pos + 3
    elseif t == "cdata" and ffi_istype(int64_t, v) then
        scratch.i = v
        put_scratch64(0xd3)
    elseif t == "cdata" and ffi_istype(uint64_t, v) then
        scratch.u = v
        put_scratch64(0xcf)
    else
        fail("cannot encode a value of type " .. t)
    end
end

local function reset()
    if buf_size > SHRINK_ABOVE then
        buf_size = DEFAULT_SIZE
        buf = ffi_new("uint8_t[?]", buf_size)
    end
    pos = 0
end

-- encode(v) -> pointer, length. Raises an error for values it cannot encode.
function _M.encode(v)
    reset()
    arg_index = nil
    put_value(v, 0)
    return buf, pos
end

-- encode_sorted(v): like encode, with every map's keys in a stable order,
-- so equal tables give equal bytes (resty.ffi.open keys its cache on it).
function _M.encode_sorted(v)
    reset()
    arg_index = nil
    sort_keys = true
    local ok, err = pcall(put_value, v, 0)
    sort_keys = false
    if not ok then
        error(err, 2)
    end
    return buf, pos
end

-- encode_args(first, n, ...) encodes the varargs as an array, naming the
-- argument (counting from `first`) in errors. Trailing nils count when n
-- says so, which is how select("#", ...) is passed in. The call path uses
-- it for more than three arguments only (encode_few takes the rest).
function _M.encode_args(first, n, ...)
    reset()
    put_head(n, 0x90, 15, nil, 0xdc, 0xdd)
    for i = 1, n do
        arg_index = first + i - 1
        put_value((select(i, ...)), 0)
    end
    arg_index = nil
    return buf, pos
end

-- encode_few(first, n, a, b, c): encode_args for at most three values,
-- passed as plain parameters. A vararg function never starts a LuaJIT
-- trace, so the call path uses this one when it can (resty/ffi.lua).
function _M.encode_few(first, n, a, b, c)
    reset()
    put_head(n, 0x90, 15, nil, 0xdc, 0xdd)
    if n >= 1 then
        arg_index = first
        put_value(a, 0)
        if n >= 2 then
            arg_index = first + 1
            put_value(b, 0)
            if n >= 3 then
                arg_index = first + 2
                put_value(c, 0)
            end
        end
    end
    arg_index = nil
    return buf, pos
end

-- encode_array(t, n): like encode_args for an array table with n entries.
function _M.encode_array(t, n, first)
    reset()
    put_head(n, 0x90, 15, nil, 0xdc, 0xdd)
    for i = 1, n do
        arg_index = (first or 1) + i - 1
        put_value(t[i], 0)
    end
    arg_index = nil
    return buf, pos
end

-- to_string(v): the encoded bytes as a Lua string (options caches, tests).
function _M.to_string(v)
    local p, n = _M.encode(v)
    return ffi_string(p, n)
end

---------------------------------------------------------------- decoder
local src, src_len, at -- the frame being decoded: pointer, length, offset
local uint8_ptr = ffi.typeof("const uint8_t *")
local ffi_cast = ffi.cast

local function bad(what)
    error("resty.ffi: corrupt frame: " .. what .. " at offset " .. at, 0)
end

local function need(n)
    if at + n > src_len then
        bad("truncated (" .. n .. " more bytes needed of " .. src_len .. ")")
    end
end

local function get_uint(n)
    need(n)
    local p = src + at
    at = at + n
    if n == 1 then
        return p[0]
    elseif n == 2 then
        return p[0] * 256 + p[1]
    end
    return ((p[0] * 256 + p[1]) * 256 + p[2]) * 256 + p[3]
end

local function get_scratch64()
    need(8)
    local p = src + at
    local b = scratch.b
    for i = 0, 7 do
        b[7 - i] = p[i]
    end
    at = at + 8
end

local MAX_EXACT = 9007199254740992
local MAX_DEPTH = 200

-- Item kinds read_item returns besides a plain value.
local SCALAR, ARRAY, MAP = 0, 1, 2

local function get_string(n)
    need(n)
    local s = ffi_string(src + at, n)
    at = at + n
    return s
end

local read_records

local function get_ext(n)
    need(n + 1)
    local typ = src[at]
    at = at + 1
    if typ == 0 and n == 0 then
        return ngx_null
    elseif typ == 1 and n == 8 then
        get_scratch64()
        return _M.wrap_handle(tonumber(scratch.u))
    elseif typ == 2 then
        return read_records(n)
    end
    bad("unsupported extension type " .. typ)
end

-- read_item reads one scalar (returning SCALAR, value) or the header of an
-- array or map (returning ARRAY or MAP, element count); read_value fills
-- the containers.
local function read_item()
    need(1)
    local t = src[at]
    at = at + 1
    if t < 0x80 then
        return SCALAR, t
    elseif t >= 0xe0 then
        return SCALAR, t - 256
    elseif t >= 0xa0 and t <= 0xbf then
        return SCALAR, get_string(t - 0xa0)
    elseif t >= 0x90 and t <= 0x9f then
        return ARRAY, t - 0x90
    elseif t >= 0x80 and t <= 0x8f then
        return MAP, t - 0x80
    elseif t == 0xc0 then
        return SCALAR, nil
    elseif t == 0xc2 then
        return SCALAR, false
    elseif t == 0xc3 then
        return SCALAR, true
    elseif t == 0xd9 or t == 0xc4 then
        return SCALAR, get_string(get_uint(1))
    elseif t == 0xda or t == 0xc5 then
        return SCALAR, get_string(get_uint(2))
    elseif t == 0xdb or t == 0xc6 then
        return SCALAR, get_string(get_uint(4))
    elseif t == 0xcc then
        return SCALAR, get_uint(1)
    elseif t == 0xcd then
        return SCALAR, get_uint(2)
    elseif t == 0xce then
        return SCALAR, get_uint(4)
    elseif t == 0xcf then
        get_scratch64()
        local u = scratch.u
        if u <= MAX_EXACT then
            return SCALAR, tonumber(u)
        end
        return SCALAR, uint64_t(u)
    elseif t == 0xd0 then
        local v = get_uint(1)
        return SCALAR, v >= 128 and v - 256 or v
    elseif t == 0xd1 then
        local v = get_uint(2)
        return SCALAR, v >= 32768 and v - 65536 or v
    elseif t == 0xd2 then
        local v = get_uint(4)
        return SCALAR, v >= 2147483648 and v - 4294967296 or v
    elseif t == 0xd3 then
        get_scratch64()
        local i = scratch.i
        if i <= MAX_EXACT and i >= -MAX_EXACT then
            return SCALAR, tonumber(i)
        end
        return SCALAR, int64_t(i)
    elseif t == 0xca then
        need(4)
        local p, b = src + at, scratch.b
        b[3], b[2], b[1], b[0] = p[0], p[1], p[2], p[3]
        at = at + 4
        return SCALAR, tonumber(scratch.f)
    elseif t == 0xcb then
        get_scratch64()
        return SCALAR, tonumber(scratch.d)
    elseif t == 0xdc then
        return ARRAY, get_uint(2)
    elseif t == 0xdd then
        return ARRAY, get_uint(4)
    elseif t == 0xde then
        return MAP, get_uint(2)
    elseif t == 0xdf then
        return MAP, get_uint(4)
    elseif t >= 0xd4 and t <= 0xd8 then
        return SCALAR, get_ext(2 ^ (t - 0xd4))
    elseif t == 0xc7 then
        return SCALAR, get_ext(get_uint(1))
    elseif t == 0xc8 then
        return SCALAR, get_ext(get_uint(2))
    elseif t == 0xc9 then
        return SCALAR, get_ext(get_uint(4))
    end
    at = at - 1
    bad(("unknown type byte 0x%02x"):format(t))
end

-- The containers being filled, innermost last: the table, how many
-- elements it still expects, whether it is a map, the next array index,
-- and a map key waiting for its value. depth is how many are open.
local open_tab, open_left, open_map, open_index, open_key = {}, {}, {}, {}, {}
local depth = 0

-- read_value reads one complete value at `at`. The containers it opens are
-- filled by its loop, not by recursion, so LuaJIT can compile the decoder
-- (a recursive one falls back to the interpreter on each nested table). It
-- is re-entered only for a container inside a Records cell, above the
-- containers already open.
--
-- The loop is shaped for LuaJIT's traces: a single loop (a container that
-- fills up is stored by the next turn, not by an inner loop), one exit
-- (the break; no return inside the loop), and no local that carries values
-- of changing types from one turn to the next (the finished container
-- waits in open_tab). Without these, which branches got compiled depended
-- on the shapes of the first frames a worker decoded: later frames of
-- other shapes could decode 3 to 4 times slower, in the interpreter.
local decoded -- the value read_value's loop leaves on its way out
local function read_value()
    local base = depth
    local closing = false -- open_tab[depth + 1] is complete: store it next
    while true do
        local v
        if closing then
            closing = false
            v = open_tab[depth + 1]
            open_tab[depth + 1] = nil
        else
            local kind
            kind, v = read_item()
            if kind ~= SCALAR then
                -- every element takes at least one byte (two per map pair)
                if v * kind > src_len - at then
                    bad((kind == ARRAY and "array of " or "map of ") .. v
                        .. " elements in a " .. src_len .. "-byte frame")
                end
                local t
                if kind == ARRAY then
                    t = setmetatable(new_tab(v, 0), array_mt)
                else
                    t = setmetatable(new_tab(0, v), map_mt)
                end
                if v > 0 then
                    if depth == MAX_DEPTH then
                        bad("nesting deeper than " .. MAX_DEPTH)
                    end
                    depth = depth + 1
                    open_tab[depth], open_left[depth] = t, v
                    open_map[depth], open_index[depth], open_key[depth] = kind == MAP, 0, nil
                    goto continue
                end
                v = t
            end
        end
        if depth == base then
            decoded = v
            break
        end
        -- v is complete: store it in the innermost open container
        do
            local t = open_tab[depth]
            if open_map[depth] then
                local k = open_key[depth]
                if k == nil then
                    if v == nil or v ~= v then
                        bad("map key is nil or NaN")
                    end
                    open_key[depth] = v
                    goto continue
                end
                if v == nil then v = ngx_null end
                t[k] = v
                open_key[depth] = nil
            else
                local i = open_index[depth] + 1
                open_index[depth] = i
                if v == nil then v = ngx_null end
                t[i] = v
            end
            local left = open_left[depth] - 1
            if left > 0 then
                open_left[depth] = left
            else
                -- full: it stays in open_tab[depth + 1] for the next turn
                depth = depth - 1
                closing = true
            end
        end
        ::continue::
    end
    local v = decoded
    decoded = nil
    return v
end

-- records_array reads the header of one of a Records payload's two arrays.
local function records_array(what)
    local kind, n = read_item()
    if kind ~= ARRAY then
        bad("records payload without its " .. what)
    end
    return n
end

-- read_records(n) decodes the n-byte payload of a Records value into an
-- array of maps that all use the same key strings.
read_records = function(n)
    local stop = at + n
    -- Records nest through their cells: count them as containers
    if depth == MAX_DEPTH then
        bad("nesting deeper than " .. MAX_DEPTH)
    end
    depth = depth + 1
    local nkeys = records_array("keys")
    if nkeys > stop - at then
        bad(nkeys .. " records keys in " .. (stop - at) .. " bytes")
    end
    -- every record starts as a copy of a template that already holds the
    -- keys, so filling it in inserts nothing
    local keys, template = new_tab(nkeys, 0), new_tab(0, nkeys)
    for j = 1, nkeys do
        local kind, k = read_item()
        if kind ~= SCALAR or type(k) ~= "string" then
            bad("records key is not a string")
        end
        keys[j] = k
        template[k] = ngx_null
    end
    local ncells = records_array("cells")
    if ncells > stop - at or (nkeys == 0 and ncells > 0)
            or (nkeys > 0 and ncells % nkeys ~= 0) then
        bad(ncells .. " records cells for " .. nkeys .. " keys")
    end
    local rows = setmetatable(new_tab(nkeys > 0 and ncells / nkeys or 0, 0), array_mt)
    -- one flat loop over the cells: LuaJIT compiles it into one trace,
    -- where a loop over the few columns nested in a loop over rows would
    -- be unrolled and abandoned
    local row, nrows, j = nil, 0, nkeys
    for _ = 1, ncells do
        if j == nkeys then
            row = setmetatable(clone(template), map_mt)
            nrows = nrows + 1
            rows[nrows] = row
            j = 0
        end
        j = j + 1
        local cell = at
        local kind, v = read_item()
        if kind ~= SCALAR then
            at = cell
            v = read_value()
        end
        if v == nil then v = ngx_null end
        row[keys[j]] = v
    end
    if at ~= stop then
        bad("records payload length " .. n .. " does not match its contents")
    end
    depth = depth - 1
    return rows
end

local function decode_frame(p, n)
    -- buffers arrive as char *, which is signed: read them as bytes
    src, src_len, at, depth = ffi_cast(uint8_ptr, p), tonumber(n), 0, 0
    local v = read_value()
    if at ~= src_len then
        bad((src_len - at) .. " trailing bytes")
    end
    src = nil
    return v
end

-- decode_lone_scalar returns true, value when the frame is one string,
-- small integer, nil or boolean, the commonest results. Those skip the
-- pcall and decode_frame's loop: a loop that runs once and returns is a
-- trace LuaJIT cannot finish ("return to lower frame"), and once it is
-- blacklisted every result decodes in the interpreter.
local function decode_lone_scalar(b, n)
    local t = b[0]
    if t >= 0xa0 and t <= 0xbf then
        if n == t - 0x9f then
            return true, ffi_string(b + 1, n - 1)
        end
    elseif t == 0xd9 or t == 0xc4 then
        if n >= 2 and n == b[1] + 2 then
            return true, ffi_string(b + 2, n - 2)
        end
    elseif n == 1 then
        if t < 0x80 then
            return true, t
        elseif t == 0xc0 then
            return true, nil
        elseif t == 0xc3 or t == 0xc2 then
            return true, t == 0xc3
        end
    end
    return false
end

-- decode(pointer, length) -> value, or nil, err for a malformed frame.
-- The pointer must stay valid during the call; nothing keeps it after.
function _M.decode(p, n)
    n = tonumber(n)
    if n > 0 then
        local lone, v = decode_lone_scalar(ffi_cast(uint8_ptr, p), n)
        if lone then
            return v
        end
    end
    local ok, v = pcall(decode_frame, p, n)
    src = nil
    if not ok then
        -- a bad frame leaves containers open: drop them
        for i = 1, MAX_DEPTH do
            open_tab[i], open_key[i] = nil, nil
        end
        return nil, v
    end
    return v
end

-- decode_string(s): decode a frame held in a Lua string.
function _M.decode_string(s)
    if type(s) ~= "string" then
        error("resty.ffi: decode_string: argument #1 must be a string", 2)
    end
    return _M.decode(s, #s)
end

return _M
