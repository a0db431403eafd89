# vim:set ft= ts=4 sw=4 et fdm=marker:
# Core security: a payload above max_payload is refused in C before Go sees
# or allocates anything, and the doorbell leaves nothing another process
# could connect to while nginx serves. (A peer in another process that does
# reach the socket is refused: core/doorbell_test.go's
# TestDoorbellRefusesOtherProcesses runs the intruder as a separate process.)
use lib '.';
use t::FFI;
use File::Path ();

repeat_each(1);
plan tests => repeat_each() * (blocks() * 3);
no_shuffle();

# a socket_dir of our own, so the test can look at all it holds
$ENV{TEST_NGINX_SOCK_DIR} = "/tmp/rffi-sec-sock-$$";
File::Path::make_path($ENV{TEST_NGINX_SOCK_DIR});
# like /tmp (the default socket_dir): whatever user the workers run as
chmod 01777, $ENV{TEST_NGINX_SOCK_DIR};
# touched after the directory: the directory is newer than it only once
# something was made (and removed) inside
{ open my $ref, '>', "$ENV{TEST_NGINX_SOCK_DIR}.ref" or die $!; close $ref; }
END {
    if ($ENV{TEST_NGINX_SOCK_DIR}) {
        File::Path::remove_tree($ENV{TEST_NGINX_SOCK_DIR});
        unlink "$ENV{TEST_NGINX_SOCK_DIR}.ref";
    }
}

run_tests();

__DATA__

=== TEST 1: a payload above max_payload: a clear error, and Go's counters do not move
--- http_config
    init_worker_by_lua_block {
        require("resty.ffi").configure{ max_payload = 4096 }
    }
--- config
    location = /t {
        content_by_lua_block {
            local rffi = require "resty.ffi"
            local echo = assert(rffi.open("echo"))
            assert(echo:call("echo", "warm"))
            local function counters()
                local s = rffi.stats()
                local rt = s.runtimes.echo
                return table.concat({ rt.submitted, rt.bytes_in, rt.failed, s.buffers_allocated,
                                      s.in_flight, s.submit_queue }, " ")
            end
            local before = counters()
            local big = string.rep("x", 64 * 1024)
            ngx.say("call: ", select(2, echo:call("echo", big)))
            ngx.say("call_timeout: ", select(2, echo:call_timeout(1000, "echo", "a", big)))
            ngx.say("submit: ", select(2, echo:submit("echo", big)))
            -- many large elements, each small: the encoded frame is what counts
            local many = {}
            for i = 1, 100 do many[i] = string.rep("y", 100) end
            ngx.say("table: ", select(2, echo:call("echo", many)))
            ngx.say("counters unchanged: ", counters() == before)
            -- and the runtime still serves
            ngx.say("after: ", echo:call("echo", string.rep("z", 100)) == string.rep("z", 100))
        }
    }
--- request
GET /t
--- timeout: 20
--- response_body
call: payload too large
call_timeout: payload too large
submit: payload too large
table: payload too large
counters unchanged: true
after: true
--- no_error_log
[error]



=== TEST 2: the doorbell's socket and directory are gone once the dispatcher is connected
--- http_config
    init_worker_by_lua_block {
        require("resty.ffi").configure{ socket_dir = "$TEST_NGINX_SOCK_DIR" }
    }
--- config
    location = /t {
        content_by_lua_block {
            local rffi = require "resty.ffi"
            local echo = assert(rffi.open("echo"))
            -- the first call starts the dispatcher, which connects to the doorbell
            ngx.say("call: ", echo:call("echo", "ring"))
            local function sh(cmd)
                local p = assert(io.popen(cmd))
                local out = p:read("*l")
                p:close()
                return out
            end
            local dir = "$TEST_NGINX_SOCK_DIR"
            -- the worker did use socket_dir: it changed after the reference file
            ngx.say("socket_dir used: ", sh("find '" .. dir .. "' -maxdepth 0 -newer '" .. dir .. ".ref' | wc -l"))
            ngx.say("entries left in socket_dir: ", sh("find '" .. dir .. "' -mindepth 1 | wc -l"))
        }
    }
--- request
GET /t
--- timeout: 20
--- response_body
call: ring
socket_dir used: 1
entries left in socket_dir: 0
--- no_error_log
[error]
