package t::Standalone;

# For the suites that drive nginx themselves (reloads, installs, soak):
# write a configuration, start, stop. Test::Nginx blocks cannot express
# "HUP five times under load" or "serve from a freshly installed tree".
#
#     use lib '.';
#     use t::Standalone;
#     my $n = t::Standalone->new(prefix => $dir, workers => 2, http => $http_block);
#     $n->start or BAIL_OUT("nginx did not start");
#     ... $n->port, $n->master_pid, $n->error_log_lines ...
#     $n->stop;
#
# `conf => $text` instead of `http` writes a whole nginx.conf as given
# (examples/nginx.conf, say); it must keep its pid file in logs/nginx.pid.

use strict;
use warnings;
use File::Path qw(make_path remove_tree);

sub new {
    my ($class, %opt) = @_;
    my $self = bless {
        nginx   => $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx',
        port    => $ENV{TEST_NGINX_SERVER_PORT} || 1984,
        modules => $ENV{TEST_NGINX_LOAD_MODULES}
            || '/usr/lib/nginx/modules/ndk_http_module.so /usr/lib/nginx/modules/ngx_http_lua_module.so',
        workers   => 1,
        log_level => 'info',
        %opt,
    }, $class;
    die "t::Standalone: prefix and http (or conf) are required"
        unless $self->{prefix} && ($self->{http} || $self->{conf});
    return $self;
}

sub port { $_[0]{port} }
sub prefix { $_[0]{prefix} }

# write_conf: a fresh prefix (world-writable: workers run as nobody when
# the tests run as root) and its nginx.conf; $PORT in the http block is
# replaced by the listen port.
sub write_conf {
    my $self = shift;
    my $p = $self->{prefix};
    remove_tree($p);
    make_path("$p/conf", "$p/logs", @{ $self->{dirs} || [] });
    chmod 0777, $p, "$p/logs", @{ $self->{dirs} || [] };
    if (defined $self->{conf}) {
        (my $conf = $self->{conf}) =~ s/\$PORT\b/$self->{port}/g;
        open my $fh, '>', "$p/conf/nginx.conf" or die "$p/conf/nginx.conf: $!";
        print $fh $conf;
        close $fh;
        return;
    }
    my $load = join "", map { "load_module $_;\n" } split ' ', $self->{modules};
    my $user = $> == 0 ? "user nobody nogroup;" : "";
    (my $http = $self->{http}) =~ s/\$PORT\b/$self->{port}/g;
    open my $fh, '>', "$p/conf/nginx.conf" or die "$p/conf/nginx.conf: $!";
    print $fh <<"_EOC_";
$load
$user
worker_processes $self->{workers};
daemon on;
master_process on;
pid logs/nginx.pid;
error_log logs/error.log $self->{log_level};
events { worker_connections 1024; }
http {
$http
}
_EOC_
    close $fh;
}

sub start {
    my $self = shift;
    $self->write_conf;
    return system($self->{nginx}, '-p', "$self->{prefix}/", '-c', 'conf/nginx.conf') == 0;
}

sub master_pid {
    my $self = shift;
    open my $fh, '<', "$self->{prefix}/logs/nginx.pid" or return;
    my $pid = <$fh>;
    chomp $pid;
    return $pid;
}

# stop: QUIT (graceful), then wait up to $timeout seconds; true when gone.
sub stop {
    my ($self, $timeout) = @_;
    my $pid = $self->master_pid or return 1;
    kill 'QUIT', $pid;
    for (1 .. 10 * ($timeout || 10)) {
        return 1 unless kill 0, $pid;
        select undef, undef, undef, 0.1;
    }
    return !kill(0, $pid);
}

sub error_log_lines {
    my $self = shift;
    open my $fh, '<', "$self->{prefix}/logs/error.log" or return ();
    my @lines = <$fh>;
    close $fh;
    return @lines;
}

1;
