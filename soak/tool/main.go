// Command tool is the measuring side of `make soak` (soak/run.sh drives
// it). Everything it records goes under the run directory (-run):
//
//	tool probe        probe each backend's location every 50 ms (probe.jsonl)
//	                  and read the workers' samples every second (stats.jsonl),
//	                  until SIGTERM; paused while <run>/probe.pause exists
//	tool snapshot     the live workers' current samples (snapshots.jsonl)
//	tool pg-activity  the soak's PostgreSQL sessions and their states
//	tool report       the checks, as Markdown on stdout; exit status 1 when
//	                  one fails
//	tool doc          put a report into docs/RELIABILITY.md
//	tool warm         whether every worker has opened every runtime
//	tool kafka-leader the port of the broker leading most partitions of a topic
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

var (
	runDir = flag.String("run", ".run-soak", "the soak's run directory")
	base   = flag.String("base", "http://127.0.0.1:21080", "the soak nginx")
)

// probed maps each backend to the location whose answer says it works.
var probed = map[string]string{
	"redis":    "/redis",
	"postgres": "/pg",
	"grpc":     "/grpc",
	"kafka":    "/kafka-sync",
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: tool [-run dir] [-base url] probe|snapshot|pg-activity|report|doc [flags]")
		os.Exit(2)
	}
	// global flags come first, then the subcommand and its own flags
	flag.CommandLine.Parse(os.Args[1:])
	args := flag.Args()
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "tool: a subcommand is required")
		os.Exit(2)
	}
	var err error
	switch args[0] {
	case "probe":
		err = probe()
	case "snapshot":
		err = snapshot(args[1:])
	case "pg-activity":
		err = pgActivity()
	case "report":
		err = report(args[1:])
	case "doc":
		err = doc(args[1:])
	case "warm":
		err = warm(args[1:])
	case "kafka-leader":
		err = kafkaLeader(args[1:])
	default:
		err = fmt.Errorf("unknown subcommand %q", args[0])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak tool:", err)
		os.Exit(1)
	}
}

func path(name string) string { return filepath.Join(*runDir, name) }

func unixNow() float64 { return float64(time.Now().UnixNano()) / 1e9 }

// ProbeResult is one probe request.
type ProbeResult struct {
	Backend string  `json:"b"`
	Start   float64 `json:"t0"`
	End     float64 `json:"t1"`
	OK      bool    `json:"ok"`
	Err     string  `json:"err,omitempty"`
}

// Worker is one worker's sample, as the nginx timer writes it.
type Worker map[string]float64

// Stats is one read of /stats: the workers' samples and the counters.
type Stats struct {
	Time     float64            `json:"t"`
	Label    string             `json:"label,omitempty"`
	Workers  []Worker           `json:"workers"`
	Counters map[string]float64 `json:"counters"`
}

// jsonl appends JSON lines to a file from several goroutines.
type jsonl struct {
	mu sync.Mutex
	w  *bufio.Writer
	f  *os.File
}

func openJSONL(name string) (*jsonl, error) {
	f, err := os.OpenFile(path(name), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", name, err)
	}
	return &jsonl{w: bufio.NewWriter(f), f: f}, nil
}

func (j *jsonl) put(v any) {
	b, _ := json.Marshal(v)
	j.mu.Lock()
	j.w.Write(append(b, '\n'))
	j.mu.Unlock()
}

func (j *jsonl) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.w.Flush(); err != nil {
		return err
	}
	return j.f.Close()
}

var client = &http.Client{Timeout: 10 * time.Second}

func get(ctx context.Context, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, strings.TrimSpace(string(body)), err
}

func probe() error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	probes, err := openJSONL("probe.jsonl")
	if err != nil {
		return err
	}
	stats, err := openJSONL("stats.jsonl")
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	for b, loc := range probed {
		wg.Add(1)
		go func() {
			defer wg.Done()
			probeLoop(ctx, b, *base+loc, probes)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			if st, err := readStats(ctx); err == nil {
				stats.put(st)
			}
			sleepCtx(ctx, time.Second)
		}
	}()
	wg.Wait()
	if err := probes.close(); err != nil {
		return err
	}
	return stats.close()
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func probeLoop(ctx context.Context, backend, url string, out *jsonl) {
	const every = 50 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		if _, err := os.Stat(path("probe.pause")); err == nil {
			sleepCtx(ctx, every)
			continue
		}
		r := ProbeResult{Backend: backend, Start: unixNow()}
		code, body, err := get(ctx, url)
		r.End = unixNow()
		if ctx.Err() != nil {
			return // cut by the end of the run, not by the backend
		}
		r.OK = err == nil && code == http.StatusOK
		if !r.OK {
			if err != nil {
				r.Err = err.Error()
			} else {
				r.Err = fmt.Sprintf("%d %s", code, body)
			}
		}
		out.put(r)
		sleepCtx(ctx, every-time.Since(start))
	}
}

// readStats reads /stats: "w:<pid> k=v k=v ..." lines for the workers,
// "<name> <number>" for the shared counters. Samples of workers that are
// gone (exited after a reload) or stale are left out.
func readStats(ctx context.Context) (*Stats, error) {
	code, body, err := get(ctx, *base+"/stats")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("/stats: %d %s", code, body)
	}
	st := &Stats{Time: unixNow(), Counters: map[string]float64{}}
	for _, line := range strings.Split(body, "\n") {
		key, rest, _ := strings.Cut(line, " ")
		if !strings.HasPrefix(key, "w:") {
			if v, err := strconv.ParseFloat(rest, 64); err == nil {
				st.Counters[key] = v
			}
			continue
		}
		w := Worker{}
		for _, kv := range strings.Fields(rest) {
			k, v, _ := strings.Cut(kv, "=")
			w[k], _ = strconv.ParseFloat(v, 64)
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", int(w["pid"]))); err != nil {
			continue
		}
		if st.Time-w["t"] > 2 {
			continue
		}
		st.Workers = append(st.Workers, w)
	}
	sort.Slice(st.Workers, func(i, j int) bool { return st.Workers[i]["pid"] < st.Workers[j]["pid"] })
	return st, nil
}

