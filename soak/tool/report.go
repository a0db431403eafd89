package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// checks collects pass/fail lines; the report ends with them.
type checks struct {
	rows   [][3]string
	failed int
}

// note adds a figure that is shown but not checked.
func (c *checks) note(what, figure string) {
	c.rows = append(c.rows, [3]string{what, figure, "(figure)"})
}

func (c *checks) add(ok bool, what, figure string) {
	res := "ok"
	if !ok {
		res = "**FAIL**"
		c.failed++
	}
	c.rows = append(c.rows, [3]string{what, figure, res})
}

type event struct {
	t    float64
	name string
	arg  string
}

func readEvents() ([]event, error) {
	f, err := os.Open(path("events.log"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var evs []event
	s := bufio.NewScanner(f)
	for s.Scan() {
		fs := strings.Fields(s.Text())
		if len(fs) < 2 {
			continue
		}
		t, _ := strconv.ParseFloat(fs[0], 64)
		e := event{t: t, name: fs[1]}
		if len(fs) > 2 {
			e.arg = fs[2]
		}
		evs = append(evs, e)
	}
	return evs, s.Err()
}

func find(evs []event, name, arg string) float64 {
	for _, e := range evs {
		if e.name == name && e.arg == arg {
			return e.t
		}
	}
	return 0
}

func readJSONL[T any](name string) ([]T, error) {
	f, err := os.Open(path(name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []T
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 1<<20), 1<<24)
	for s.Scan() {
		var v T
		if err := json.Unmarshal(s.Bytes(), &v); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, v)
	}
	return out, s.Err()
}

func readLines(name string) ([]string, error) {
	b, err := os.ReadFile(path(name))
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(b)), nil
}

func report(args []string) error {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	duration := fs.Int("duration", 0, "seconds of the whole run")
	chaos := fs.Int("chaos", 0, "seconds of the chaos phase")
	steady := fs.Int("steady", 0, "seconds of the steady phase")
	brokers := fs.String("brokers", "", "Kafka brokers, comma-separated")
	timeout := fs.Int("timeout", 2000, "the largest timeout (ms) a request may wait on")
	command := fs.String("command", "", "the command that ran the soak")
	fs.Parse(args)

	evs, err := readEvents()
	if err != nil {
		return err
	}
	var c checks
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }

	// ------------------------------------------------ workers and latency
	log, err := os.ReadFile(path("error.log"))
	if err != nil {
		return err
	}
	crashes := strings.Count(string(log), "exited on signal")
	c.add(crashes == 0, "no worker died (`exited on signal` in the error log)", strconv.Itoa(crashes))
	hups := 0
	for _, e := range evs {
		if e.name == "hup" {
			hups++
		}
	}

	w("### Load (wrk, 2 connections per location)\n\n")
	w("| phase | location | requests | non-2xx | socket errors | max latency |\n|---|---|---|---|---|---|\n")
	var maxLat float64
	var wrkTimeouts int
	for _, phase := range []string{"chaos", "steady"} {
		for _, loc := range []string{"redis", "pg", "kafka", "grpc"} {
			r, err := parseWrk(path("wrk-" + phase + "-" + loc + ".txt"))
			if err != nil {
				return err
			}
			maxLat = math.Max(maxLat, r.maxLatency)
			wrkTimeouts += r.timeouts
			w("| %s | /%s | %d | %d | %s | %.0f ms |\n", phase, loc, r.requests, r.non2xx, r.socketErrors, r.maxLatency*1000)
		}
	}
	w("\n")
	bound := float64(*timeout)/1000 + 1
	c.add(maxLat <= bound && wrkTimeouts == 0, fmt.Sprintf("no request hung: wrk's max latency <= largest timeout + 1 s (%.0f s), no wrk timeout (30 s)", bound),
		fmt.Sprintf("%.0f ms, %d timeouts", maxLat*1000, wrkTimeouts))
	c.note("nginx reloads (HUP)", strconv.Itoa(hups))

	// ------------------------------------------------ Kafka
	if err := kafkaChecks(&c, w, *brokers, string(log), evs); err != nil {
		return err
	}
	// ------------------------------------------------ PostgreSQL
	if err := pgChecks(&c, w); err != nil {
		return err
	}
	// ------------------------------------------------ per worker
	if err := workerChecks(&c, w, evs); err != nil {
		return err
	}
	// ------------------------------------------------ outages
	if err := outageChecks(&c, w, evs); err != nil {
		return err
	}

	var out strings.Builder
	fmt.Fprintf(&out, "Command: `%s` (%d s: chaos phase %d s with a reload every 10 s, steady phase %d s), %s.\n\n",
		*command, *duration, *chaos, *steady, time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	out.WriteString("### Checks\n\n| check | figure | result |\n|---|---|---|\n")
	for _, r := range c.rows {
		fmt.Fprintf(&out, "| %s | %s | %s |\n", r[0], r[1], r[2])
	}
	out.WriteString("\n")
	fmt.Print(out.String() + b.String())
	if c.failed > 0 {
		return fmt.Errorf("%d checks failed", c.failed)
	}
	return nil
}

