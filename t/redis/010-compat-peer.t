# vim:set ft= ts=4 sw=4 et fdm=marker:
#
# The compatibility suite (t/redis/compat.spec) against Debian's lua-resty-redis (nginx.redis, package lua-nginx-redis).
# 010-compat-peer.t and 011-compat-ffi.t run the same blocks with the
# same expected output.

use lib '.';
use t::FFI;

BEGIN { $ENV{TEST_NGINX_REDIS_MODULE} = 'nginx.redis' }

need_backend('redis', '127.0.0.1', 16379);
need_backend('redis (password)', '127.0.0.1', 16380);

spec_file('t/redis/compat.spec');

repeat_each(1);
plan tests => repeat_each() * (blocks() * 3);
no_shuffle();
run_tests();