// snapshot records the live workers' samples under a label; it waits
// until both workers have a fresh one.
func snapshot(args []string) error {
	fs := flag.NewFlagSet("snapshot", flag.ExitOnError)
	label := fs.String("label", "", "what this snapshot is")
	workers := fs.Int("workers", 2, "workers expected")
	settle := fs.Duration("settle", 0, "sample again for up to this long while a worker has more goroutines than in the idle snapshot")
	fs.Parse(args)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second+*settle)
	defer cancel()
	var idle *Stats
	if *settle > 0 {
		snaps, err := readJSONL[Stats]("snapshots.jsonl")
		if err != nil {
			return err
		}
		for i := range snaps {
			if snaps[i].Label == "idle" {
				idle = &snaps[i]
			}
		}
		if idle == nil {
			return errors.New("snapshot -settle: no idle snapshot to settle against")
		}
	}
	settleUntil := time.Now().Add(*settle)
	for {
		st, err := readStats(ctx)
		if err == nil && len(st.Workers) == *workers {
			if idle != nil && time.Now().Before(settleUntil) && !settled(idle, st) {
				// a client's pool may hold a connection the load opened
				// (and its goroutine) until its idle timeout; a leak stays
				sleepCtx(ctx, time.Second)
				continue
			}
			st.Label = *label
			out, err := openJSONL("snapshots.jsonl")
			if err != nil {
				return err
			}
			out.put(st)
			if err := out.close(); err != nil {
				return err
			}
			return dumpGoroutines(ctx, *label, st.Workers)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("snapshot %s: no fresh sample of %d workers (last error: %v)", *label, *workers, err)
		}
		sleepCtx(ctx, 300*time.Millisecond)
	}
}

// settled reports whether no worker of st has more goroutines, besides
// idle call workers, than in idle (the check report.go makes).
func settled(idle, st *Stats) bool {
	for _, w := range st.Workers {
		for _, i := range idle.Workers {
			if i["pid"] == w["pid"] && otherGoroutines(w) > otherGoroutines(i) {
				return false
			}
		}
	}
	return true
}

// otherGoroutines counts a worker's goroutines besides its idle call
// workers (core/workers.go), which wait for the next call and are bounded.
func otherGoroutines(w Worker) float64 { return w["goroutines"] - w["idle_workers"] }

// PgActivity is what pg-activity saw.
type PgActivity struct {
	Sessions          int `json:"sessions"`
	IdleInTransaction int `json:"idle_in_transaction"`
}

func pgConnect(ctx context.Context) (*pgx.Conn, error) {
	dsn := os.Getenv("SOAK_PG_DSN")
	if dsn == "" {
		return nil, errors.New("SOAK_PG_DSN is not set")
	}
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	return c, nil
}

func pgActivity() error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := pgConnect(ctx)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	var a PgActivity
	err = c.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE state = 'idle in transaction')
		FROM pg_stat_activity WHERE application_name = 'soak'`).Scan(&a.Sessions, &a.IdleInTransaction)
	if err != nil {
		return fmt.Errorf("reading pg_stat_activity: %w", err)
	}
	b, _ := json.Marshal(a)
	return os.WriteFile(path("pg-activity.json"), b, 0o644)
}

// dumpGoroutines saves each worker's goroutine stacks as
// goroutines-<label>-<pid>.txt (asking until every worker answered: the
// kernel picks which worker takes a connection).
func dumpGoroutines(ctx context.Context, label string, workers []Worker) error {
	want := map[string]bool{}
	for _, w := range workers {
		want[strconv.Itoa(int(w["pid"]))] = true
	}
	for len(want) > 0 {
		if ctx.Err() != nil {
			return fmt.Errorf("goroutines of workers %v: no answer", want)
		}
		// a new connection each time, so both workers get asked
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, *base+"/goroutines", nil)
		req.Close = true
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/goroutines: %d %v", resp.StatusCode, err)
		}
		first, rest, _ := strings.Cut(string(body), "\n")
		pid := strings.TrimPrefix(first, "pid ")
		if want[pid] {
			delete(want, pid)
			name := path(fmt.Sprintf("goroutines-%s-%s.txt", label, pid))
			if err := os.WriteFile(name, []byte(rest), 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// warm fails unless each of the workers has at least -handles Go objects
// open: the kernel hands connections to whichever worker accepts first, so
// one short load may leave a worker without some runtime.
func warm(args []string) error {
	fs := flag.NewFlagSet("warm", flag.ExitOnError)
	handles := fs.Float64("handles", 6, "Go objects a warm worker holds")
	workers := fs.Int("workers", 2, "workers expected")
	fs.Parse(args)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := readStats(ctx)
	if err != nil {
		return err
	}
	if len(st.Workers) != *workers {
		return fmt.Errorf("%d workers sampled, %d expected", len(st.Workers), *workers)
	}
	for _, w := range st.Workers {
		if w["handles"] < *handles {
			return fmt.Errorf("worker %.0f holds %.0f objects, not yet %.0f", w["pid"], w["handles"], *handles)
		}
	}
	return nil
}