type wrkResult struct {
	requests, non2xx, timeouts int
	socketErrors               string
	maxLatency                 float64 // seconds
}

var (
	wrkLatency  = regexp.MustCompile(`Latency\s+\S+\s+\S+\s+(\S+)`)
	wrkRequests = regexp.MustCompile(`(\d+) requests in`)
	wrkNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	wrkSocket   = regexp.MustCompile(`Socket errors: (.*)`)
	wrkTimeout  = regexp.MustCompile(`timeout (\d+)`)
)

func parseWrk(name string) (wrkResult, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return wrkResult{}, err
	}
	s := string(b)
	var r wrkResult
	m := wrkLatency.FindStringSubmatch(s)
	if m == nil {
		return r, fmt.Errorf("%s: no latency line:\n%s", name, s)
	}
	r.maxLatency, err = wrkDuration(m[1])
	if err != nil {
		return r, fmt.Errorf("%s: %w", name, err)
	}
	if m := wrkRequests.FindStringSubmatch(s); m != nil {
		r.requests, _ = strconv.Atoi(m[1])
	}
	if m := wrkNon2xx.FindStringSubmatch(s); m != nil {
		r.non2xx, _ = strconv.Atoi(m[1])
	}
	r.socketErrors = "none"
	if m := wrkSocket.FindStringSubmatch(s); m != nil {
		r.socketErrors = m[1]
		if t := wrkTimeout.FindStringSubmatch(m[1]); t != nil {
			r.timeouts, _ = strconv.Atoi(t[1])
		}
	}
	return r, nil
}

// wrkDuration reads wrk's units: us, ms, s, m, h.
func wrkDuration(s string) (float64, error) {
	for _, u := range []struct {
		suffix string
		scale  float64
	}{{"us", 1e-6}, {"ms", 1e-3}, {"s", 1}, {"m", 60}, {"h", 3600}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("latency %q: %w", s, err)
			}
			return f * u.scale, nil
		}
	}
	return 0, fmt.Errorf("latency %q: unknown unit", s)
}

// fingerprint is an order-independent checksum of a multiset of ids.
func fingerprint(ids map[string]int) (count int, sum uint64) {
	for id, n := range ids {
		h := fnv.New64a()
		h.Write([]byte(id))
		count += n
		sum += h.Sum64() * uint64(n)
	}
	return count, sum
}

// dupWindow: a message written twice must have been on the wire within
// this many seconds of a Kafka outage. Without idempotent producing
// (kafka-go has none), a produce request that reached a broker which then
// went down is retried and written again: at-least-once, as docs/kafka.md
// says. Its copies carry the times of the attempts, around the outage; a
// duplicate far from every outage would be a bug.
const dupWindow = 10.0

