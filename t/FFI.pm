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
use t::Backend ();

our @EXPORT = qw(need_backend);

# Every block sees the project's Lua modules and the built Go library, or,
# when TEST_NGINX_LUA_DIR and TEST_NGINX_CLIB_DIR name an installed tree
# (t/core/010-install.t), that tree alone.  An optional
# `--- init_by_lua_block` section (a common convention, not a Test::Nginx
# section) becomes an init_by_lua_block in http_config.
my ($LuaDir, $ClibDir, $Default) = ("$Root/lua", "$Root/build", ";;");
if ($ENV{TEST_NGINX_LUA_DIR} && $ENV{TEST_NGINX_CLIB_DIR}) {
    ($LuaDir, $ClibDir, $Default) = ($ENV{TEST_NGINX_LUA_DIR}, $ENV{TEST_NGINX_CLIB_DIR}, "");
}
add_block_preprocessor(sub {
    my $block = shift;
    my $http_config = <<"_EOC_";
    lua_package_path "$LuaDir/?.lua;$Root/t/lib/?.lua;/usr/share/lua/5.1/?.lua$Default";
    lua_package_cpath "$ClibDir/?.so$Default";
_EOC_
    if (defined(my $init = $block->init_by_lua_block)) {
        $http_config .= "    init_by_lua_block {\n$init\n    }\n";
    }
    $http_config .= $block->http_config // '';
    $block->set_value('http_config', $http_config);
});

# need_backend($name, $host, $port): see t/Backend.pm.
sub need_backend ($$$) { t::Backend::need_backend($_[0], $_[1], $_[2]) }

1;
