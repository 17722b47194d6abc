// Package harness starts real PostgreSQL and Consul servers on free loopback
// ports for tests and the demo: initdb/pg_ctl into a temporary directory, and
// one or three Consul servers with on-disk raft. Nothing here is a mock.
//
// The t-bound starters (StartPostgres, StartConsul, StartConsulCluster) stop
// their server in t.Cleanup and print its log only when the test failed. The
// Dir variants are for TestMain and commands: the caller stops the server and
// decides what to do with its log.
package harness

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// readyTimeout bounds every readiness wait.
const readyTimeout = 60 * time.Second

// pollInterval is how often readiness is probed.
const pollInterval = 50 * time.Millisecond

// RepoRoot returns the root of the deployhook module: the nearest directory,
// from the working directory up, whose go.mod declares it.
func RepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if isDeployhookRoot(dir) {
			return dir, nil
		}
		if dir == filepath.Dir(dir) {
			return "", fmt.Errorf("no deployhook go.mod above %s", wd)
		}
	}
}

func isDeployhookRoot(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); strings.HasPrefix(line, "module ") {
			return strings.TrimSpace(strings.TrimPrefix(line, "module ")) == "github.com/apcera/deployhook"
		}
	}
	return false
}

// FreePorts returns n distinct loopback TCP ports that were free a moment
// ago: all are held open together, then released.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// logBuffer keeps the last max bytes a server wrote, and copies everything
// to an optional writer.
type logBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
	tee io.Writer
}

func newLogBuffer(tee io.Writer) *logBuffer {
	return &logBuffer{max: 4 << 20, tee: tee}
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	if b.tee != nil {
		b.tee.Write(p) // best effort: a failing tee must not stop the server
	}
	return len(p), nil
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// Tail returns the last n lines of s, for error messages.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// errPortInUse reports a start that failed because a picked port was taken
// in the meantime: worth another attempt on new ports.
var errPortInUse = errors.New("port in use")

func portInUse(log string) bool {
	return bytes.Contains([]byte(log), []byte("address already in use"))
}

// logOnFailure registers a cleanup that prints a server's log when the test
// failed.
type logger interface {
	Cleanup(func())
	Failed() bool
	Logf(string, ...any)
}

func logOnFailure(t logger, name string, log func() string) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s log:\n%s", name, log())
		}
	})
}

// ClosedAddr returns a loopback address nothing listens on: a store that is
// down, for the tests of what happens then.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	ps, err := FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", ps[0])
}