// kafkaOutageWindows says whether a time is within dupWindow of one of
// Kafka's outages in evs (an outage without its end lasts to the end).
func kafkaOutageWindows(evs []event) func(t float64) bool {
	var outages [][2]float64 // down and up times
	for _, e := range evs {
		switch {
		case e.name == "down" && e.arg == "kafka":
			outages = append(outages, [2]float64{e.t, math.Inf(1)})
		case e.name == "up" && e.arg == "kafka" && len(outages) > 0:
			outages[len(outages)-1][1] = e.t
		}
	}
	return func(t float64) bool {
		for _, o := range outages {
			if t >= o[0]-dupWindow && t <= o[1]+dupWindow {
				return true
			}
		}
		return false
	}
}

func kafkaChecks(c *checks, w func(string, ...any), brokers, errLog string, evs []event) error {
	accepted, err := readLines("kafka-accepted.log")
	if err != nil {
		return err
	}
	acc := map[string]int{}
	for _, id := range accepted {
		acc[id]++
	}
	consumed, times, err := consumeAll(strings.Split(brokers, ","), "soak")
	if err != nil {
		return err
	}
	nearOutage := kafkaOutageWindows(evs)
	var lost, dup, dupAway, extra int
	var lostIDs, awayIDs []string
	for id := range acc {
		switch n := consumed[id]; {
		case n == 0:
			lost++
			if len(lostIDs) < 5 {
				lostIDs = append(lostIDs, id)
			}
		case n > 1:
			dup += n - 1
			for _, t := range times[id] {
				if !nearOutage(t) {
					dupAway++
					if len(awayIDs) < 5 {
						awayIDs = append(awayIDs, fmt.Sprintf("%s at %s", id, clock(t)))
					}
					break
				}
			}
		}
	}
	for id := range consumed {
		if acc[id] == 0 {
			extra++
		}
	}
	na, sa := fingerprint(acc)
	nc, sc := fingerprint(consumed)
	c.add(lost == 0 && len(acc) == len(accepted),
		"Kafka: every message send_async accepted was consumed (none lost)",
		fmt.Sprintf("accepted %d, consumed %d, lost %d, duplicated %d; checksum %016x / %016x", na, nc, lost, dup, sa, sc))
	c.add(dupAway == 0,
		fmt.Sprintf("Kafka: a message written twice was sent within %.0f s of a broker outage (a retried produce request; at-least-once)", dupWindow),
		fmt.Sprintf("%d extra copies; %d messages with a copy away from Kafka's outages", dup, dupAway))
	if lost > 0 {
		w("Lost Kafka messages (first ids): %s\n\n", strings.Join(lostIDs, " "))
	}
	if dupAway > 0 {
		w("Kafka messages written twice away from any outage (first ones): %s\n\n", strings.Join(awayIDs, "; "))
	}
	if extra > 0 {
		w("Kafka messages consumed that no request reported accepted: %d\n\n", extra)
	}
	// Messages unconfirmed at a worker's shutdown deadline may still be
	// acknowledged after it: the consumption count above decides whether
	// they arrived; their count is a figure.
	unconfirmed := countLines(errLog, "were not confirmed by the shutdown deadline")
	handOver := countLines(errLog, "could not be handed to Go")
	failed := countLines(errLog, "soak: kafka message failed")
	refused := countLines(errLog, "soak: send_async")
	c.add(handOver+failed == 0, "Kafka: no accepted message reported failed (error handler, hand-over)",
		fmt.Sprintf("%d failed, %d not handed over; %d refused (buffer full); %d shutdowns with unconfirmed messages",
			failed, handOver, refused, unconfirmed))
	return nil
}

// maxIdleWorkers is core's bound on goroutines kept waiting for calls.
const maxIdleWorkers = 64

