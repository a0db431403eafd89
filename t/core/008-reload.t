# vim:set ft= ts=4 sw=4 et fdm=marker:
# Reload (HUP) five times while calls are in flight: no error, no crash,
# no doorbell socket or directory left behind, and every exiting worker
# shuts its Go runtime down (at process exit: no exit_worker_by_lua here).  A plain Test::More file
# (it drives nginx itself), run by prove like the Test::Nginx suites.
use strict;
use warnings;
use lib '.';
use t::Standalone;
use Test::More;
use Cwd qw(cwd);
use File::Path qw(remove_tree);
use HTTP::Tiny;

my $root = cwd();
my $prefix = "$root/t/servroot-reload";
my $sockdir = "$prefix/sock";
my $n = t::Standalone->new(prefix => $prefix, workers => 2, dirs => [$sockdir], http => <<"_EOC_");
    access_log off;
    lua_package_path "$root/lua/?.lua;/usr/share/lua/5.1/?.lua;;";
    lua_package_cpath "$root/build/?.so;;";
    init_worker_by_lua_block {
        local rffi = require "resty.ffi"
        rffi.configure{ socket_dir = "$sockdir" }
        assert(rffi.load())
    }
    server {
        listen 127.0.0.1:\$PORT;
        location = /t {
            content_by_lua_block {
                local echo = assert(require("resty.ffi").open("echo"))
                assert(echo:call("sleep", 30))
                ngx.say(echo:call("echo", "ok"))
                assert(echo:submit("echo", "from the log phase"))
            }
        }
    }
_EOC_
my $port = $n->port;
$n->start or BAIL_OUT("nginx did not start");
my $http = HTTP::Tiny->new(timeout => 10);
for (1 .. 50) { last if $http->get("http://127.0.0.1:$port/t")->{success}; select undef, undef, undef, 0.1 }

# Load: 4 clients for the whole run, each counting failures.
my @clients;
for my $c (1 .. 4) {
    my $pid = fork // die $!;
    if ($pid == 0) {
        my ($ok, $bad) = (0, 0);
        my $until = time + 5;
        my $h = HTTP::Tiny->new(timeout => 10, keep_alive => 0);
        while (time < $until) {
            my $r = $h->get("http://127.0.0.1:$port/t");
            if ($r->{status} == 200 && $r->{content} eq "ok\n") { $ok++ } else { $bad++ }
        }
        exit($bad > 0 ? 1 : 0) if $ok > 0;
        exit 2;
    }
    push @clients, $pid;
}
for (1 .. 5) {
    select undef, undef, undef, 0.7;
    kill 'HUP', $n->master_pid;
}
my $failed = 0;
for my $pid (@clients) { waitpid $pid, 0; $failed++ if $? != 0 }
is($failed, 0, "every request during 5 reloads answered 200 ok");

ok($n->stop, "nginx stopped");
my @lines = $n->error_log_lines;
my @bad = grep { /\[(error|alert|crit|emerg)\]|exited on signal/ } @lines;
is(scalar(@bad), 0, "no error, alert or crash in the error log") or diag(@bad[0 .. ($#bad < 9 ? $#bad : 9)]);
my $exited = grep { /worker process \d+ exited with code 0/ } @lines;
my $shut = grep { /resty\.ffi\(go\): shut down in/ } @lines;
ok($exited >= 10 && $shut == $exited, "each of the $exited exited workers shut Go down ($shut)");

opendir my $d, $sockdir or die $!;
my @left = grep { !/^\.\.?$/ } readdir $d;
closedir $d;
is(scalar(@left), 0, "no doorbell socket or directory left behind") or diag("@left");

remove_tree($prefix) unless $ENV{TEST_NGINX_NO_CLEAN};
done_testing();
