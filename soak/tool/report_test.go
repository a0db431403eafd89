package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWrkDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
		bad  bool
	}{
		{in: "812.00us", want: 812e-6},
		{in: "1.21ms", want: 1.21e-3},
		{in: "2.50s", want: 2.5},
		{in: "1.00m", want: 60},
		{in: "12", bad: true},
		{in: "x.yms", bad: true},
	} {
		got, err := wrkDuration(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("wrkDuration(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got < tc.want*0.999999 || got > tc.want*1.000001 {
			t.Errorf("wrkDuration(%q) = %v, %v, want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseWrk(t *testing.T) {
	out := `Running 10s test @ http://127.0.0.1:21080/pg
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.31ms    8.10ms 932.45ms   99.52%
    Req/Sec     2.12k   400.00     2.60k    80.00%
  28989 requests in 60.00s, 5.23MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 1993
Requests/sec:    483.14
`
	name := filepath.Join(t.TempDir(), "wrk.txt")
	if err := os.WriteFile(name, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := parseWrk(name)
	if err != nil {
		t.Fatal(err)
	}
	if r.requests != 28989 || r.non2xx != 1993 || r.timeouts != 2 || r.maxLatency < 0.932 || r.maxLatency > 0.933 {
		t.Errorf("parseWrk = %+v", r)
	}
}

func TestFingerprint(t *testing.T) {
	a := map[string]int{"x": 1, "y": 1, "z": 1}
	b := map[string]int{"z": 1, "x": 1, "y": 1}
	dup := map[string]int{"x": 2, "y": 1, "z": 1}
	lost := map[string]int{"x": 1, "y": 1}
	na, sa := fingerprint(a)
	nb, sb := fingerprint(b)
	if na != 3 || na != nb || sa != sb {
		t.Errorf("the same ids in another order: %d %x, %d %x", na, sa, nb, sb)
	}
	for name, m := range map[string]map[string]int{"duplicate": dup, "lost": lost} {
		if n, s := fingerprint(m); n == na && s == sa {
			t.Errorf("%s: the fingerprint did not change", name)
		}
	}
}

func TestSettled(t *testing.T) {
	idle := &Stats{Workers: []Worker{
		{"pid": 1, "goroutines": 30, "idle_workers": 10},
		{"pid": 2, "goroutines": 25, "idle_workers": 5},
	}}
	cases := []struct {
		name    string
		workers []Worker
		want    bool
	}{
		{"as idle", []Worker{{"pid": 1, "goroutines": 30, "idle_workers": 10}, {"pid": 2, "goroutines": 25, "idle_workers": 5}}, true},
		{"more idle call workers only", []Worker{{"pid": 1, "goroutines": 40, "idle_workers": 20}}, true},
		{"fewer", []Worker{{"pid": 2, "goroutines": 21, "idle_workers": 5}}, true},
		{"one more in one worker", []Worker{{"pid": 1, "goroutines": 30, "idle_workers": 10}, {"pid": 2, "goroutines": 26, "idle_workers": 5}}, false},
		{"a worker not in the idle snapshot is not compared", []Worker{{"pid": 3, "goroutines": 99}}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := settled(idle, &Stats{Workers: c.workers}); got != c.want {
				t.Fatalf("settled = %v, want %v", got, c.want)
			}
		})
	}
}

func TestKafkaOutageWindows(t *testing.T) {
	evs := []event{
		{t: 100, name: "down", arg: "redis"}, {t: 105, name: "up", arg: "redis"},
		{t: 200, name: "down", arg: "kafka"}, {t: 204, name: "up", arg: "kafka"},
		{t: 300, name: "down", arg: "kafka"}, // never came back
	}
	near := kafkaOutageWindows(evs)
	cases := []struct {
		at   float64
		want bool
	}{
		{102, false},                 // only redis was down
		{200 - dupWindow - 1, false}, // before the window
		{200 - dupWindow + 1, true},  // in flight as the broker went down
		{202, true},                  // during the outage
		{204 + dupWindow - 1, true},  // a retry after the return
		{204 + dupWindow + 1, false}, // long after
		{300 + 1000, true},           // an outage without its end
	}
	for _, c := range cases {
		if got := near(c.at); got != c.want {
			t.Errorf("near(%v) = %v, want %v", c.at, got, c.want)
		}
	}
	if kafkaOutageWindows(nil)(1) {
		t.Error("no outage, yet a time near one")
	}
}
