# vim:set ft= ts=4 sw=4 et fdm=marker:
# What `make run` serves: examples/nginx.conf rendered as scripts/run.sh
# renders it, on the test port. Every URL `make run` prints (the `# curl`
# lines of examples/locations/*.conf) answers as expected from the real
# backends; then a reload (HUP) and a stop (QUIT) end the old workers
# promptly, the example's Kafka consumer and LISTEN loop included, and the
# new workers carry on with the key/value flow.
use strict;
use warnings;
use lib '.';
use t::Standalone;
use t::Backend;
use Test::More;
use Cwd qw(cwd);
use File::Temp qw(tempdir);
use HTTP::Tiny;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time sleep);

t::Backend::need_backend('redis', '127.0.0.1', 16379);
t::Backend::need_backend('postgres', '127.0.0.1', 15432);
t::Backend::need_backend('kafka', '127.0.0.1', 19092);
t::Backend::need_backend('grpc', '127.0.0.1', 15051);

my $root = cwd();
my $tmp = tempdir("resty-ffi-examples-XXXX", TMPDIR => 1, CLEANUP => !$ENV{TEST_NGINX_NO_CLEAN});
chmod 0755, $tmp;
my $prefix = "$tmp/nginx";

# What each printed URL must answer (path and query as printed). A URL
# without an entry here fails: a new example needs its expectation.
my $key = "k$$";
my %expect = (
    '/echo?msg=hi'                 => qr/\Ahi\n\z/,
    '/hello?name=nginx'            => qr/\Ahello, nginx\n\z/,
    '/metrics'                     => qr/^# TYPE resty_ffi_in_flight gauge\nresty_ffi_in_flight\{worker="\d"\} \d+$/m,
    '/grpc/hello?name=nginx'       => qr/\AHello nginx\n\z/,
    '/grpc/stream?n=5'             => qr/\A1 tick\n2 tick\n3 tick\n4 tick\n5 tick\ndone\n\z/,
    '/kafka/hello'                 => qr/\Ahello; this request goes to Kafka topic 'rffi' from the log phase\n\z/,
    '/kafka/stats'                 => qr/\Asent \d+, failed 0, buffered \d+\n\z/,
    '/kv/put?key=color&value=blue' => qr/\Asent color=blue to Kafka topic examples-kv; the consumer stored it in the dict after \d+ ms\n\z/,
    '/kv/get?key=color'            => qr/\Acolor = blue\n\z/,
    '/kv/invalidate?key=color'     => qr/\ANOTIFY examples_kv 'color' sent; the LISTEN loop removed it from the dict after \d+ ms\n\z/,
    '/pg/query?id=7'               => qr/\Aid=7 at=\d{4}-\d\d-\d\dT[\d:.]+\+00 price=1\.50 tags=a,b\nid: int4\nat: timestamptz\nprice: numeric\ntags: _text\n\z/,
    '/pg/transfer?amount=10.00'    => qr/\Atransferred\n1: \d+\.\d\d\n2: \d+\.\d\d\n\z/,
    '/pg/listen'                   => qr/\Aexamples: hi\n\z/,
    '/pg/notify?msg=hi'            => qr/\Atrue\n\z/,
    '/redis/cache?key=answer'      => qr/\A(miss|hit): computed at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\n\z/,
);

