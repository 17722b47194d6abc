package runitlog

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock returns times one second apart, starting at a fixed instant.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1795648161, 5)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

func openT(t *testing.T, dir string, opts Options) *Dir {
	t.Helper()
	d, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func write(t *testing.T, d *Dir, s string) {
	t.Helper()
	n, err := d.Write([]byte(s))
	if err != nil || n != len(s) {
		t.Fatalf("Write(%q) = %d, %v", s, n, err)
	}
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func perm(t *testing.T, name string) fs.FileMode {
	t.Helper()
	st, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

// oldFiles lists the @ files of dir, sorted by name.
func oldFiles(t *testing.T, dir, suffix string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "@*"+suffix))
	if err != nil {
		t.Fatal(err)
	}
	for i := range names {
		names[i] = filepath.Base(names[i])
	}
	slices.Sort(names)
	return names
}

// contents concatenates the rotated files in name order, then current.
func contents(t *testing.T, dir string) string {
	var b strings.Builder
	for _, name := range oldFiles(t, dir, ".s") {
		b.WriteString(readFile(t, filepath.Join(dir, name)))
	}
	b.WriteString(readFile(t, filepath.Join(dir, "current")))
	return b.String()
}

func TestOpenModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "log")
	d, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name string
		want fs.FileMode
	}{
		{dir, 0o755},
		{filepath.Join(dir, "lock"), 0o600},
		{filepath.Join(dir, "current"), 0o644},
	}
	for _, c := range checks {
		if got := perm(t, c.name); got != c.want {
			t.Errorf("mode of %s while open = %v, want %v", c.name, got, c.want)
		}
	}
	write(t, d, "one\n")
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if got := perm(t, filepath.Join(dir, "current")); got != 0o744 {
		t.Errorf("mode of current after Close = %v, want 0744", got)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	if _, err := d.Write([]byte("late\n")); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Write after Close = %v, want os.ErrClosed", err)
	}
}

func TestRotateAtLineBoundaries(t *testing.T) {
	dir := t.TempDir()
	d := openT(t, dir, Options{MaxSize: 100, MaxFiles: -1, Now: newClock().Now})
	var all strings.Builder
	// Lines of assorted lengths, some written one by one, some many per
	// Write, and one longer than MaxSize.
	var batch strings.Builder
	for i := 0; i < 60; i++ {
		line := fmt.Sprintf("line %d %s\n", i, strings.Repeat("x", i%37))
		all.WriteString(line)
		batch.WriteString(line)
		if i%3 == 0 || i%7 == 0 {
			write(t, d, batch.String())
			batch.Reset()
		}
	}
	write(t, d, batch.String())
	long := strings.Repeat("L", 150) + "\n"
	all.WriteString(long)
	write(t, d, long)
	write(t, d, "after long\n")
	all.WriteString("after long\n")
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	rotated := oldFiles(t, dir, ".s")
	if len(rotated) < 10 {
		t.Fatalf("%d rotated files, want at least 10", len(rotated))
	}
	if got := contents(t, dir); got != all.String() {
		t.Fatalf("directory holds\n%q\nwant\n%q", got, all.String())
	}
	for _, name := range append(rotated, "current") {
		path := filepath.Join(dir, name)
		body := readFile(t, path)
		if !strings.HasSuffix(body, "\n") {
			t.Errorf("%s does not end with a whole line: %q", name, body)
		}
		if len(body) > 100 && strings.Count(body, "\n") != 1 {
			t.Errorf("%s holds %d bytes in several lines, past MaxSize 100", name, len(body))
		}
		if got := perm(t, path); got != 0o744 {
			t.Errorf("mode of %s = %v, want 0744", name, got)
		}
	}
	if body := readFile(t, filepath.Join(dir, rotated[len(rotated)-1])); body != long {
		t.Errorf("the over-long line is not alone in its file: %q", body)
	}
}

