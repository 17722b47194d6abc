//go:build integration

package runitlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests run the real svlogd (Debian package runit), the program whose
// directories ours must be interchangeable with.

const svlogdTimeout = 20 * time.Second

func svlogdPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("svlogd")
	if err != nil {
		t.Skip("svlogd not on PATH: install the Debian package runit (CI does) to run the svlogd compatibility tests")
	}
	return p
}

// syncBuffer collects a process's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// svlogd is a running svlogd -v on one directory.
type svlogd struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	log   *syncBuffer
	done  chan struct{}
	err   error
}

func startSvlogd(t *testing.T, dir string) *svlogd {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), svlogdTimeout)
	t.Cleanup(cancel)
	s := &svlogd{cmd: exec.CommandContext(ctx, svlogdPath(t), "-v", dir), log: &syncBuffer{}, done: make(chan struct{})}
	s.cmd.Stderr = s.log
	s.cmd.Stdout = s.log
	var err error
	if s.stdin, err = s.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start svlogd: %v", err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		s.stdin.Close()
		<-s.done
		if t.Failed() {
			t.Logf("svlogd log:\n%s", s.log)
		}
	})
	return s
}

// wait closes svlogd's input, which makes it close the directory and exit.
func (s *svlogd) wait(t *testing.T) {
	t.Helper()
	s.stdin.Close()
	<-s.done
	if s.err != nil {
		t.Fatalf("svlogd: %v\n%s", s.err, s.log)
	}
}

