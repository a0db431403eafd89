package Test::Nginx::Socket;

# A small, self-contained, Test::Nginx::Socket-compatible test runner.
#
# The real Test::Nginx (CPAN) is not installable on the project's build
# machines, so this module implements the subset of its documented behaviour
# that the project's suites use.  It is only picked up when the real harness
# is absent (`prove -I t/lib -r t/`).  Written from the Test::Nginx
# documentation; it shares no code with it.
#
# NOTE: this file is processed by Spiffy's source filter (`-Base`), which adds
# `my $self = shift;` to every `sub name {` without a prototype.  Every named
# sub below therefore carries an explicit prototype.

use Test::Base -Base;

our $VERSION = '0.01';

use Cwd ();
use File::Path ();
use File::Find ();
use File::Temp ();
use IO::Select ();
use IO::Socket::INET ();
use HTTP::Response ();
use POSIX ();
use Time::HiRes ();
use List::Util ();
use Text::Diff ();

our @EXPORT = qw(
    run_tests run_test repeat_each config_preamble worker_connections
    master_process_enabled no_long_string workers master_on master_off
    log_level no_shuffle no_root_location server_name server_addr
    server_root html_dir server_port server_port_for_client timeout
    no_nginx_manager check_accum_error_log add_block_preprocessor
    bail_out add_cleanup_handler add_response_body_check env_to_nginx
    is_str
);

sub expand_env_in_text ($$);
sub compare_str ($$$);
sub http_exchange ($$$);
sub parse_responses ($$$);

# ---------------------------------------------------------------- settings

sub env_or ($$) { defined $ENV{$_[0]} && $ENV{$_[0]} ne '' ? $ENV{$_[0]} : $_[1] }

our $NginxBinary      = env_or('TEST_NGINX_BINARY', 'nginx');
our $LoadModules      = env_or('TEST_NGINX_LOAD_MODULES', '');
our $UseHup           = env_or('TEST_NGINX_USE_HUP', 0);
our $NoClean          = env_or('TEST_NGINX_NO_CLEAN', 0);
our $NoNginxManager   = env_or('TEST_NGINX_NO_NGINX_MANAGER', 0);
our $Verbose          = env_or('TEST_NGINX_VERBOSE', 0);
our $NoShuffle        = env_or('TEST_NGINX_NO_SHUFFLE', 0);
our $Timeout          = env_or('TEST_NGINX_TIMEOUT', 3);
our $TestNginxSleep   = env_or('TEST_NGINX_SLEEP', 0.015);
our $CheckAccumErrLog = env_or('TEST_NGINX_CHECK_ACCUM_ERR_LOG', 0);
our $FastShutdown     = env_or('TEST_NGINX_FAST_SHUTDOWN', 0);
our $LogLevel         = env_or('TEST_NGINX_LOG_LEVEL', 'debug');
our $MasterProcessEnabled = env_or('TEST_NGINX_MASTER_PROCESS', 'off');
our $DaemonEnabled    = 'on';
our $Workers          = 1;
our $WorkerConnections = 64;
our $RepeatEach       = 1;
our $NoLongString     = 0;
our $NoRootLocation   = 0;
our $ServerName       = 'localhost';
our $ServerAddr       = '127.0.0.1';
our $ConfigPreamble   = '';
our $WorkerUser;                      # undef: "user root;" when run as root
our $Randomize        = env_or('TEST_NGINX_RANDOMIZE', 0);

our $ServerPort = env_or('TEST_NGINX_SERVER_PORT', env_or('TEST_NGINX_PORT', 1984));
our $ServerPortForClient = env_or('TEST_NGINX_CLIENT_PORT', $ServerPort);

our $ServRoot = env_or('TEST_NGINX_SERVROOT', Cwd::cwd() . '/t/servroot');

if ($Randomize) {
    # parallel-friendly: a free ephemeral port and a private server root
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                  LocalPort => 0, Proto => 'tcp', ReuseAddr => 1);
    if ($s) {
        $ServerPort = $ServerPortForClient = $s->sockport;
        close $s;
    }
    $ServRoot .= "_$$";
}

# usable in the .t file (and in eval sections) before run_tests()
$ENV{TEST_NGINX_SERVER_PORT} = $ServerPort;

our ($LogDir, $ErrLogFile, $AccLogFile, $HtmlDir, $ConfDir, $ConfFile, $PidFile);

sub set_servroot_paths () {
    $LogDir     = "$ServRoot/logs";
    $ErrLogFile = "$LogDir/error.log";
    $AccLogFile = "$LogDir/access.log";
    $HtmlDir    = "$ServRoot/html";
    $ConfDir    = "$ServRoot/conf";
    $ConfFile   = "$ConfDir/nginx.conf";
    $PidFile    = "$LogDir/nginx.pid";
}
set_servroot_paths();

our @EnvToNginx;
our @BlockPreprocessors;
our @CleanupHandlers;
our @ResponseBodyChecks;
our $FilterHttpConfig;
our $ConfigVersion;
our $PrevBlock;
our $ErrLogFilePos = 0;
our $NginxStarted;          # true once this process started an nginx

# ----------------------------------------------------------- exported API