func countLines(log, s string) int {
	n := 0
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

// consumeAll reads every partition of topic from its first offset to its
// end: how many times each value was written, and the time of every copy
// (Unix seconds).
func consumeAll(brokers []string, topic string) (map[string]int, map[string][]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	conn, err := kafka.DialContext(ctx, "tcp", brokers[0])
	if err != nil {
		return nil, nil, fmt.Errorf("kafka: dialing %s: %w", brokers[0], err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("kafka: partitions of %s: %w", topic, err)
	}
	seen := map[string]int{}
	times := map[string][]float64{}
	for _, p := range parts {
		if err := consumePartition(ctx, brokers[0], topic, p.ID, seen, times); err != nil {
			return nil, nil, err
		}
	}
	return seen, times, nil
}

func consumePartition(ctx context.Context, broker, topic string, part int, seen map[string]int, times map[string][]float64) error {
	conn, err := kafka.DialLeader(ctx, "tcp", broker, topic, part)
	if err != nil {
		return fmt.Errorf("kafka: leader of %s/%d: %w", topic, part, err)
	}
	defer conn.Close()
	first, last, err := conn.ReadOffsets()
	if err != nil {
		return fmt.Errorf("kafka: offsets of %s/%d: %w", topic, part, err)
	}
	next := first
	for next < last {
		if _, err := conn.Seek(next, kafka.SeekAbsolute); err != nil {
			return fmt.Errorf("kafka: seeking %s/%d to %d: %w", topic, part, next, err)
		}
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		batch := conn.ReadBatch(1, 16<<20)
		n := 0
		for {
			m, err := batch.ReadMessage()
			if err != nil {
				break
			}
			if m.Offset < next {
				continue
			}
			v := string(m.Value)
			seen[v]++
			times[v] = append(times[v], float64(m.Time.UnixNano())/1e9)
			next = m.Offset + 1
			n++
		}
		if err := batch.Close(); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("kafka: reading %s/%d at %d: %w", topic, part, next, err)
		}
		if n == 0 {
			return fmt.Errorf("kafka: reading %s/%d: no progress at offset %d of %d", topic, part, next, last)
		}
	}
	return nil
}

func pgChecks(c *checks, w func(string, ...any)) error {
	b, err := os.ReadFile(path("pg-committed.log"))
	if err != nil {
		return err
	}
	committed := map[int64]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		id, token, _ := strings.Cut(l, " ")
		n, err := strconv.ParseInt(id, 10, 64)
		if err != nil {
			return fmt.Errorf("pg-committed.log: %q", l)
		}
		committed[n] = token
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgConnect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT id, token FROM soak_inserts")
	if err != nil {
		return fmt.Errorf("reading soak_inserts: %w", err)
	}
	inTable := map[int64]string{}
	for rows.Next() {
		var id int64
		var token string
		if err := rows.Scan(&id, &token); err != nil {
			return err
		}
		inTable[id] = token
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading soak_inserts: %w", err)
	}
	missing := 0
	for id, token := range committed {
		if inTable[id] != token {
			missing++
		}
	}
	c.add(missing == 0, "PostgreSQL: every insert that returned an id is in the table",
		fmt.Sprintf("%d returned, %d missing (%d rows in the table: %d whose client got an error)",
			len(committed), missing, len(inTable), len(inTable)-(len(committed)-missing)))
	ab, err := os.ReadFile(path("pg-activity.json"))
	if err != nil {
		return err
	}
	var a PgActivity
	if err := json.Unmarshal(ab, &a); err != nil {
		return err
	}
	c.add(a.IdleInTransaction == 0, "PostgreSQL: no session left `idle in transaction` (pg_stat_activity, after the load)",
		fmt.Sprintf("%d of %d sessions", a.IdleInTransaction, a.Sessions))
	return nil
}

func workerChecks(c *checks, w func(string, ...any), evs []event) error {
	snaps, err := readJSONL[Stats]("snapshots.jsonl")
	if err != nil {
		return err
	}
	var idle, final *Stats
	for i := range snaps {
		switch snaps[i].Label {
		case "idle":
			idle = &snaps[i]
		case "final":
			final = &snaps[i]
		}
	}
	if idle == nil || final == nil {
		return errors.New("snapshots.jsonl: the idle and final snapshots are missing")
	}
	samples, err := readJSONL[Stats]("stats.jsonl")
	if err != nil {
		return err
	}
	warmed := find(evs, "warmed-up", "")
	end := find(evs, "phase", "steady-end")
	w("### Workers of the steady phase\n\n")
	w("Samples: idle (after a warm-up that opened every runtime in both workers, before the load), after warm-up (%.0f s into the load), peak under load, after the load (idle again, %.0f s after it: 5 s, longer while a client's pool still held a connection the load opened, at most 65 s); growth: after the load vs after warm-up.\n\n",
		warmed-find(evs, "phase", "steady"), final.Time-end)
	w("| worker | in-flight | waiting | buffers allocated / freed | goroutines idle / final | RSS after warm-up / peak under load / after the load | growth |\n|---|---|---|---|---|---|---|\n")
	for _, f := range final.Workers {
		pid := f["pid"]
		var i Worker
		for _, x := range idle.Workers {
			if x["pid"] == pid {
				i = x
			}
		}
		if i == nil {
			c.add(false, fmt.Sprintf("worker %.0f: the same worker idle and final", pid), "not in the idle snapshot (did it restart?)")
			continue
		}
		// after warm-up: the first sample a quarter into the load; growth
		// compares the idle worker after the load with it (a leak stays);
		// the peak under load is shown: it includes what outages buffer
		// (the Kafka producer holds the messages of a stopped broker)
		var rssWarm, rssPeak float64
		for _, s := range samples {
			for _, x := range s.Workers {
				if x["pid"] != pid {
					continue
				}
				if s.Time >= warmed && rssWarm == 0 {
					rssWarm = x["rss_kb"]
				}
				if s.Time >= warmed && s.Time <= end {
					rssPeak = math.Max(rssPeak, x["rss_kb"])
				}
			}
		}
		growth := math.NaN()
		if rssWarm > 0 {
			growth = (f["rss_kb"] - rssWarm) / rssWarm * 100
		}
		w("| %.0f | %.0f | %.0f | %.0f / %.0f | %.0f / %.0f | %.1f / %.1f / %.1f MiB | %+.1f%% |\n",
			pid, f["in_flight"], f["waiting"], f["buffers_allocated"], f["buffers_freed"],
			i["goroutines"], f["goroutines"], rssWarm/1024, rssPeak/1024, f["rss_kb"]/1024, growth)
		name := fmt.Sprintf("worker %.0f: ", pid)
		c.add(f["in_flight"] == 0 && f["waiting"] == 0 && f["kafka_buffered"] == 0, name+"nothing in flight after the load (calls, waiters, Kafka buffer)",
			fmt.Sprintf("%.0f, %.0f, %.0f", f["in_flight"], f["waiting"], f["kafka_buffered"]))
		c.add(f["buffers_allocated"] == f["buffers_freed"], name+"C buffers allocated == freed",
			fmt.Sprintf("%.0f / %.0f", f["buffers_allocated"], f["buffers_freed"]))
		others := otherGoroutines
		c.add(others(f) <= others(i) && f["idle_workers"] <= maxIdleWorkers, name+"goroutines back to their idle count",
			fmt.Sprintf("%.0f idle, %.0f final (besides %.0f and %.0f idle call workers, at most %d)",
				others(i), others(f), i["idle_workers"], f["idle_workers"], maxIdleWorkers))
		if others(f) > others(i) {
			w("Worker %.0f: goroutines more after the load than idle, by where they wait: %s\n\n",
				pid, goroutineDiff(fmt.Sprintf("%.0f", pid)))
		}
		c.add(growth <= 10, name+"RSS growth after warm-up <= 10% (idle after the load vs a quarter into it)", fmt.Sprintf("%+.1f%%", growth))
	}
	w("\n")
	return nil
}

// outage is one window during which a backend was down.
type outage struct {
	backend      string
	down, up     float64
	probes, errs int
	recovery     float64 // seconds after up until the last failure's next success
	recovered    bool
}

func outageChecks(c *checks, w func(string, ...any), evs []event) error {
	probes, err := readJSONL[ProbeResult]("probe.jsonl")
	if err != nil {
		return err
	}
	sort.Slice(probes, func(i, j int) bool { return probes[i].Start < probes[j].Start })
	var outs []*outage
	open := map[string]*outage{}
	for _, e := range evs {
		switch e.name {
		case "down":
			o := &outage{backend: e.arg, down: e.t}
			open[e.arg] = o
			outs = append(outs, o)
		case "up":
			if o := open[e.arg]; o != nil {
				o.up = e.t
				delete(open, e.arg)
			}
		}
	}
	// Recovery: from the backend's return to the end of the first
	// successful probe that begins 1 s of successes. A failure belongs to
	// an outage when it ended after the stop and started before that
	// probe; the others are unexplained (reloads, other backends, load).
	const steadyFor = 1.0
	recoveredAt := map[*outage]float64{}
	for _, o := range outs {
		if o.up == 0 {
			continue
		}
		var mine []ProbeResult
		for _, p := range probes {
			if p.Backend == o.backend && p.Start >= o.up {
				mine = append(mine, p)
			}
		}
		for i, p := range mine {
			if !p.OK {
				continue
			}
			steady := true
			for _, q := range mine[i:] {
				if q.Start > p.Start+steadyFor {
					break
				}
				steady = steady && q.OK
			}
			if steady {
				o.recovery = math.Max(0, p.End-o.up)
				o.recovered = true
				recoveredAt[o] = p.Start
				break
			}
		}
	}
	unexplained := map[string]int{}
	var examples []string
	for _, p := range probes {
		var o *outage
		for _, x := range outs {
			// (a probe that started just before the stop can meet it)
			if x.backend != p.Backend || p.End < x.down {
				continue
			}
			if r, ok := recoveredAt[x]; !ok || p.Start < r {
				o = x
			}
		}
		switch {
		case o != nil && (o.up == 0 || p.Start < o.up):
			o.probes++
			if !p.OK {
				o.errs++
			}
		case o == nil && !p.OK:
			unexplained[p.Backend]++
			if len(examples) < 10 {
				examples = append(examples, fmt.Sprintf("%s at %s: %s", p.Backend, clock(p.Start), p.Err))
			}
		}
	}
	w("### Outages (probes every 50 ms per backend)\n\n")
	w("| backend | down at | for | probes | failed | error rate | recovered after it returned |\n|---|---|---|---|---|---|---|\n")
	worst := map[string]float64{}
	for _, o := range outs {
		rate := 0.0
		if o.probes > 0 {
			rate = float64(o.errs) / float64(o.probes) * 100
		}
		rec := "never"
		if o.recovered {
			rec = fmt.Sprintf("%.2f s", o.recovery)
			worst[o.backend] = math.Max(worst[o.backend], o.recovery)
		} else {
			worst[o.backend] = math.Inf(1)
		}
		w("| %s | %s | %.1f s | %d | %d | %.0f%% | %s |\n", o.backend, clock(o.down), o.up-o.down, o.probes, o.errs, rate, rec)
	}
	w("\n")
	for _, bk := range []string{"redis", "postgres", "grpc", "kafka"} {
		n := 0
		for _, o := range outs {
			if o.backend == bk {
				n++
			}
		}
		c.add(n > 0 && worst[bk] <= 2, fmt.Sprintf("%s: recovered within 2 s after each of its outages", bk),
			fmt.Sprintf("%d outages, worst %.2f s", n, worst[bk]))
	}
	total := 0
	var parts []string
	for _, bk := range []string{"redis", "postgres", "grpc", "kafka"} {
		total += unexplained[bk]
		parts = append(parts, fmt.Sprintf("%s %d", bk, unexplained[bk]))
	}
	// not one of the checks: shown, and listed below, but a
	// request that failed at a reload on a loaded machine does not fail
	// the run
	c.note("probes failed outside their own backend's outages (reloads, other backends down, load)",
		strings.Join(parts, ", "))
	if len(examples) > 0 {
		w("Failures outside outages (first ones): %s\n\n", strings.Join(examples, "; "))
	}
	return nil
}

func clock(t float64) string {
	sec, frac := math.Modf(t)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC().Format("15:04:05.0")
}

// doc replaces the generated part of docs/RELIABILITY.md (between the
// markers) with the report.
func doc(args []string) error {
	fs := flag.NewFlagSet("doc", flag.ExitOnError)
	rep := fs.String("report", "", "the report (Markdown)")
	out := fs.String("out", "docs/RELIABILITY.md", "the document")
	note := fs.String("note", "", "a line about the machine and the run")
	fs.Parse(args)
	r, err := os.ReadFile(*rep)
	if err != nil {
		return err
	}
	d, err := os.ReadFile(*out)
	if err != nil {
		return err
	}
	const begin, end = "<!-- soak:begin -->", "<!-- soak:end -->"
	s := string(d)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		return fmt.Errorf("%s: the markers %s and %s are missing", *out, begin, end)
	}
	body := string(r)
	if *note != "" {
		body = *note + "\n\n" + body
	}
	s = s[:i+len(begin)] + "\n" + body + s[j:]
	return os.WriteFile(*out, []byte(s), 0o644)
}