// runSvlogd feeds input to a svlogd on dir and waits for it to exit.
func runSvlogd(t *testing.T, dir, input string) string {
	t.Helper()
	s := startSvlogd(t, dir)
	if _, err := io.WriteString(s.stdin, input); err != nil {
		t.Fatal(err)
	}
	s.wait(t)
	return s.log.String()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, s *svlogd, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(svlogdTimeout)
	for !cond() {
		select {
		case <-s.done:
			t.Fatalf("svlogd exited (%v) while waiting for %s", s.err, what)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", svlogdTimeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// snapshot returns the contents of dir's @ files by name.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, name := range oldFiles(t, dir, "") {
		m[name] = readFile(t, filepath.Join(dir, name))
	}
	return m
}

func writeLines(t *testing.T, d *Dir, n int, format string) string {
	t.Helper()
	var all strings.Builder
	for i := 0; i < n; i++ {
		line := fmt.Sprintf(format, i) + "\n"
		write(t, d, line)
		all.WriteString(line)
	}
	return all.String()
}

func TestSvlogdContinuesOurDirectory(t *testing.T) {
	svlogdPath(t)
	dir := t.TempDir()
	d, err := Open(dir, Options{MaxSize: 200})
	if err != nil {
		t.Fatal(err)
	}
	writeLines(t, d, 30, "deployhook line %02d 0123456789")
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	if len(before) < 3 {
		t.Fatalf("only %d rotations; the test wants several", len(before))
	}
	ours := readFile(t, filepath.Join(dir, "current"))

	log := runSvlogd(t, dir, "svlogd line 1\nsvlogd line 2\n")

	if u := oldFiles(t, dir, ".u"); len(u) != 0 {
		t.Errorf("svlogd renamed our current to %v", u)
	}
	if after := snapshot(t, dir); !maps.Equal(after, before) {
		t.Errorf("svlogd changed the rotated files: %v, was %v", slices.Sorted(maps.Keys(after)), slices.Sorted(maps.Keys(before)))
	}
	if got, want := readFile(t, filepath.Join(dir, "current")), ours+"svlogd line 1\nsvlogd line 2\n"; got != want {
		t.Errorf("current = %q, want svlogd to have appended to %q", got, ours)
	}
	if want := "append: " + dir + "/current"; !strings.Contains(log, want) {
		t.Errorf("svlogd log does not say %q:\n%s", want, log)
	}
	if got := perm(t, filepath.Join(dir, "current")); got != 0o744 {
		t.Errorf("mode of current after svlogd = %v, want 0744", got)
	}

	// And back: we continue what svlogd closed.
	d, err = Open(dir, Options{MaxSize: 200})
	if err != nil {
		t.Fatal(err)
	}
	write(t, d, "deployhook again\n")
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if u := oldFiles(t, dir, ".u"); len(u) != 0 {
		t.Errorf("we renamed svlogd's current to %v", u)
	}
	if got := contents(t, dir); !strings.HasSuffix(got, "svlogd line 2\ndeployhook again\n") {
		t.Errorf("directory holds %q, want our line after svlogd's", got)
	}
}

func TestRefuseWhileSvlogdHolds(t *testing.T) {
	svlogdPath(t)
	dir := t.TempDir()
	s := startSvlogd(t, dir)
	// Readiness is svlogd's own output, not Locked: Locked takes the lock
	// for an instant, and a svlogd whose lock_exnb fell in that instant
	// would give up on the directory. svlogd writes current only after it
	// holds the lock.
	if _, err := io.WriteString(s.stdin, "ready\n"); err != nil {
		t.Fatal(err)
	}
	cur := filepath.Join(dir, "current")
	waitFor(t, "svlogd to write current", s, func() bool {
		b, _ := os.ReadFile(cur)
		return string(b) == "ready\n"
	})

	if locked, err := Locked(dir); !locked || err != nil {
		t.Errorf("Locked while svlogd runs = %v, %v; want true, nil", locked, err)
	}
	d, err := Open(dir, Options{})
	if !errors.Is(err, ErrLocked) {
		if err == nil {
			d.Close()
		}
		t.Fatalf("Open while svlogd runs = %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), "log_dir") {
		t.Errorf("error %q does not tell to change log_dir", err)
	}
	if got := readFile(t, cur); got != "ready\n" {
		t.Errorf("refused Open touched current: %q", got)
	}

	s.wait(t)
	if locked, err := Locked(dir); locked || err != nil {
		t.Errorf("Locked after svlogd exited = %v, %v; want false, nil", locked, err)
	}
}

// A svlogd killed without closing leaves current 0644: svlogd itself would
// rename it to .u on its next start, and so do we.
func TestKilledSvlogdLeavesStaleCurrent(t *testing.T) {
	svlogdPath(t)
	dir := t.TempDir()
	s := startSvlogd(t, dir)
	if _, err := io.WriteString(s.stdin, "before the kill\n"); err != nil {
		t.Fatal(err)
	}
	cur := filepath.Join(dir, "current")
	waitFor(t, "svlogd to write current", s, func() bool {
		b, _ := os.ReadFile(cur)
		return string(b) == "before the kill\n"
	})
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-s.done
	if got := perm(t, cur); got != 0o644 {
		t.Fatalf("mode of current after kill = %v, want 0644", got)
	}

	start := time.Now()
	d, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	u := oldFiles(t, dir, ".u")
	if len(u) != 1 {
		t.Fatalf(".u files %v, want one", u)
	}
	if got := readFile(t, filepath.Join(dir, u[0])); got != "before the kill\n" {
		t.Errorf("%s holds %q", u[0], got)
	}
	if at, err := ParseTAI64N(strings.TrimSuffix(u[0], ".u")); err != nil || at.Before(start) || at.After(time.Now()) {
		t.Errorf("%s: time %v, %v; want between %v and now", u[0], at, err, start)
	}
}

var rotatedName = regexp.MustCompile(`^@[0-9a-f]{24}\.s$`)

func TestRotatedNamesLikeSvlogd(t *testing.T) {
	svlogdPath(t)
	dir := t.TempDir()
	start := time.Now()
	d, err := Open(dir, Options{MaxSize: 100, MaxFiles: -1})
	if err != nil {
		t.Fatal(err)
	}
	writeLines(t, d, 20, "deployhook %02d 0123456789")
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	ours := oldFiles(t, dir, ".s")

	// svlogd rotates the same directory with its own names.
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte("s100\nn100\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var in strings.Builder
	for i := 0; i < 20; i++ {
		fmt.Fprintf(&in, "svlogd %02d 0123456789\n", i)
	}
	runSvlogd(t, dir, in.String())
	end := time.Now()
	all := oldFiles(t, dir, ".s")
	theirs := slices.DeleteFunc(slices.Clone(all), func(n string) bool { return slices.Contains(ours, n) })
	if len(ours) < 3 || len(theirs) < 3 {
		t.Fatalf("%d of our rotations, %d of svlogd's; want several of each", len(ours), len(theirs))
	}

	var prev time.Time
	for i, name := range all { // sorted by name
		if !rotatedName.MatchString(name) {
			t.Errorf("%s is not named like @<24 hex>.s", name)
		}
		at, err := ParseTAI64N(strings.TrimSuffix(name, ".s"))
		if err != nil {
			t.Fatalf("ParseTAI64N(%s): %v", name, err)
		}
		// svlogd's clock reading is rounded to the microsecond (+500ns).
		if at.Before(start.Add(-time.Microsecond)) || at.After(end.Add(time.Microsecond)) {
			t.Errorf("%s parses to %v, outside the test's run %v to %v", name, at, start, end)
		}
		if i > 0 && !at.After(prev) {
			t.Errorf("%s sorts after its predecessor but is not later (%v, %v)", name, at, prev)
		}
		prev = at
	}
	if ours[len(ours)-1] >= theirs[0] {
		t.Errorf("our last rotation %s does not sort before svlogd's first %s", ours[len(ours)-1], theirs[0])
	}
	for _, name := range all {
		if got := perm(t, filepath.Join(dir, name)); got != 0o744 {
			t.Errorf("mode of %s = %v, want 0744", name, got)
		}
	}
}

func TestGrepFindsMigratedLine(t *testing.T) {
	svlogdPath(t)
	grep, err := exec.LookPath("grep")
	if err != nil {
		t.Skip("grep not on PATH")
	}
	dir := t.TempDir()
	d, err := Open(dir, Options{MaxSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	log := NewLogger(d)
	log.Infof("Starting store2 -> store3 migration...")
	log.Infof("Migrated store2 -> store3 (took: %v, records migrated: %d, records failed: %d)", 8819773973*time.Nanosecond, 281, 0)
	for i := 0; i < 40; i++ {
		log.Infof("copied batch %d of 128 records into apcera/store3/jmdb/", i)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	// svlogd takes the directory over and rotates it once more.
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte("s2000\nn100\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	runSvlogd(t, dir, strings.Repeat("svlogd filler line 0123456789 0123456789\n", 40))
	if n := len(oldFiles(t, dir, ".s")); n < 5 {
		t.Fatalf("%d rotated files, want several", n)
	}

	out, err := exec.Command("sh", "-c", grep+` -h "Migrated store2 -> store3" "$1"/*`, "sh", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("grep: %v\n%s", err, out)
	}
	line := regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,9})? \+0000 UTC \[INFO  pid=\d+ requestid='' source='svlogd_test\.go:\d+'\] Migrated store2 -> store3 \(took: 8\.819773973s, records migrated: 281, records failed: 0\)\n$`)
	if !line.Match(out) {
		t.Errorf("grep found %q, want the one platform line", out)
	}
	files, err := exec.Command("sh", "-c", grep+` -l "Migrated store2 -> store3" "$1"/*`, "sh", dir).CombinedOutput()
	if err != nil || !rotatedName.MatchString(filepath.Base(strings.TrimSpace(string(files)))) {
		t.Errorf("grep -l = %q, %v; want one rotated file", files, err)
	}
}

// The directory's config file, read the way svlogd reads it: the same
// config and the same input leave the same shape in a directory svlogd
// kept and one we kept: n old files (or none with s0), no file over s,
// and, with s0 or n0, every byte of the input.
func TestConfigLikeSvlogd(t *testing.T) {
	svlogdPath(t)
	var in strings.Builder
	for i := range 300 {
		fmt.Fprintf(&in, "line %04d %s\n", i, strings.Repeat("x", 90))
	}
	input := in.String() // 30,000 bytes
	for _, tc := range []struct {
		name, config string
		size         int // 0: no bound
		old          int // old files left; -1: every rotation kept
	}{
		{"s and n", "s4096\nn3\n", 4096, 3},
		{"s0 never rotates", "s0\nn3\n", 0, 0},
		{"n0 keeps all", "s8192\nn0\n", 8192, -1},
		{"s with a space is s0", "s 4096\n", 0, 0},
		{"other lines ignored", "# ours\nN1\nt3600\ns4096\nn2\n", 4096, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			shape := func(dir string) (old []string, all string) {
				old = oldFiles(t, dir, ".s")
				for _, name := range append(old, "current") {
					b := readFile(t, filepath.Join(dir, name))
					if tc.size > 0 && len(b) > tc.size {
						t.Errorf("%s: %s has %d bytes, over s%d", dir, name, len(b), tc.size)
					}
					all += b
				}
				return old, all
			}
			theirs, ours := t.TempDir(), t.TempDir()
			for _, dir := range []string{theirs, ours} {
				if err := os.WriteFile(filepath.Join(dir, "config"), []byte(tc.config), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			runSvlogd(t, theirs, input)
			d, err := Open(ours, Options{})
			if err != nil {
				t.Fatal(err)
			}
			write(t, d, input)
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			theirOld, theirAll := shape(theirs)
			ourOld, ourAll := shape(ours)
			if tc.old >= 0 && (len(theirOld) != tc.old || len(ourOld) != tc.old) {
				t.Errorf("old files: svlogd %d, ours %d, want %d", len(theirOld), len(ourOld), tc.old)
			}
			if tc.old < 0 || tc.size == 0 {
				// Nothing deleted: both hold the whole input.
				if theirAll != input || ourAll != input {
					t.Errorf("input not kept whole: svlogd %d bytes, ours %d, want %d", len(theirAll), len(ourAll), len(input))
				}
				// svlogd cuts lines at s, we rotate between them: the
				// counts may differ by the cut, never by more.
				if tc.old < 0 && (len(ourOld) < len(theirOld)-1 || len(ourOld) > len(theirOld)+1) {
					t.Errorf("rotations: svlogd %d, ours %d", len(theirOld), len(ourOld))
				}
			}
		})
	}
}