sub repeat_each (@) { $RepeatEach = shift if @_; return $RepeatEach }
sub worker_connections (@) { $WorkerConnections = shift if @_; $WorkerConnections }
sub workers (@) { $Workers = shift if @_; $Workers }
sub master_on () { $MasterProcessEnabled = 'on' }
sub master_off () { $MasterProcessEnabled = 'off' }
sub master_process_enabled (@) {
    if (@_) { $MasterProcessEnabled = $_[0] ? 'on' : 'off' }
    return $MasterProcessEnabled eq 'on';
}
sub log_level (@) { $LogLevel = shift if @_; $LogLevel }
sub no_shuffle () { $NoShuffle = 1 }
sub no_long_string () { $NoLongString = 1 }
sub no_root_location () { $NoRootLocation = 1 }
sub no_nginx_manager () { $NoNginxManager = 1 }
sub check_accum_error_log () { $CheckAccumErrLog = 1 }
sub server_name (@) { $ServerName = shift if @_; $ServerName }
sub server_addr (@) { $ServerAddr = shift if @_; $ServerAddr }
sub server_root () { $ServRoot }
sub html_dir () { $HtmlDir }
sub server_port (@) {
    if (@_) { $ServerPort = $ServerPortForClient = shift }
    return $ServerPort;
}
sub server_port_for_client (@) { $ServerPortForClient = shift if @_; $ServerPortForClient }
sub timeout (@) { $Timeout = shift if @_; $Timeout }
sub config_preamble (@) { $ConfigPreamble = shift if @_; $ConfigPreamble }
sub env_to_nginx (@) { push @EnvToNginx, @_ }
sub add_block_preprocessor ($) { push @BlockPreprocessors, shift }
sub add_cleanup_handler ($) { push @CleanupHandlers, shift }
sub add_response_body_check ($) { push @ResponseBodyChecks, shift }
sub set_http_config_filter ($) { $FilterHttpConfig = shift }

sub bail_out (@) {
    cleanup();
    Test::More::BAIL_OUT(join '', @_);
}

sub is_str ($$;$) {
    my ($got, $expected, $name) = @_;
    compare_str($got, $expected, $name);
}

# ----------------------------------------------------------- small helpers

sub vlog (@) { warn @_, "\n" if $Verbose }

sub show_all_chars ($) {
    my $s = shift;
    return 'undef' unless defined $s;
    $s =~ s/\\/\\\\/g;
    $s =~ s/\r/\\r/g;
    $s =~ s/\t/\\t/g;
    $s =~ s/\n/\\n/g;
    $s =~ s/([^\x20-\x7e])/sprintf('\\x%02x', ord $1)/ge;
    return $s;
}

sub trim_summary ($) {
    my $s = shift;
    return '' unless defined $s;
    $s =~ s/^\s+|\s+$//g;
    $s =~ s/\s+/ /g;
    $s = substr($s, 0, 60) . '...' if length $s > 63;
    return $s;
}

# One TAP test comparing two strings, with a readable report on mismatch.
sub compare_str ($$$) {
    my ($got, $expected, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 2;
    if ($NoLongString) {
        return Test::More::is($got, $expected, $name);
    }
    my $ok = defined $got && defined $expected ? $got eq $expected
             : !defined $got && !defined $expected;
    Test::More::ok($ok, $name);
    return 1 if $ok;
    my $msg = "     got: \"" . show_all_chars($got) . "\"\n"
            . "expected: \"" . show_all_chars($expected) . "\"\n";
    if (defined $got && defined $expected) {
        my $i = 0;
        $i++ while $i < length($got) && $i < length($expected)
                   && substr($got, $i, 1) eq substr($expected, $i, 1);
        $msg .= "first difference at byte $i (got length " . length($got)
              . ", expected length " . length($expected) . ")\n";
        if ("$got$expected" =~ /\n./s) {
            $msg .= "diff (- expected, + got):\n"
                  . Text::Diff::diff(\$expected, \$got, { STYLE => 'Unified' });
        }
    }
    Test::More::diag($msg);
    return 0;
}

# $TEST_NGINX_FOO in a section is replaced by $ENV{TEST_NGINX_FOO}.
sub expand_env_in_text ($$) {
    my ($text, $name) = @_;
    return $text unless defined $text;
    if (ref $text eq 'ARRAY') {
        return [ map { expand_env_in_text($_, $name) } @$text ];
    }
    return $text if ref $text;
    $text =~ s{\$(TEST_NGINX_[_A-Z0-9]+)}{
        if (!defined $ENV{$1}) {
            bail_out("$name - No environment $1 defined.\n");
        }
        $ENV{$1};
    }eg;
    return $text;
}

# Value for the $idx-th request: arrays are indexed, scalars shared.
sub indexed ($$) {
    my ($v, $idx) = @_;
    return ref $v eq 'ARRAY' ? $v->[$idx] : $v;
}

sub parse_time ($) {
    my $t = shift;
    return undef unless defined $t;
    $t =~ s/^\s+|\s+$//g;
    return $1 / 1000 if $t =~ /^([\d.]+)ms$/;
    return $1 if $t =~ /^([\d.]+)s?$/;
    return $t;
}

sub is_running ($) {
    my $pid = shift;
    return 0 unless $pid && $pid =~ /^\d+$/;
    return 0 unless kill 0, $pid;
    # an exited daemon stays a zombie until init reaps it: count it as gone
    if (open my $in, '<', "/proc/$pid/stat") {
        my $stat = <$in> // '';
        close $in;
        return 0 if $stat =~ /^\d+ \(.*\) [ZX]/s;
    }
    return 1;
}

sub read_pid_file () {
    open my $in, '<', $PidFile or return undef;
    my $pid = <$in>;
    close $in;
    return undef unless defined $pid;
    chomp $pid;
    return $pid =~ /^\d+$/ ? $pid : undef;
}

sub child_pids ($) {
    my $ppid = shift;
    my @kids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $in, '<', $stat or next;
        my $line = <$in>;
        close $in;
        next unless defined $line && $line =~ /^(\d+) \(.*\) \S+ (\d+)/s;
        push @kids, $1 if $2 == $ppid;
    }
    return @kids;
}

