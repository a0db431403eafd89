# vim:set ft= ts=4 sw=4 et fdm=marker:
# The install paths users take, end to end: a source rock packed with
# `luarocks pack` and installed with `luarocks install --tree`, `luarocks make`
# from a checkout, and `make install DESTDIR=... PREFIX=...`. For each tree,
# with only that tree (plus the system's lua-resty-core) on nginx's paths:
# the core suite t/core/001-call.t passes, and one call per module (Redis,
# PostgreSQL, Kafka, gRPC) answers from the real backends.
use strict;
use warnings;
use lib '.';
use t::Standalone;
use t::Backend;
use Test::More;
use Cwd qw(cwd);
use File::Temp qw(tempdir);
use HTTP::Tiny;

my $root = cwd();

for my $tool (qw(luarocks make tar prove)) {
    if (system("command -v $tool >/dev/null 2>&1") != 0) {
        my $msg = "$tool is not installed (make deps installs it)";
        BAIL_OUT($msg) if $ENV{CI};
        plan skip_all => $msg;
    }
}
t::Backend::need_backend('redis', '127.0.0.1', 16379);
t::Backend::need_backend('postgres', '127.0.0.1', 15432);
t::Backend::need_backend('kafka', '127.0.0.1', 19092);
t::Backend::need_backend('grpc', '127.0.0.1', 15051);

my $tmp = tempdir("resty-ffi-install-XXXX", TMPDIR => 1, CLEANUP => !$ENV{TEST_NGINX_NO_CLEAN});
chmod 0755, $tmp;

sub run_ok {
    my ($name, $cmd) = @_;
    my $out = `$cmd 2>&1`;
    my $ok = ok($? == 0, $name);
    diag("\$ $cmd\n$out") unless $ok;
    return $ok;
}

# One call per module, and the core basics, from the installed files.
my $smoke = <<'_EOC_';
    local rffi = require "resty.ffi"
    ngx.say("lib ", package.searchpath("resty_ffi_go", package.cpath))
    ngx.say("module ", package.searchpath("resty.ffi", package.path))
    local echo = assert(rffi.open("echo"))
    ngx.say("echo ", echo:call("echo", "installed"))
    ngx.say("timeout ", select(2, echo:call_timeout(20, "sleep", 1000)))
    ngx.say("submit ", echo:submit("echo", "dropped"))

    local red = require("resty.ffi.redis"):new()
    red:set_timeout(2000)
    local ok, err = red:connect("127.0.0.1", 16379)
    if ok then
        ok, err = red:set("rffi:install", "stored")
    end
    ngx.say("redis ", ok and red:get("rffi:install") or err)

    local db = assert(require("resty.ffi.postgres").new({
        host = "127.0.0.1", port = 15432, user = "rffi", password = "rffi_pw",
        database = "rffi", sslmode = "disable", timeout = 5000 }))
    ngx.say("postgres ", db:query_value("SELECT $1::int + 1", 41))

    local kafka = require "resty.ffi.kafka"
    local brokers = { brokers = { "127.0.0.1:19092", "127.0.0.1:19093", "127.0.0.1:19094" } }
    kafka.create_topic(brokers, "rffi-install", 1, 1)   -- or "already exists"
    local p = assert(kafka.producer(brokers))
    ngx.say("kafka ", p:send("rffi-install", "k", "installed"))

    local grpc = require "resty.ffi.grpc"
    local conn = assert(grpc.connect("127.0.0.1:15051", { reflection = true, timeout = 5000 }))
    local res, gerr = conn:call("rffitest.v1.TestService", "SayHello", { name = "installed" })
    ngx.say("grpc ", res and res.message or gerr)
_EOC_

