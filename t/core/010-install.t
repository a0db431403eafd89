# vim:set ft= ts=4 sw=4 et fdm=marker:
# The install paths users take, end to end: a source rock packed with
# `luarocks pack` and installed with `luarocks install --tree`, and
# `make install DESTDIR=... PREFIX=...`; each tree alone (plus the system's
# lua-resty-core) serves an nginx whose handlers call Go.
use strict;
use warnings;
use lib '.';
use t::Standalone;
use Test::More;
use Cwd qw(cwd);
use File::Temp qw(tempdir);
use HTTP::Tiny;

my $root = cwd();

for my $tool (qw(luarocks make tar)) {
    if (system("command -v $tool >/dev/null 2>&1") != 0) {
        my $msg = "$tool is not installed (make deps installs it)";
        BAIL_OUT($msg) if $ENV{CI};
        plan skip_all => $msg;
    }
}

my $tmp = tempdir("resty-ffi-install-XXXX", TMPDIR => 1, CLEANUP => !$ENV{TEST_NGINX_NO_CLEAN});
chmod 0755, $tmp;

sub run_ok {
    my ($name, $cmd) = @_;
    my $out = `$cmd 2>&1`;
    my $ok = ok($? == 0, $name);
    diag("\$ $cmd\n$out") unless $ok;
    return $ok;
}

# serve_ok($name, $luadir, $clibdir): nginx with only these directories (and
# the system's lua-resty-core) on its paths answers a call through Go.
sub serve_ok {
    my ($name, $luadir, $clibdir) = @_;
    my $n = t::Standalone->new(prefix => "$tmp/nginx-$name", log_level => 'warn', http => <<"_EOC_");
    access_log off;
    lua_package_path "$luadir/?.lua;/usr/share/lua/5.1/?.lua";
    lua_package_cpath "$clibdir/?.so";
    server {
        listen 127.0.0.1:\$PORT;
        location = /t {
            content_by_lua_block {
                local rffi = require "resty.ffi"
                local echo = assert(rffi.open("echo"))
                ngx.say(echo:call("echo", "installed"), " ",
                        package.searchpath("resty_ffi_go", package.cpath))
            }
        }
    }
_EOC_
    if (!$n->start) {
        fail("$name: nginx starts");
        return;
    }
    my $http = HTTP::Tiny->new(timeout => 10);
    my $res;
    for (1 .. 50) {
        $res = $http->get("http://127.0.0.1:" . $n->port . "/t");
        last if $res->{success};
        select undef, undef, undef, 0.1;
    }
    is($res->{content}, "installed $clibdir/resty_ffi_go.so\n", "$name: a call through Go answers, from the installed library");
    $n->stop;
}

# 1. make install with DESTDIR and PREFIX
my $dest = "$tmp/destdir";
run_ok("make install DESTDIR=... PREFIX=/opt/rffi",
       "make -s install DESTDIR=$dest PREFIX=/opt/rffi");
ok(-f "$dest/opt/rffi/share/lua/5.1/resty/ffi.lua"
   && -f "$dest/opt/rffi/share/lua/5.1/resty/ffi/codec.lua"
   && -f "$dest/opt/rffi/lib/lua/5.1/resty_ffi_go.so", "make install put the files under DESTDIR/PREFIX");
system("chmod -R a+rX $tmp");
serve_ok("make-install", "$dest/opt/rffi/share/lua/5.1", "$dest/opt/rffi/lib/lua/5.1");

# 2. a source rock: pack it, install it into a fresh tree
my $name = "lua-resty-ffi-go-0.1.0";
run_ok("a source tarball of the working tree",
       "git ls-files -z --cached --others --exclude-standard | tar --null -T - --transform 's,^,$name/,' -czf $tmp/$name.tar.gz");
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