# Stop an nginx (master or single process): QUIT (TERM with
# TEST_NGINX_FAST_SHUTDOWN), wait, then KILL it and any of its children.
sub kill_process ($$) {
    my ($pid, $name) = @_;
    return unless is_running($pid);
    my @kids = child_pids($pid);
    vlog("stopping nginx $pid");
    kill($FastShutdown ? POSIX::SIGTERM() : POSIX::SIGQUIT(), $pid);
    my $deadline = Time::HiRes::time() + ($Timeout > 3 ? $Timeout : 3);
    while (Time::HiRes::time() < $deadline) {
        waitpid($pid, POSIX::WNOHANG());
        last unless is_running($pid);
        Time::HiRes::sleep(0.01);
    }
    if (is_running($pid)) {
        warn "$name - WARNING: killing nginx $pid with force...\n";
        kill POSIX::SIGKILL(), $pid, child_pids($pid);
        Time::HiRes::sleep(0.05);
    }
    # workers of a killed master are orphaned; make sure none survive
    for my $k (@kids) {
        for (1 .. 100) {
            last unless is_running($k);
            Time::HiRes::sleep(0.01);
        }
        kill POSIX::SIGKILL(), $k if is_running($k);
    }
}

sub stop_nginx ($) {
    my $name = shift;
    my $pid = read_pid_file();
    kill_process($pid, $name) if $pid;
    unlink $PidFile if -f $PidFile;
}

# ------------------------------------------------------------ server root

sub setup_server_root ($) {
    my $hup_keep = shift;     # HUP mode: keep the pid file, nginx lives on
    if (-d $ServRoot) {
        if ($hup_keep) {
            File::Find::finddepth({ no_chdir => 1, wanted => sub {
                return if -d $_;
                return if $_ eq $PidFile;
                unlink $_ or warn "failed to remove $_: $!\n";
            } }, $ServRoot);
        } else {
            File::Path::remove_tree($ServRoot);
        }
    }
    for my $d ($ServRoot, $LogDir, $HtmlDir, $ConfDir) {
        next if -d $d;
        File::Path::make_path($d) or bail_out("Failed to mkdir $d: $!");
    }
    # nginx workers may run as an unprivileged user: keep it all reachable
    chmod 0777, $ServRoot, $LogDir, $HtmlDir;
    chmod 0755, $ConfDir;
    open my $out, '>', "$HtmlDir/index.html"
        or bail_out("Can't write $HtmlDir/index.html: $!");
    print $out '<html><head><title>It works!</title></head><body>It works!</body></html>';
    close $out;
}

sub write_user_files ($) {
    my $block = shift;
    my $name = $block->name;
    my $files = $block->user_files;
    return unless $files;
    my @list;
    if (ref $files eq 'ARRAY') {
        @list = @$files;
    } else {
        my ($fname, $body);
        for my $line (split /^/, $files) {
            if ($line =~ /^>>> (\S+)/) {
                push @list, [$fname, $body] if defined $fname;
                ($fname, $body) = ($1, '');
            } elsif (defined $fname) {
                $body .= $line;
            }
        }
        push @list, [$fname, $body] if defined $fname;
    }
    for my $f (@list) {
        my ($fname, $body) = @$f;
        $body = '' unless defined $body;
        my $path = $fname =~ m{^/} ? $fname : "$HtmlDir/$fname";
        (my $dir = $path) =~ s{/[^/]*$}{};
        File::Path::make_path($dir) unless -d $dir;
        open my $out, '>', $path or bail_out("$name - can't write $path: $!");
        binmode $out;
        print $out expand_env_in_text($body, $name);
        close $out;
        chmod 0644, $path;
    }
}

