package core

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// A child process connects to the doorbell socket when this variable names
// it (the test binary re-runs itself as the intruder).
const intruderEnv = "RFFI_DOORBELL_INTRUDER"

func TestMain(m *testing.M) {
	if path := os.Getenv(intruderEnv); path != "" {
		conn, err := net.Dial("unix", path)
		if err != nil {
			os.Exit(3)
		}
		buf := make([]byte, 1)
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		// The doorbell closes a refused peer: a read returns EOF at once.
		if _, err := conn.Read(buf); err == nil {
			os.Exit(4) // it sent us something: it accepted us
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (l *logRecorder) log(_ int, msg string) {
	l.mu.Lock()
	l.lines = append(l.lines, msg)
	l.mu.Unlock()
}

func (l *logRecorder) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func TestDoorbellRefusesOtherProcesses(t *testing.T) {
	dir := t.TempDir()
	var logs logRecorder
	d := newDoorbell(logs.log)
	path, err := d.listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("private directory: %v %v", fi.Mode(), err)
	}

	intruder := exec.Command(os.Args[0], "-test.run=^$")
	intruder.Env = append(os.Environ(), intruderEnv+"="+path)
	if out, err := intruder.CombinedOutput(); err != nil {
		t.Fatalf("intruder: %v %s", err, out)
	}
	if !strings.Contains(logs.text(), "refused a connection from pid") {
		t.Fatalf("no refusal logged: %q", logs.text())
	}
	d.ring() // nobody accepted: the ring waits for the real dispatcher
	if d.connected() {
		t.Fatal("the intruder became the dispatcher")
	}

	// The worker's own dispatcher (this process) is accepted and gets the
	// ring that came before it; then nothing is left on disk.
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 8)
	if n, err := conn.Read(buf); err != nil || n != 1 {
		t.Fatalf("the missed ring: %d %v", n, err)
	}
	if _, err := os.Stat(filepath.Dir(path)); !os.IsNotExist(err) {
		t.Fatalf("the socket directory is still there: %v", err)
	}
	d.ring()
	if n, err := conn.Read(buf); err != nil || n != 1 {
		t.Fatalf("a ring after accept: %d %v", n, err)
	}
	d.close()
}

func TestDoorbellListenerClosedAtShutdownLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	d := newDoorbell(func(int, string) {})
	path, err := d.listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	d.close()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(filepath.Dir(path)); os.IsNotExist(err) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("the unused doorbell directory was not removed")
}
