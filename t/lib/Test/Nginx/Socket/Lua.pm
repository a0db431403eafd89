package Test::Nginx::Socket::Lua;

# ngx_lua flavour of the project's minimal Test::Nginx::Socket runner (see
# t/lib/Test/Nginx/Socket.pm).  Like the real module it only adds support for
# TEST_NGINX_INIT_BY_LUA: Lua code injected into every block's init_by_lua.

use Test::Nginx::Socket -Base;

our $VERSION = '0.01';

my $code = $ENV{TEST_NGINX_INIT_BY_LUA};

if (defined $code && $code ne '') {
    Test::Nginx::Socket::set_http_config_filter(sub {
        my $config = shift;
        return $config if $config =~ /\binit_by_lua_file\b/;
        # prepend to an existing init_by_lua_block, or add one
        return $config if $config =~ s/\binit_by_lua_block\s*\{/init_by_lua_block {\n$code\n/;
        return $config . "\n    init_by_lua_block {\n$code\n    }\n";
    });
}

1;