func TestPartialLineHeldBack(t *testing.T) {
	dir := t.TempDir()
	d := openT(t, dir, Options{})
	write(t, d, "abc")
	write(t, d, "def\nxyz")
	if got := readFile(t, filepath.Join(dir, "current")); got != "abcdef\n" {
		t.Errorf("current = %q before Close, want %q", got, "abcdef\n")
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, "current")); got != "abcdef\nxyz\n" {
		t.Errorf("current = %q after Close, want %q", got, "abcdef\nxyz\n")
	}
}

func TestMaxFiles(t *testing.T) {
	dir := t.TempDir()
	// Files svlogd's rmoldest treats specially: ".u" is neither counted nor
	// deleted, ".t" (a processor's leftover) is deleted, other names of
	// another length are ignored.
	keep := []string{"@400000000000000000000001.u", "@4000.s", "config"}
	for _, name := range append(keep, "@400000000000000000000002.t") {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d := openT(t, dir, Options{MaxSize: 10, MaxFiles: 3, Now: newClock().Now})
	for i := 0; i < 20; i++ {
		write(t, d, fmt.Sprintf("line %03d\n", i)) // 9 bytes: one per file
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	rotated := oldFiles(t, dir, ".s")
	var got []string
	for _, name := range rotated {
		if len(name) == 27 {
			got = append(got, readFile(t, filepath.Join(dir, name)))
		}
	}
	want := []string{"line 016\n", "line 017\n", "line 018\n"}
	if !slices.Equal(got, want) {
		t.Errorf("rotated files hold %q, want the newest %q", got, want)
	}
	for _, name := range keep {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s: %v, want it kept", name, err)
		}
	}
	if tfiles := oldFiles(t, dir, ".t"); len(tfiles) != 0 {
		t.Errorf("processor leftovers %v not deleted", tfiles)
	}
}

func TestMaxFilesUnlimited(t *testing.T) {
	dir := t.TempDir()
	d := openT(t, dir, Options{MaxSize: 10, MaxFiles: -1, Now: newClock().Now})
	for i := 0; i < 15; i++ {
		write(t, d, fmt.Sprintf("line %03d\n", i))
	}
	if got := len(oldFiles(t, dir, ".s")); got != 14 {
		t.Errorf("%d rotated files, want all 14", got)
	}
}

func TestCurrentAtStart(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		mode     fs.FileMode
		wantU    bool   // renamed to @<now>.u
		wantCurr string // current after Open, one write and Close
	}{
		{"stale without exec bit", "stale\n", 0o644, true, "new\n"},
		{"stale group exec only", "stale\n", 0o654, true, "new\n"},
		{"empty without exec bit", "", 0o644, false, "new\n"},
		{"closed by svlogd", "old\n", 0o744, false, "old\nnew\n"},
		{"owner exec only", "old\n", 0o700, false, "old\nnew\n"},
		{"closed mid-line", "frag", 0o744, false, "frag\nnew\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cur := filepath.Join(dir, "current")
			if err := os.WriteFile(cur, []byte(tt.body), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(cur, tt.mode); err != nil {
				t.Fatal(err)
			}
			clk := newClock()
			wantName := TAI64N(clk.t.Add(time.Second)) + ".u"
			d := openT(t, dir, Options{Now: clk.Now})
			if got := perm(t, cur); got != 0o644 {
				t.Errorf("mode of current while open = %v, want 0644", got)
			}
			write(t, d, "new\n")
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			if got := readFile(t, cur); got != tt.wantCurr {
				t.Errorf("current = %q, want %q", got, tt.wantCurr)
			}
			u := oldFiles(t, dir, ".u")
			if !tt.wantU {
				if len(u) != 0 {
					t.Errorf("renamed %v, want nothing renamed", u)
				}
				return
			}
			if len(u) != 1 || u[0] != wantName {
				t.Fatalf(".u files %v, want [%s]", u, wantName)
			}
			if got := readFile(t, filepath.Join(dir, u[0])); got != tt.body {
				t.Errorf("%s holds %q, want %q", u[0], got, tt.body)
			}
			// svlogd renames the stale file without touching its mode.
			if got := perm(t, filepath.Join(dir, u[0])); got != tt.mode {
				t.Errorf("mode of %s = %v, want %v as it was", u[0], got, tt.mode)
			}
		})
	}
}