sub write_config_file ($$) {
    my ($block, $config) = @_;
    my $name = $block->name;

    master_on() if $UseHup;     # reloading needs a master process

    my $http_config = expand_env_in_text($block->http_config // '', $name);
    $http_config = $FilterHttpConfig->($http_config) if $FilterHttpConfig;
    my $main_config = expand_env_in_text($block->main_config // '', $name);
    my $post_main_config = expand_env_in_text($block->post_main_config // '', $name);
    my $server_name = $block->server_name // $ServerName;

    my $load = join '', map { "load_module $_;\n" } grep { length }
               split /\s+/, $LoadModules;

    my $env = '';
    for my $v (qw(MOCKEAGAIN_VERBOSE MOCKEAGAIN MOCKEAGAIN_WRITE_TIMEOUT_PATTERN
                  LD_PRELOAD LD_LIBRARY_PATH ASAN_OPTIONS), @EnvToNginx) {
        my $e = $v =~ /\s/ ? "'$v'" : $v;
        $env .= "env $e;\n";
    }

    my $user = '';
    if (defined $WorkerUser) {
        $user = "user $WorkerUser;\n";
    } elsif ($> == 0) {
        $user = "user root;\n";
    }

    my $root_location = $NoRootLocation ? '' : <<"_EOC_";
        location / {
            root $HtmlDir;
            index index.html index.htm;
        }
_EOC_

    my $version_server = '';
    if ($UseHup) {
        $version_server = <<"_EOC_";
    server {
        listen          $ServerAddr:$ServerPort;
        server_name     'Test-Nginx';

        location = /ver {
            return 200 '$ConfigVersion';
        }
    }
_EOC_
    }

    open my $out, '>', $ConfFile or bail_out("Can't open $ConfFile for writing: $!");
    print $out <<"_EOC_";
${load}worker_processes  $Workers;
daemon $DaemonEnabled;
master_process $MasterProcessEnabled;
error_log $ErrLogFile $LogLevel;
pid       $PidFile;
$env$user
$main_config

http {
    access_log $AccLogFile;

    default_type text/plain;
    keepalive_timeout  68;

$http_config

    server {
        listen          $ServerAddr:$ServerPort;
        server_name     '$server_name';

        client_max_body_size 30M;

        # Begin preamble config...
$ConfigPreamble
        # End preamble config...

        # Begin test case config...
$config
        # End test case config.

$root_location    }
$version_server}

$post_main_config

events {
    accept_mutex off;

    worker_connections  $WorkerConnections;
}
_EOC_
    close $out;
    chmod 0644, $ConfFile;
}

# ------------------------------------------------------ starting nginx

sub start_nginx ($) {
    my $block = shift;
    my $name = $block->name;
    my $errfile = "$ServRoot/nginx-start.stderr";
    my $cmd = "$NginxBinary -p $ServRoot/ -c $ConfFile";
    vlog("starting: $cmd");
    my $waited = 0;
    while (1) {
        my $rc = system("$cmd >/dev/null 2>$errfile");
        last if $rc == 0;
        my $err = '';
        if (open my $in, '<', $errfile) { local $/; $err = <$in> // ''; close $in }
        # a port still held by the previous instance: retry for a while
        if ($err =~ /Address already in use/ && $waited < 10) {
            Time::HiRes::sleep(0.2);
            $waited += 0.2;
            next;
        }
        Test::More::diag("nginx failed to start:\n$err");
        $err =~ s/\s+/ /g;
        bail_out("$name - Cannot start nginx using command \"$cmd\" "
                 . "(status $rc): $err");
    }
    unlink $errfile;
    $NginxStarted = 1;
    # the daemon writes the pid file right after forking
    for (1 .. 300) {
        last if read_pid_file();
        Time::HiRes::sleep(0.01);
    }
    Time::HiRes::sleep($TestNginxSleep) if $TestNginxSleep;
}

sub gen_rand_str ($) {
    my $len = shift;
    my @c = ('A' .. 'Z', 'a' .. 'z', '0' .. '9');
    return join '', map { $c[int rand @c] } 1 .. $len;
}

# HUP mode: wait until the freshly loaded configuration answers /ver.
sub wait_for_config_version ($) {
    my $name = shift;
    my $good = 0;
    my $deadline = Time::HiRes::time() + 10;
    while (Time::HiRes::time() < $deadline) {
        my $r = http_exchange("GET /ver HTTP/1.1\r\nHost: Test-Nginx\r\n"
                              . "Connection: close\r\n\r\n", 1, undef);
        my ($res) = parse_responses($r->{data}, 1, ['GET']);
        if ($res && defined $res->{body} && $res->{body} eq $ConfigVersion) {
            return 1 if ++$good >= 5;
            Time::HiRes::sleep(0.005);
            next;
        }
        $good = 0;
        Time::HiRes::sleep(0.02);
    }
    Test::More::fail("$name - failed to reload the configuration with HUP "
                     . "(see $ErrLogFile)");
    return 0;
}

# HUP mode: an old worker keeps accepting connections until it has handled
# the master's QUIT (its title then says "is shutting down"); wait for that.
sub wait_old_workers_closed (@) {
    my @pids = @_;
    my $deadline = Time::HiRes::time() + 10;
    for my $p (@pids) {
        while (is_running($p) && Time::HiRes::time() < $deadline) {
            my $title = '';
            if (open my $in, '<', "/proc/$p/cmdline") {
                local $/;
                $title = <$in> // '';
                close $in;
            }
            last if $title =~ /shutting down/ || $title !~ /worker process/;
            Time::HiRes::sleep(0.005);
        }
    }
}

# Make nginx serve the block's configuration: restart it (default) or
# reload it with HUP (TEST_NGINX_USE_HUP=1).
sub prepare_nginx ($$) {
    my ($block, $config) = @_;
    my $name = $block->name;

    $ConfigVersion = gen_rand_str(10) if $UseHup;
    my $pid = read_pid_file();

    if ($UseHup && $NginxStarted && $pid && is_running($pid)) {
        setup_server_root(1);
        write_user_files($block);
        write_config_file($block, $config);
        my @old_workers = child_pids($pid);
        # reopen the (just removed) logs, then reload the configuration
        kill POSIX::SIGUSR1(), $pid;
        Time::HiRes::sleep($TestNginxSleep);
        kill POSIX::SIGHUP(), $pid;
        Time::HiRes::sleep($TestNginxSleep * 3);
        check_prev_block_shutdown_error_log();
        wait_for_config_version($name);
        wait_old_workers_closed(@old_workers);
        return;
    }

    stop_nginx($name) if $pid;
    check_prev_block_shutdown_error_log();
    setup_server_root(0);
    write_user_files($block);
    write_config_file($block, $config);
    start_nginx($block);
    wait_for_config_version($name) if $UseHup;
}

# --------------------------------------------------------- HTTP client

sub parse_request_line ($$) {
    my ($name, $req) = @_;
    $req =~ s/^\s+//s;
    my ($first, $rest) = split /\n/, $req, 2;
    $first =~ s/\s+$//;
    my ($meth, $uri, $ver) = split /\s+/, $first, 3;
    bail_out("$name - bad request line: \"$first\"") unless $meth;
    $uri = '/' unless defined $uri && length $uri;
    $ver = 'HTTP/1.1' unless defined $ver && length $ver;
    $rest = '' unless defined $rest;
    $rest =~ s/^\s+|\s+$//gs;
    return ($meth, $uri, $ver, $rest);
}

sub parse_more_headers ($) {
    my $text = shift;
    my @h;
    return @h unless defined $text;
    for my $line (split /\n+/, $text) {
        next if $line =~ /^\s*(#|$)/;
        my ($k, $v) = split /\s*:\s*/, $line, 2;
        $k =~ s/^\s+//;
        $v = '' unless defined $v;
        $v =~ s/\s+$//;
        push @h, [$k, $v];
    }
    return @h;
}

# Build the raw bytes of one request from "METHOD /uri [HTTP/x.y]\nbody".
sub build_request ($$$$) {
    my ($name, $req, $more_headers, $conn) = @_;
    my ($meth, $uri, $ver, $body) = parse_request_line($name, $req);
    my @h = parse_more_headers($more_headers);
    my %have = map { lc($_->[0]) => 1 } @h;
    my $raw = "$meth $uri $ver\r\n";
    $raw .= "Host: localhost\r\n" unless $have{host};
    $raw .= "Connection: $conn\r\n" unless $have{connection};
    $raw .= "$_->[0]: $_->[1]\r\n" for @h;
    if (length $body && !$have{'content-length'}
        && !$have{'transfer-encoding'})
    {
        $raw .= "Content-Length: " . length($body) . "\r\n";
    }
    $raw .= "\r\n$body";
    return ($raw, $meth);
}

# Send @packets (with optional delays between them) on one connection and
# read until the server closes it or the timeout expires.
sub http_exchange ($$$) {
    my ($data, $timeout, $middle_delay) = @_;
    my @packets = ref $data ? @$data : ($data);
    my $res = { data => '', timed_out => 0, error => undef };
    my $sock = IO::Socket::INET->new(PeerAddr => $ServerAddr,
                                     PeerPort => $ServerPortForClient,
                                     Proto => 'tcp', Timeout => $timeout);
    if (!$sock) {
        $res->{error} = "cannot connect to $ServerAddr:$ServerPortForClient: $!";
        return $res;
    }
    $sock->blocking(0);
    my $sel = IO::Select->new($sock);
    my $deadline = Time::HiRes::time() + $timeout;
    my $buf = shift @packets;
    $buf = '' unless defined $buf;
    my $eof = 0;
    while (!$eof) {
        my $left = $deadline - Time::HiRes::time();
        if ($left <= 0) { $res->{timed_out} = 1; last }
        my $want_write = length($buf) > 0;
        my ($r, $w) = IO::Select->select($sel, $want_write ? $sel : undef,
                                         undef, $left);
        if ($w && @$w && length $buf) {
            my $n = syswrite($sock, $buf);
            if (defined $n) {
                substr($buf, 0, $n, '');
                if (!length $buf && @packets) {
                    Time::HiRes::sleep($middle_delay) if $middle_delay;
                    $buf = shift @packets;
                    $buf = '' unless defined $buf;
                }
            } elsif (!$!{EAGAIN} && !$!{EINTR}) {
                # the server may have answered and closed early; keep reading
                $buf = '';
                @packets = ();
            }
        }
        if ($r && @$r) {
            my $n = sysread($sock, my $chunk, 65536);
            if (defined $n) {
                if ($n == 0) { $eof = 1 } else { $res->{data} .= $chunk }
            } elsif (!$!{EAGAIN} && !$!{EINTR}) {
                $res->{error} = "read failed: $!" unless length $res->{data};
                $eof = 1;
            }
        }
    }
    close $sock;
    return $res;
}

sub decode_chunked ($) {
    my $raw = shift;
    my $out = '';
    my $pos = 0;
    while (1) {
        my $eol = index($raw, "\r\n", $pos);
        return ($out, 0) if $eol < 0;
        my $line = substr($raw, $pos, $eol - $pos);
        $line =~ s/;.*//;
        $line =~ s/^\s+|\s+$//g;
        return ($out, 0) unless $line =~ /^[0-9a-fA-F]+$/;
        my $size = hex $line;
        $pos = $eol + 2;
        if ($size == 0) {
            # skip trailers up to the final empty line
            my $end = index($raw, "\r\n\r\n", $pos - 2);
            return ($out, $end < 0 ? length $raw : $end + 4);
        }
        $out .= substr($raw, $pos, $size);
        $pos += $size + 2;
        return ($out, length $raw) if $pos > length $raw;
    }
}

# Split a raw byte stream into up to $n responses.
sub parse_responses ($$$) {
    my ($raw, $n, $methods) = @_;
    my @res;
    for my $i (0 .. $n - 1) {
        last unless defined $raw && length $raw;
        my $hend = index($raw, "\r\n\r\n");
        my $head = $hend < 0 ? $raw : substr($raw, 0, $hend);
        my $rest = $hend < 0 ? '' : substr($raw, $hend + 4);
        my $r = HTTP::Response->parse($head);
        my $code = $r->code;
        my $body;
        my $meth = $methods->[$i] // 'GET';
        my $te = $r->header('Transfer-Encoding');
        my $cl = $r->header('Content-Length');
        if ($meth eq 'HEAD' || (defined $code && $code =~ /^(1\d\d|204|304)$/)) {
            $body = '';
        } elsif (defined $te && $te =~ /chunked/i) {
            my $used;
            ($body, $used) = decode_chunked($rest);
            $rest = $used ? substr($rest, $used) : '';
        } elsif (defined $cl && $cl =~ /^\d+$/) {
            $body = substr($rest, 0, $cl);
            $rest = length $rest > $cl ? substr($rest, $cl) : '';
        } else {
            ($body, $rest) = ($rest, '');
        }
        $r->content($body);
        push @res, { res => $r, code => $code, body => $body,
                     raw_headers => $head };
        $raw = $rest;
    }
    return @res;
}

# ------------------------------------------------------------ checks

sub error_log_lines () {
    open my $in, '<', $ErrLogFile or return [];
    seek $in, $ErrLogFilePos, 0 if !$CheckAccumErrLog && $ErrLogFilePos;
    my @lines = <$in>;
    $ErrLogFilePos = tell($in) unless $CheckAccumErrLog;
    close $in;
    return \@lines;
}

sub patterns_of ($) {
    my $v = shift;
    return () unless defined $v;
    return @$v if ref $v eq 'ARRAY';
    return ($v) if ref $v;                         # a single qr//
    return grep { length } map { s/^\s+|\s+$//gr } split /\n/, $v;
}

sub line_matches ($$) {
    my ($line, $pat) = @_;
    return ref $pat eq 'Regexp' ? scalar($line =~ $pat) : index($line, $pat) >= 0;
}

sub check_error_log ($$$) {
    my ($block, $dry_run, $rep) = @_;
    my $name = $block->name;
    my $lines = error_log_lines();
    my $tag = $rep ? " (req $rep)" : '';

    for my $pat (patterns_of($block->error_log)) {
        SKIP: {
            Test::More::skip("$name - $dry_run", 1) if $dry_run;
            my $found = grep { line_matches($_, $pat) } @$lines;
            Test::More::ok($found, "$name - pattern \"" . pat_str($pat)
                           . "\" matches a line in error.log$tag")
                or Test::More::diag("error.log (" . scalar(@$lines)
                                    . " lines) has no line matching it; see $ErrLogFile");
        }
    }
    for my $pat (patterns_of($block->no_error_log)) {
        SKIP: {
            Test::More::skip("$name - $dry_run", 1) if $dry_run;
            my @bad = grep { line_matches($_, $pat) } @$lines;
            Test::More::ok(!@bad, "$name - pattern \"" . pat_str($pat)
                           . "\" should not match any line in error.log$tag")
                or Test::More::diag("matching line(s):\n", @bad[0 .. ($#bad > 9 ? 9 : $#bad)]);
        }
    }
    if (defined $block->grep_error_log) {
        my $pat = $block->grep_error_log;
        if (!ref $pat) { chomp $pat }
        my $expected = $block->grep_error_log_out;
        if (defined $expected) {
            $expected = indexed($expected, $rep || 0) if ref $expected eq 'ARRAY';
            my $got = '';
            for my $line (@$lines) {
                if (ref $pat eq 'Regexp') {
                    while ($line =~ /$pat/g) { $got .= "$&\n" }
                } else {
                    my $p = 0;
                    while (($p = index($line, $pat, $p)) >= 0) {
                        $got .= "$pat\n";
                        $p += length($pat) || 1;
                    }
                }
            }
            SKIP: {
                Test::More::skip("$name - $dry_run", 1) if $dry_run;
                if (ref $expected eq 'Regexp') {
                    Test::More::like($got, $expected, "$name - grep_error_log_out$tag");
                } else {
                    compare_str($got, $expected, "$name - grep_error_log_out$tag");
                }
            }
        }
    }
}

sub pat_str ($) { my $p = shift; ref $p eq 'Regexp' ? "$p" : show_all_chars($p) }

our $ShutdownCheckedFor;

# shutdown_error_log: checked once the nginx that served the block is gone.
sub check_prev_block_shutdown_error_log () {
    my $block = $PrevBlock;
    return unless $block && defined $block->shutdown_error_log;
    return if $ShutdownCheckedFor && $ShutdownCheckedFor == $block;
    $ShutdownCheckedFor = $block;
    my $name = $block->name;
    my $dry = ($UseHup || $NoClean) ? 'shutdown_error_log unavailable in HUP/NO_CLEAN mode' : '';
    my @lines;
    if (!$dry && open my $in, '<', $ErrLogFile) { @lines = <$in>; close $in }
    for my $pat (patterns_of($block->shutdown_error_log)) {
        SKIP: {
            Test::More::skip("$name - $dry", 1) if $dry;
            my $found = grep { line_matches($_, $pat) } @lines;
            Test::More::ok($found, "$name - shutdown error log: pattern \""
                           . pat_str($pat) . "\" matches a line");
        }
    }
}

sub check_response ($$$$) {
    my ($block, $r, $idx, $need_idx) = @_;
    my $name = $block->name;
    my $tag = $need_idx ? " (req $idx)" : '';
    my $res = $r ? $r->{res} : HTTP::Response->new;
    my $code = $r ? $r->{code} : undef;
    my $body = $r ? $r->{body} : undef;

    # status
    if (defined $block->error_code_like) {
        my $pat = indexed($block->error_code_like, $idx);
        Test::More::like($code // '', qr/$pat/, "$name - status code ok$tag");
    } else {
        my $expected = defined $block->error_code
            ? indexed($block->error_code, $idx) : 200;
        $expected =~ s/^\s+|\s+$//g if defined $expected;
        Test::More::is($code // '', $expected // '', "$name - status code ok$tag");
    }

    # headers
    for my $sec (qw(response_headers response_headers_like)) {
        my $spec = indexed($block->$sec, $idx);
        next unless defined $spec;
        for my $line (split /\n/, $spec) {
            $line =~ s/^\s+|\s+$//g;
            next unless length $line;
            if ($line =~ s/^!\s*//) {
                Test::More::ok(!defined $res->header($line),
                               "$name - header $line not present$tag");
                next;
            }
            my ($k, $v) = split /\s*:\s*/, $line, 2;
            $v = '' unless defined $v;
            my $got = $res->header($k) // '';
            if ($sec eq 'response_headers') {
                Test::More::is($got, $v, "$name - header $k ok$tag");
            } else {
                Test::More::like($got, qr/^$v$/, "$name - header $k like ok$tag");
            }
        }
    }

    # body
    if (defined $block->response_body) {
        my $expected = indexed($block->response_body, $idx);
        if (ref $expected eq 'Regexp') {
            Test::More::like($body // '', $expected, "$name - response_body - like$tag");
        } else {
            $expected =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
            $expected =~ s/\$ServerPort\b/$ServerPort/g;
            compare_str($body, $expected, "$name - response_body - response is expected$tag");
        }
    } elsif (defined $block->response_body_like) {
        my $pat = indexed($block->response_body_like, $idx);
        if (!ref $pat) {
            $pat =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
            $pat =~ s/\$ServerPort\b/$ServerPort/g;
        }
        Test::More::like($body // '', ref $pat ? $pat : qr/$pat/s,
            "$name - response_body_like - response is expected ("
            . trim_summary($body) . ")$tag");
    }
    if (defined $block->response_body_unlike) {
        my $pat = indexed($block->response_body_unlike, $idx);
        Test::More::unlike($body // '', ref $pat ? $pat : qr/$pat/s,
            "$name - response_body_unlike - response is expected ("
            . trim_summary($body) . ")$tag");
    }
    for my $check (@ResponseBodyChecks) {
        $check->($block, $body, $idx, $res->headers, $code);
    }
}

# --------------------------------------------------------------- runner

sub requests_of ($) {
    my $block = shift;
    my $name = $block->name;
    my $more = expand_env_in_text($block->more_headers, $name);
    my $delay = parse_time($block->raw_request_middle_delay);
    my @exchanges;   # each: { data, methods, n }

    if (defined $block->raw_request) {
        my $raw = expand_env_in_text($block->raw_request, $name);
        push @exchanges, { data => $raw, methods => ['GET'], n => 1,
                           delay => $delay };
    } elsif (defined $block->pipelined_requests) {
        my $reqs = expand_env_in_text($block->pipelined_requests, $name);
        bail_out("$name - --- pipelined_requests must be an array (use eval)")
            unless ref $reqs eq 'ARRAY';
        my ($data, @methods) = ('');
        for my $i (0 .. $#$reqs) {
            my ($raw, $meth) = build_request($name, $reqs->[$i], indexed($more, $i),
                                             $i == $#$reqs ? 'close' : 'keep-alive');
            $data .= $raw;
            push @methods, $meth;
        }
        push @exchanges, { data => $data, methods => \@methods, n => scalar @$reqs };
    } elsif (defined $block->request) {
        my $reqs = expand_env_in_text($block->request, $name);
        my @list = ref $reqs eq 'ARRAY' ? @$reqs : ($reqs);
        for my $i (0 .. $#list) {
            my $r = $list[$i];
            my ($raw, $meth) = ref $r eq 'ARRAY'
                # an array of packets sent one by one
                ? (join('', @$r), 'GET')
                : build_request($name, $r, indexed($more, $i), 'close');
            push @exchanges, { data => (ref $r eq 'ARRAY' ? $r : $raw),
                               methods => [$meth], n => 1, delay => $delay };
        }
    } else {
        bail_out("$name - No '--- request' section nor --- pipelined_requests "
                 . "nor --- raw_request specified");
    }
    return (\@exchanges, ref $block->request eq 'ARRAY'
                         || defined $block->pipelined_requests);
}

sub run_test ($) {
    my $block = shift;
    my $name = $block->name;

    my $config = $block->config;
    bail_out("$name - No '--- config' section specified") unless defined $config;
    $config = expand_env_in_text($config, $name);

    my ($exchanges, $need_idx) = requests_of($block);

    # --- skip_eval: N: perl-expression  (skip N tests when true)
    if (defined $block->skip_eval) {
        my $spec = $block->skip_eval;
        if ($spec =~ /^\s*(\d+)\s*:\s*(.*)/s) {
            my ($n, $code) = ($1, $2);
            my $skip = eval $code;
            bail_out("$name - skip_eval failed: $@") if $@;
            if ($skip) {
                SKIP: { Test::More::skip("$name - skip_eval", $n) }
                return;
            }
        }
    }

    prepare_nginx($block, $config) unless $NoNginxManager;

    if (defined $block->init) {
        eval $block->init;
        bail_out("$name - init failed: $@") if $@;
    }

    my $timeout = parse_time($block->timeout) // $Timeout;
    my $wait = parse_time($block->wait);
    $ErrLogFilePos = 0;

    for my $rep (0 .. $RepeatEach - 1) {
        my $idx = 0;
        for my $ex (@$exchanges) {
            my $r = http_exchange($ex->{data}, $timeout, $ex->{delay});
            if ($r->{error}) {
                Test::More::diag("$name - $r->{error}");
            }
            if ($r->{timed_out} && !defined $block->abort) {
                Test::More::diag("ERROR: client socket timed out - $name");
            }
            next if defined $block->ignore_response;
            my @res = parse_responses($r->{data}, $ex->{n}, $ex->{methods});
            for my $j (0 .. $ex->{n} - 1) {
                check_response($block, $res[$j], $idx++, $need_idx);
            }
        }
        Time::HiRes::sleep($wait) if $wait;
        Time::HiRes::sleep($TestNginxSleep * 3) if $TestNginxSleep;
        check_error_log($block, '', $rep);
    }
}

my $Cleaned;

sub cleanup () {
    return if $Cleaned++;
    $_->() for @CleanupHandlers;
    return if $NoNginxManager;
    if ($NoClean) {
        return;
    }
    stop_nginx("cleanup") if $NginxStarted || -f $PidFile;
    check_prev_block_shutdown_error_log();
}

sub run_tests () {
    $ENV{TEST_NGINX_SERVER_PORT} = $ServerPort;
    $ENV{TEST_NGINX_CLIENT_PORT} //= $ServerPortForClient;

    # interrupted: stop nginx at once (TERM), not gracefully
    local $SIG{INT}  = sub { $FastShutdown = 1; cleanup(); exit 130 };
    local $SIG{TERM} = sub { $FastShutdown = 1; cleanup(); exit 143 };
    local $SIG{PIPE} = 'IGNORE';

    my @blocks = Test::Base::blocks();
    @blocks = List::Util::shuffle(@blocks) unless $NoShuffle;
    for my $block (@blocks) {
        $_->($block) for @BlockPreprocessors;
        $block->set_value('name', "$0 " . $block->name);
        my $ok = eval { run_test($block); 1 };
        if (!$ok) {
            my $err = $@;
            cleanup();
            die $err;
        }
        $PrevBlock = $block;
    }
    cleanup();
}

END {
    # also covers die/exit paths that never reached the end of run_tests
    my $rc = $?;
    cleanup() if $NginxStarted;
    $? = $rc;
}

1;
__END__

=head1 NAME

Test::Nginx::Socket - minimal Test::Nginx::Socket-compatible runner for
lua-resty-ffi-go (used only when the real Test::Nginx is not installed)

=head1 SYNOPSIS

    prove -I t/lib -r t/

Supported sections: config, http_config, main_config, post_main_config,
request (string or eval array), pipelined_requests, raw_request,
more_headers, user_files, init, response_body, response_body_like,
response_body_unlike, response_headers, response_headers_like, error_code,
error_code_like, error_log, no_error_log, grep_error_log,
grep_error_log_out, shutdown_error_log, timeout, wait, abort,
ignore_response, skip_eval, plus Test::Base's ONLY/SKIP/LAST and
eval/chomp filters.

=cut
