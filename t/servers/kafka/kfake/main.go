// Command kfake runs the project's Kafka test cluster: github.com/twmb/franz-go's
// in-memory kfake as a 3-broker cluster on fixed 127.0.0.1 ports, with seed
// topics, and a small control API on a Unix socket so tests can take brokers
// down and bring them back without losing the cluster's data:
//
//	POST /pause?port=19092   close that broker's connections and refuse new ones
//	POST /pause              the same for every broker (the cluster is "down")
//	POST /resume[?port=N]    accept connections again
//	POST /stop?port=19092    close that broker's connections and its listening
//	                         socket: connections are refused, as when a broker
//	                         process is stopped (data stays)
//	POST /start[?port=N]     listen again on the same port
//	GET  /status             one line per broker: port and up|down|stopped
//
// With -tls-cert/-tls-key the brokers speak TLS only; with -sasl they
// require SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 users). The ctl runs
// such single-broker clusters next to the plain one for the security tests.
//
// Started and stopped by t/servers/kafka/ctl.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// gate wraps one broker's listener: while paused it closes every
// connection it accepts and every connection it handed out before; while
// stopped it does not listen at all (kfake's accept loop waits in Accept
// until the gate starts again).
type gate struct {
	net.Listener
	port    int
	network string
	address string

	mu      sync.Mutex
	paused  bool
	stopped bool
	started *sync.Cond // broadcast when a stopped gate listens again
	conns   map[net.Conn]struct{}
}

type trackedConn struct {
	net.Conn
	g    *gate
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.g.mu.Lock()
		delete(c.g.conns, c.Conn)
		c.g.mu.Unlock()
	})
	return c.Conn.Close()
}

func (g *gate) Accept() (net.Conn, error) {
	for {
		g.mu.Lock()
		for g.stopped {
			g.started.Wait()
		}
		ln := g.Listener
		g.mu.Unlock()
		c, err := ln.Accept()
		if err != nil {
			g.mu.Lock()
			again := g.stopped || g.Listener != ln
			g.mu.Unlock()
			if again {
				continue // closed by stop: wait for start
			}
			return nil, err
		}
		g.mu.Lock()
		if g.paused {
			g.mu.Unlock()
			// A reset, as from a host that went away.
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			c.Close()
			continue
		}
		g.conns[c] = struct{}{}
		g.mu.Unlock()
		return &trackedConn{Conn: c, g: g}, nil
	}
}

func (g *gate) setPaused(p bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.paused = p
	if p {
		g.resetLocked()
	}
}

func (g *gate) resetLocked() {
	for c := range g.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		c.Close()
		delete(g.conns, c)
	}
}

// setStopped closes the listening socket (stop) or listens again (start).
func (g *gate) setStopped(stop bool) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if stop == g.stopped {
		return nil
	}
	if stop {
		g.stopped = true
		g.resetLocked()
		return g.Listener.Close()
	}
	ln, err := net.Listen(g.network, g.address)
	if err != nil {
		return fmt.Errorf("listening on %s again: %w", g.address, err)
	}
	g.Listener = ln
	g.stopped = false
	g.started.Broadcast()
	return nil
}

type gates struct {
	mu     sync.Mutex
	byPort map[int]*gate
}

func (gs *gates) listen(network, address string) (net.Listener, error) {
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	g := &gate{Listener: ln, port: port, network: network, address: ln.Addr().String(),
		conns: map[net.Conn]struct{}{}}
	g.started = sync.NewCond(&g.mu)
	gs.mu.Lock()
	gs.byPort[port] = g
	gs.mu.Unlock()
	return g, nil
}

func (gs *gates) selected(r *http.Request) ([]*gate, error) {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if p := r.URL.Query().Get("port"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || gs.byPort[n] == nil {
			return nil, fmt.Errorf("no broker on port %q", p)
		}
		return []*gate{gs.byPort[n]}, nil
	}
	all := make([]*gate, 0, len(gs.byPort))
	for _, g := range gs.byPort {
		all = append(all, g)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].port < all[j].port })
	return all, nil
}