// kafkaLeader prints the port of the broker that leads the most partitions
// of a topic: taking it down hits the most messages.
func kafkaLeader(args []string) error {
	fs := flag.NewFlagSet("kafka-leader", flag.ExitOnError)
	brokers := fs.String("brokers", "", "a broker")
	topic := fs.String("topic", "", "the topic")
	fs.Parse(args)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := kafka.DialContext(ctx, "tcp", *brokers)
	if err != nil {
		return fmt.Errorf("kafka: dialing %s: %w", *brokers, err)
	}
	defer conn.Close()
	parts, err := conn.ReadPartitions(*topic)
	if err != nil {
		return fmt.Errorf("kafka: partitions of %s: %w", *topic, err)
	}
	led := map[int]int{}
	best := 0
	for _, p := range parts {
		led[p.Leader.Port]++
		if led[p.Leader.Port] > led[best] {
			best = p.Leader.Port
		}
	}
	fmt.Println(best)
	return nil
}

// goroutineDiff compares a worker's idle and final goroutine dumps by the
// innermost function of the project or a library each goroutine sits in.
func goroutineDiff(pid string) string {
	count := func(label string) map[string]int {
		b, err := os.ReadFile(path("goroutines-" + label + "-" + pid + ".txt"))
		if err != nil {
			return nil
		}
		m := map[string]int{}
		for _, g := range strings.Split(string(b), "\n\n") {
			lines := strings.Split(strings.TrimSpace(g), "\n")
			where := "?"
			for i := 1; i < len(lines); i += 2 {
				fn := lines[i]
				if !strings.HasPrefix(fn, "runtime.") && !strings.HasPrefix(fn, "internal/") &&
					!strings.HasPrefix(fn, "sync.") && !strings.HasPrefix(fn, "time.") &&
					!strings.HasPrefix(fn, "net.") && !strings.HasPrefix(fn, "io.") &&
					!strings.HasPrefix(fn, "bufio.") && !strings.HasPrefix(fn, "crypto/") {
					where = fn
					if j := strings.LastIndex(where, "("); j > 0 {
						where = where[:j]
					}
					break
				}
			}
			m[where]++
		}
		return m
	}
	idle, final := count("idle"), count("final")
	var out []string
	for k, n := range final {
		if d := n - idle[k]; d != 0 {
			out = append(out, fmt.Sprintf("`%s` %+d", k, d))
		}
	}
	for k, n := range idle {
		if final[k] == 0 {
			out = append(out, fmt.Sprintf("`%s` %+d", k, -n))
		}
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}
