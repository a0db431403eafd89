#!/usr/bin/env bash
# Codec benchmark: how long the Lua decoder takes for a 100-row x 5-column
# result, as an array of maps (the generic decoder) and as Records, in a
# fresh worker and in workers that decoded other shapes first. LuaJIT
# compiles the decoder for the shapes it meets first; the figures show
# whether a worker's history changes the cost of later frames. Prints a
# Markdown section.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib.sh"
work="$BENCH_ROOT/bench/.work/codec"
rm -rf "$work"
mkdir -p "$work/conf" "$work/logs"
chmod 755 "$BENCH_ROOT/bench/.work" "$work"
port=${CODEC_BENCH_PORT:-8189}
trap 'stop_nginx "$work"' EXIT

{
    nginx_main_preamble
    cat <<'_EOC_'
http {
    access_log off;
    lua_package_path "@ROOT@/lua/?.lua;/usr/share/lua/5.1/?.lua;;";
    server {
        listen 127.0.0.1:@PORT@;
        location = /decode {
            content_by_lua_block {
                local codec = require "resty.ffi.codec"
                local decode = codec.decode_string
                local names = { "id", "name", "n", "flag", "d" }
                local types = { "int4", "text", "int4", "bool", "text" }
                local rows, cells = {}, {}
                for i = 1, 100 do
                    local r = { i, "name-" .. i, i * 1000, i % 2 == 0, "2024-01-" .. i }
                    rows[i] = setmetatable({}, codec.map_mt)
                    for j = 1, 5 do
                        rows[i][names[j]] = r[j]
                        cells[#cells + 1] = r[j]
                    end
                end
                local maps = codec.to_string({ names, types, rows, "SELECT 100", 100 })
                -- the same result as Go's postgres runtime writes it (ext 2)
                local payload = codec.to_string(names) .. codec.to_string(cells)
                local n = #payload
                local records = "\149" .. codec.to_string(names) .. codec.to_string(types)
                    .. string.char(0xc9, bit.rshift(n, 24), bit.band(bit.rshift(n, 16), 255),
                                   bit.band(bit.rshift(n, 8), 255), bit.band(n, 255), 2)
                    .. payload .. codec.to_string("SELECT 100") .. codec.to_string(100)
                local small = codec.to_string({ { "a" }, { "int4" }, { setmetatable({ a = 1 }, codec.map_mt) }, "SELECT 1", 1 })
                local arrays = {}
                for i = 1, 50 do arrays[i] = { i, "x" .. i, { k = i } } end
                arrays = codec.to_string(arrays)
                local first = ngx.var.arg_first
                if first == "records" then
                    for _ = 1, 30000 do decode(records) end
                elseif first == "shapes" then
                    for _ = 1, 30000 do decode(small); decode(arrays) end
                end
                local function median_us(frame)
                    for _ = 1, 500 do decode(frame) end
                    local t = {}
                    for r = 1, 7 do
                        ngx.update_time()
                        local t0 = ngx.now()
                        for _ = 1, 2000 do decode(frame) end
                        ngx.update_time()
                        t[r] = (ngx.now() - t0) / 2000 * 1e6
                    end
                    table.sort(t)
                    return t[4]
                end
                ngx.say(string.format("%.1f %.1f", median_us(maps), median_us(records)))
            }
        }
    }
}
_EOC_
} | sed -e "s|@ROOT@|$BENCH_ROOT|" -e "s|@PORT@|$port|" > "$work/conf/nginx.conf"
start_nginx "$work"

# every order in a fresh worker (a reload starts one), rounds alternating
declare -A maps_us records_us
orders=(fresh shapes records)
for ((round = 1; round <= BENCH_ROUNDS; round++)); do
    for o in "${orders[@]}"; do
        "$NGINX" -p "$work/" -c conf/nginx.conf -s reload
        sleep 1
        read -r m r < <(curl -s -m 120 "http://127.0.0.1:$port/decode?first=$o")
        maps_us[$o]+="$m "
        records_us[$o]+="$r "
        echo "bench: round $round codec after $o: maps $m us, records $r us" >&2
    done
done

worst() { printf '%s\n' "$@" | sort -g | tail -1; }
pairs() {
    local -a m r
    read -r -a m <<<"${maps_us[$1]}"
    read -r -a r <<<"${records_us[$1]}"
    local i out=""
    for i in "${!m[@]}"; do out+="${m[$i]}/${r[$i]} "; done
    echo "${out% }"
}

cat <<_EOF_
## Codec: decoding a 100-row x 5-column result in Lua

One nginx worker, a fresh one for each line (reload), nothing pinned. Each figure
is the median (and the worst) of $BENCH_ROUNDS rounds, each the median of 7 timings of
2000 decodes: the worst round shows a worker whose history made decoding slow.
The frame is \`[names, types, rows, tag, count]\` as resty.ffi.postgres sends it:
the rows as an array of maps (what the generic decoder sees for any module's
map results) or as a Records value (what postgres sends).

| the worker first decoded | array of maps, median (worst) µs | Records, median (worst) µs |
|---|---:|---:|
| nothing else | $(median ${maps_us[fresh]}) ($(worst ${maps_us[fresh]})) | $(median ${records_us[fresh]}) ($(worst ${records_us[fresh]})) |
| 30000 x (a 1-row result, 50 small arrays) | $(median ${maps_us[shapes]}) ($(worst ${maps_us[shapes]})) | $(median ${records_us[shapes]}) ($(worst ${records_us[shapes]})) |
| 30000 Records results | $(median ${maps_us[records]}) ($(worst ${maps_us[records]})) | $(median ${records_us[records]}) ($(worst ${records_us[records]})) |

Rounds, array of maps / Records in µs (a slow machine moment slows both; a worker's history
slows only the first): fresh $(pairs fresh); after small shapes $(pairs shapes); after Records $(pairs records).

_EOF_
