package t::FFI;

# Shared preamble of every test suite:
#
#     use lib '.';
#     use t::FFI;
#     repeat_each(1);
#     plan tests => repeat_each() * (blocks() * 2);
#     run_tests();
#     __DATA__
#
# Works with the real Test::Nginx (prove -r t/) and with the project's
# minimal runner under t/lib (prove -I t/lib -r t/).  Run from the project
# root.
#
# NB: Spiffy's `-Base` source filter adds `my $self = shift;` to named subs
# without a prototype, so every sub here has one.

use Cwd ();

our $Root;

BEGIN {
    # Debian's nginx + dynamic modules; NDK must be loaded before ngx_lua.
    $ENV{TEST_NGINX_BINARY} ||= '/usr/sbin/nginx';
    $ENV{TEST_NGINX_LOAD_MODULES} ||=
        '/usr/lib/nginx/modules/ndk_http_module.so'
        . ' /usr/lib/nginx/modules/ngx_http_lua_module.so';

    # The project root (tests run from it); also usable in sections as
    # $TEST_NGINX_ROOT.
    $Root = Cwd::cwd();
    $ENV{TEST_NGINX_ROOT} = $Root;
}

use Test::Nginx::Socket::Lua -Base;
use IO::Socket::INET ();

our @EXPORT = qw(need_backend);

# Every block sees the project's Lua modules and the built Go library.  An
# optional `--- init_by_lua_block` section (a common convention, not a
# Test::Nginx section) becomes an init_by_lua_block in http_config.
add_block_preprocessor(sub {
    my $block = shift;
    my $http_config = <<"_EOC_";
    lua_package_path "$Root/lua/?.lua;$Root/t/lib/?.lua;/usr/share/lua/5.1/?.lua;;";
    lua_package_cpath "$Root/build/?.so;;";
_EOC_
    if (defined(my $init = $block->init_by_lua_block)) {
        $http_config .= "    init_by_lua_block {\n$init\n    }\n";
    }
    $http_config .= $block->http_config // '';
    $block->set_value('http_config', $http_config);
});

# need_backend($name, $host, $port): skip the whole file when a backend
# (Redis, PostgreSQL, ...) is not listening; under CI, bail out instead.
sub need_backend ($$$) {
    my ($name, $host, $port) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port,
                                     Proto => 'tcp', Timeout => 2);
    if ($sock) {
        close $sock;
        return 1;
    }
    my $msg = "backend $name is not reachable at $host:$port; "
            . "start it with `make backends`";
    if ($ENV{CI}) {
        # (a plan first keeps Test::Base's END block quiet)
        Test::More::plan('no_plan') unless Test::More->builder->has_plan;
        Test::More::BAIL_OUT($msg);
    }
    Test::More::plan(skip_all => $msg);
}

1;