func main() {
	ports := flag.String("ports", "19092,19093,19094", "comma-separated broker ports (one broker each)")
	topics := flag.String("topics", "rffi:4,rffi-keys:4,rffi-group:4,rffi-bench:4", "seed topics, name:partitions,...")
	control := flag.String("control", "", "Unix socket path of the control API (none if empty)")
	legacy := flag.Bool("legacy-produce", true, "accept Produce v2 (message sets), as old clients send")
	tlsCert := flag.String("tls-cert", "", "PEM certificate: the brokers speak TLS only (with -tls-key)")
	tlsKey := flag.String("tls-key", "", "PEM key of -tls-cert")
	saslUsers := flag.String("sasl", "", "require SASL; users as MECHANISM:user:password,...")
	flag.Parse()

	gs := &gates{byPort: map[int]*gate{}}
	var portList []int
	for _, p := range strings.Split(*ports, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			log.Fatalf("kfake: bad port %q", p)
		}
		portList = append(portList, n)
	}
	opts := []kfake.Opt{
		kfake.Ports(portList...),
		kfake.ListenFn(func(network, address string) (net.Listener, error) {
			// kfake listens on all interfaces by default: keep it local.
			_, port, _ := net.SplitHostPort(address)
			return gs.listen(network, net.JoinHostPort("127.0.0.1", port))
		}),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(4),
		kfake.GroupMinSessionTimeout(100 * time.Millisecond),
	}
	if *tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(*tlsCert, *tlsKey)
		if err != nil {
			log.Fatalf("kfake: loading the TLS certificate: %v", err)
		}
		opts = append(opts, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}))
	}
	if *saslUsers != "" {
		opts = append(opts, kfake.EnableSASL())
		for _, u := range strings.Split(*saslUsers, ",") {
			mech, rest, _ := strings.Cut(u, ":")
			user, pass, ok := strings.Cut(rest, ":")
			if !ok {
				log.Fatalf("kfake: -sasl wants MECHANISM:user:password, got %q", u)
			}
			opts = append(opts, kfake.Superuser(mech, user, pass))
		}
	}
	for _, t := range strings.Split(*topics, ",") {
		if t = strings.TrimSpace(t); t == "" {
			continue
		}
		name, parts, _ := strings.Cut(t, ":")
		n, err := strconv.Atoi(parts)
		if err != nil || n <= 0 {
			n = 4
		}
		opts = append(opts, kfake.SeedTopics(int32(n), name))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		log.Fatalf("kfake: %v", err)
	}
	if *legacy {
		acceptLegacyProduce(c)
	}
	log.Printf("kfake: brokers %v", c.ListenAddrs())

	var srv *http.Server
	if *control != "" {
		os.Remove(*control)
		ln, err := net.Listen("unix", *control)
		if err != nil {
			log.Fatalf("kfake: control socket: %v", err)
		}
		// nginx workers (nobody / www-data) drive outages in the tests
		if err := os.Chmod(*control, 0o666); err != nil {
			log.Fatalf("kfake: control socket: %v", err)
		}
		mux := http.NewServeMux()
		// each applies one change to the selected brokers
		apply := func(change func(*gate) error) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				sel, err := gs.selected(r)
				if err != nil {
					http.Error(w, err.Error(), http.StatusNotFound)
					return
				}
				for _, g := range sel {
					if err := change(g); err != nil {
						http.Error(w, err.Error(), http.StatusInternalServerError)
						return
					}
				}
				fmt.Fprintln(w, "ok")
			}
		}
		paused := func(p bool) func(*gate) error {
			return func(g *gate) error { g.setPaused(p); return nil }
		}
		stopped := func(s bool) func(*gate) error {
			return func(g *gate) error { return g.setStopped(s) }
		}
		mux.HandleFunc("/pause", apply(paused(true)))
		mux.HandleFunc("/resume", apply(paused(false)))
		mux.HandleFunc("/stop", apply(stopped(true)))
		mux.HandleFunc("/start", apply(stopped(false)))
		mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
			sel, _ := gs.selected(r)
			for _, g := range sel {
				g.mu.Lock()
				state := "up"
				if g.stopped {
					state = "stopped"
				} else if g.paused {
					state = "down"
				}
				g.mu.Unlock()
				fmt.Fprintf(w, "%d %s\n", g.port, state)
			}
		})
		srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Printf("kfake: control: %v", err)
			}
		}()
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		srv.Shutdown(ctx)
		cancel()
		os.Remove(*control)
	}
	c.Close()
}