my @urls;
for my $f (sort glob "examples/locations/*.conf") {
    open my $in, '<', $f or die "$f: $!";
    while (<$in>) {
        next unless /^# curl/;
        push @urls, m{http://127\.0\.0\.1:8080(/[^'\s)]*)}g;
    }
}
ok(scalar(@urls) >= 15, "make run prints the URLs of every example (" . scalar(@urls) . ")");

open my $in, '<', "examples/nginx.conf" or die $!;
my $conf = do { local $/; <$in> };
close $in;
my $user = $> == 0 ? "user nobody nogroup;" : "";
$conf =~ s/\@ROOT\@/$root/g;
$conf =~ s/\@RUN\@/$prefix\/logs/g;
$conf =~ s/\@PORT\@/\$PORT/g;
$conf =~ s/\@USER\@/$user/g;

my $n = t::Standalone->new(prefix => $prefix, conf => $conf);
$n->start or BAIL_OUT("nginx with examples/nginx.conf did not start");
my $base = "http://127.0.0.1:" . $n->port;
my $http = HTTP::Tiny->new(timeout => 30);

for (1 .. 100) {
    last if $http->get("$base/echo?msg=up")->{success};
    sleep 0.1;
}

sub get_like {
    my ($url, $re) = @_;
    my $res = $http->get("$base$url");
    like("$res->{status} $res->{content}", qr/\A200 /, "$url: 200");
    like($res->{content}, $re, "$url: the expected answer");
}

# /pg/listen waits for the NOTIFY that /pg/notify sends: send it on a raw
# socket, then notify until its answer comes.
sub listen_and_notify {
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $n->port, Timeout => 5)
        or return fail("/pg/listen: connect: $!");
    print $s "GET /pg/listen HTTP/1.0\r\nHost: localhost\r\n\r\n";
    my $sel = IO::Select->new($s);
    my $deadline = time + 10;
    until ($sel->can_read(0.3) || time > $deadline) {
        get_like('/pg/notify?msg=hi', $expect{'/pg/notify?msg=hi'});
    }
    my $raw = do { local $/; <$s> } // '';
    my ($status, $body) = $raw =~ m{\AHTTP/1\.\d (\d+).*?\r\n\r\n(.*)\z}s;
    is($status, 200, "/pg/listen: 200");
    like($body // '', $expect{'/pg/listen'}, "/pg/listen: the NOTIFY sent by /pg/notify");
}

for my $url (@urls) {
    next if $url =~ m{^/pg/notify};
    if ($url eq '/pg/listen') {
        listen_and_notify();
    } elsif (my $re = $expect{$url}) {
        get_like($url, $re);
    } else {
        fail("$url: make run prints it, and this test has no expectation for it");
    }
}

sub workers_of {
    my $master = shift;
    my @pids;
    for my $stat (glob "/proc/[0-9]*/stat") {
        open my $fh, '<', $stat or next;
        my ($pid, $ppid) = (<$fh> // '') =~ /^(\d+) \(.*\) \S+ (\d+)/ or next;
        push @pids, $pid if $ppid == $master;
    }
    return @pids;
}

# reload: the old workers (consumer and LISTEN loop waiting) end within a
# few of the loops' 1 s waits; the new ones take the flow over
my $master = $n->master_pid;
my @old = workers_of($master);
is(scalar(@old), 2, "2 workers before the reload");
kill 'HUP', $master;
my $t0 = time;
sleep 0.1 while grep({ kill 0, $_ } @old) && time - $t0 < 15;
my $took = time - $t0;
ok(!grep({ kill 0, $_ } @old), sprintf("the old workers exited %.1f s after the HUP", $took));
cmp_ok($took, '<', 5, "the old workers exited within 5 s of the HUP");

get_like("/kv/put?key=$key&value=after-reload",
         qr/\Asent $key=after-reload to Kafka topic examples-kv; the consumer stored it in the dict after \d+ ms\n\z/);
get_like("/kv/get?key=$key", qr/\A$key = after-reload\n\z/);
get_like("/kv/invalidate?key=$key",
         qr/\ANOTIFY examples_kv '$key' sent; the LISTEN loop removed it from the dict after \d+ ms\n\z/);
my $res = $http->get("$base/kv/get?key=$key");
is("$res->{status} $res->{content}", "404 $key: not in the dict\n", "/kv/get after the NOTIFY: gone");

# stop
$t0 = time;
ok($n->stop(15), "nginx stops on QUIT");
cmp_ok(time - $t0, '<', 5, "within 5 s");

my @lines = $n->error_log_lines;
my @bad = grep { /\[(error|crit|alert|emerg)\]/ } @lines;
is(scalar(@bad), 0, "no error in the error log") or diag(@bad);
cmp_ok(scalar(grep { /resty\.ffi\(go\): shut down in/ } @lines), '>=', 4,
       "every worker (2 reloaded, 2 stopped) shut its Go runtime down");

done_testing();
