package runitlog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadConfig(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       Options
	}{
		{"none", "", Options{}},
		{"s and n", "s4096\nn3\n", Options{MaxSize: 4096, MaxFiles: 3}},
		{"no final newline", "n3\ns4096", Options{MaxSize: 4096, MaxFiles: 3}},
		{"zero means unlimited", "s0\nn0\n", Options{MaxSize: -1, MaxFiles: -1}},
		{"scan_ulong: space before the digits is 0", "s 4096\n", Options{MaxSize: -1}},
		{"scan_ulong: digits then junk", "s4096k\nn2 files\n", Options{MaxSize: 4096, MaxFiles: 2}},
		{"other settings ignored", "# comment\n-*\n+jobs*\nN2\nt3600\n!gzip\nu127.0.0.1\npprefix\n", Options{}},
		{"the last line wins", "n3\nn5\n", Options{MaxFiles: 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.text != "" {
				if err := os.WriteFile(filepath.Join(dir, "config"), []byte(tc.text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			c, err := readConfig(dir)
			if err != nil {
				t.Fatal(err)
			}
			var got Options
			c.apply(&got)
			if got.MaxSize != tc.want.MaxSize || got.MaxFiles != tc.want.MaxFiles {
				t.Errorf("options %+v, want %+v", got, tc.want)
			}
		})
	}
	// Options the caller set win.
	c := config{size: 10, files: 2, sizeSet: true, filesSet: true}
	o := Options{MaxSize: 500, MaxFiles: 7}
	c.apply(&o)
	if o.MaxSize != 500 || o.MaxFiles != 7 {
		t.Errorf("caller's options overridden: %+v", o)
	}
}

// Open honours the directory's config: current stays within s, and n old
// files are kept.
func TestOpenHonoursConfig(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte("s200\nn2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Repeat("x", 49) + "\n"
	for range 40 {
		write(t, d, line)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	old := oldFiles(t, dir, ".s")
	if len(old) != 2 {
		t.Errorf("%d old files, want n2: %v", len(old), old)
	}
	for _, name := range append(old, "current") {
		if n := len(readFile(t, filepath.Join(dir, name))); n > 200 {
			t.Errorf("%s has %d bytes, over s200", name, n)
		}
	}
}