func TestRotationNamesUnique(t *testing.T) {
	dir := t.TempDir()
	fixed := time.Unix(1795648161, 0)
	d := openT(t, dir, Options{MaxSize: 5, Now: func() time.Time { return fixed }})
	for i := 0; i < 4; i++ {
		write(t, d, "abcd\n")
	}
	want := []string{
		TAI64N(fixed) + ".s",
		TAI64N(fixed.Add(1)) + ".s",
		TAI64N(fixed.Add(2)) + ".s",
	}
	if got := oldFiles(t, dir, ".s"); !slices.Equal(got, want) {
		t.Errorf("rotated names %v, want %v", got, want)
	}
}

func TestLockRefusal(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	if locked, err := Locked(missing); locked || err != nil {
		t.Errorf("Locked(missing dir) = %v, %v; want false, nil", locked, err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Locked created %s: %v", missing, err)
	}

	d, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if locked, err := Locked(dir); !locked || err != nil {
		t.Errorf("Locked while open = %v, %v; want true, nil", locked, err)
	}
	_, err = Open(dir, Options{})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	for _, want := range []string{dir, "svlogd", "log_dir"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if locked, err := Locked(dir); locked || err != nil {
		t.Errorf("Locked after Close = %v, %v; want false, nil", locked, err)
	}
	d2, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	d2.Close()
}

func TestConcurrentWrites(t *testing.T) {
	dir := t.TempDir()
	d := openT(t, dir, Options{MaxSize: 512, MaxFiles: -1})
	const writers, lines = 8, 200
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < lines; i++ {
				// Each Write is atomic; a fragment left by one writer
				// would be completed by whichever writes next, as with
				// any shared io.Writer, so every Write here ends a line.
				fmt.Fprintf(d, "w%d a%d\nw%d b%d\n", w, i, w, i)
			}
		}()
	}
	wg.Wait()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, line := range strings.Split(strings.TrimSuffix(contents(t, dir), "\n"), "\n") {
		seen[line]++
	}
	var bad []string
	for w := 0; w < writers; w++ {
		for i := 0; i < lines; i++ {
			for _, l := range []string{fmt.Sprintf("w%d a%d", w, i), fmt.Sprintf("w%d b%d", w, i)} {
				if seen[l] != 1 {
					bad = append(bad, l)
				}
			}
		}
	}
	if len(seen) != 2*writers*lines {
		t.Errorf("%d distinct lines, want %d", len(seen), 2*writers*lines)
	}
	if len(bad) > 0 {
		t.Errorf("%d lines missing or repeated, first %q", len(bad), bad[0])
	}
	if !bytes.HasSuffix([]byte(readFile(t, filepath.Join(dir, "current"))), []byte("\n")) {
		t.Error("current does not end with a newline")
	}
}

func TestFailedRotationKeepsLines(t *testing.T) {
	dir := t.TempDir()
	d := openT(t, dir, Options{MaxSize: 10, Now: newClock().Now})
	write(t, d, "line 000\n")
	broken := errors.New("rename refused")
	rename = func(string, string) error { return broken }
	t.Cleanup(func() { rename = os.Rename })
	n, err := d.Write([]byte("line 001\n"))
	if !errors.Is(err, broken) || n != 9 {
		t.Errorf("Write during failed rotation = %d, %v; want 9, the rename error", n, err)
	}
	if got := perm(t, filepath.Join(dir, "current")); got != 0o644 {
		t.Errorf("mode of current after the failed rotation = %v, want 0644", got)
	}
	rename = os.Rename
	write(t, d, "line 002\n")
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := contents(t, dir), "line 000\nline 001\nline 002\n"; got != want {
		t.Errorf("directory holds %q, want %q", got, want)
	}
	if got := oldFiles(t, dir, ".s"); len(got) != 1 {
		t.Errorf("rotated files %v, want the one retried rotation", got)
	}
}