# serve_ok($name, $luadir, $clibdir): with only these directories (and the
# system's lua-resty-core) on nginx's paths, the core suite passes and every
# module answers.
sub serve_ok {
    my ($name, $luadir, $clibdir) = @_;
    run_ok("$name: t/core/001-call.t passes from the installed tree",
           "TEST_NGINX_LUA_DIR=$luadir TEST_NGINX_CLIB_DIR=$clibdir prove -I t/lib t/core/001-call.t");
    my $n = t::Standalone->new(prefix => "$tmp/nginx-$name", log_level => 'warn', http => <<"_EOC_");
    access_log off;
    lua_package_path "$luadir/?.lua;/usr/share/lua/5.1/?.lua";
    lua_package_cpath "$clibdir/?.so";
    server {
        listen 127.0.0.1:\$PORT;
        location = /t {
            content_by_lua_block {
$smoke
            }
        }
    }
_EOC_
    if (!$n->start) {
        fail("$name: nginx starts");
        return;
    }
    my $http = HTTP::Tiny->new(timeout => 20);
    my $res;
    for (1 .. 50) {
        $res = $http->get("http://127.0.0.1:" . $n->port . "/t");
        last if $res->{success};
        select undef, undef, undef, 0.1;
    }
    is($res->{content}, <<"_EOR_", "$name: the core and every module answer from the installed files");
lib $clibdir/resty_ffi_go.so
module $luadir/resty/ffi.lua
echo installed
timeout timeout
submit true
redis stored
postgres 42
kafka true
grpc Hello installed
_EOR_
    $n->stop;
    my @bad = grep { /\[(error|crit|alert|emerg)\]/ } $n->error_log_lines;
    is(scalar(@bad), 0, "$name: no error in the error log") or diag(@bad);
}

# 1. make install PREFIX=...: the tree nginx serves from
run_ok("make install PREFIX=...", "make -s install PREFIX=$tmp/prefix");
system("chmod -R a+rX $tmp");
serve_ok("make-install", "$tmp/prefix/share/lua/5.1", "$tmp/prefix/lib/lua/5.1");

# 2. make install DESTDIR=... PREFIX=...: staged under DESTDIR, nothing
# written to PREFIX itself
my $dest = "$tmp/destdir";
my $staged = "/opt/rffi-install-test-$$";
run_ok("make install DESTDIR=... PREFIX=...", "make -s install DESTDIR=$dest PREFIX=$staged");
ok(-f "$dest$staged/share/lua/5.1/resty/ffi.lua"
   && -f "$dest$staged/share/lua/5.1/resty/ffi/kafka.lua"
   && -x "$dest$staged/lib/lua/5.1/resty_ffi_go.so", "make install put the files under DESTDIR/PREFIX");
ok(!-e $staged, "make install with DESTDIR wrote nothing to PREFIX itself");

# 3. a source tarball of the working tree, as a release would be
my $name = "lua-resty-ffi-go-0.1.0";
run_ok("a source tarball of the working tree",
       "git ls-files -z --cached --others --exclude-standard | tar --null -T - --transform 's,^,$name/,' -czf $tmp/$name.tar.gz");

# 4. from a fresh checkout: without Go, the build says so; `luarocks make`
# builds and installs into a tree
my $co = "$tmp/checkout/$name";
run_ok("a fresh checkout", "mkdir -p $tmp/checkout && tar -C $tmp/checkout -xzf $tmp/$name.tar.gz");
my $nogo = `cd $co && env PATH=/usr/bin:/bin make build GO=/nonexistent/go 2>&1`;
ok($? != 0 && $nogo =~ /Go is required to build resty_ffi_go\.so \(set GO=/,
   "without Go the build fails and says Go is required") or diag($nogo);
run_ok("luarocks make from the checkout builds and installs it",
       "cd $co && luarocks make --tree $tmp/tree-make rockspec/lua-resty-ffi-go-scm-1.rockspec");
system("chmod -R a+rX $tmp");
serve_ok("luarocks-make", "$tmp/tree-make/share/lua/5.1", "$tmp/tree-make/lib/lua/5.1");

# 5. a source rock: pack it, install it into a fresh tree
open my $in, '<', "rockspec/lua-resty-ffi-go-0.1.0-1.rockspec" or die $!;
my $spec = do { local $/; <$in> };
close $in;
$spec =~ s/source = \{.*?\n\}/source = {\n    url = "file:\/\/$tmp\/$name.tar.gz",\n    dir = "$name",\n}/s;
open my $out, '>', "$tmp/lua-resty-ffi-go-0.1.0-1.rockspec" or die $!;
print $out $spec;
close $out;
run_ok("luarocks pack makes a source rock",
       "cd $tmp && luarocks pack lua-resty-ffi-go-0.1.0-1.rockspec");
ok(-f "$tmp/lua-resty-ffi-go-0.1.0-1.src.rock", "the .src.rock exists");
run_ok("luarocks install --tree builds and installs it",
       "cd $tmp && luarocks install --tree $tmp/tree lua-resty-ffi-go-0.1.0-1.src.rock");
system("chmod -R a+rX $tmp");
serve_ok("luarocks", "$tmp/tree/share/lua/5.1", "$tmp/tree/lib/lua/5.1");

done_testing();
