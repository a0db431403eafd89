package t::Backend;

# need_backend($name, $host, $port): skip the whole file when a backend
# (Redis, PostgreSQL, ...) is not listening; under CI, bail out instead.
# Shared by t::FFI (Test::Nginx suites) and the t::Standalone suites.

use strict;
use warnings;
use IO::Socket::INET ();
use Test::More ();

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
