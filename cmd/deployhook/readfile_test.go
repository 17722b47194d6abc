package main

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// readFile returns what os.ReadFile does, for files below, at and above
// hugeRead, and its error for a file that is not there.
func TestReadFileIsOSReadFile(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []int{0, 10, hugeRead - 1, hugeRead, 3<<20 + 7, 4 << 20} {
		name := filepath.Join(dir, "f")
		want := bytes.Repeat([]byte("key = \"value\"\n"), n/14+1)[:n]
		if n > 0 {
			want[n-1] = 'z' // the last byte is read
		}
		if err := os.WriteFile(name, want, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := readFile(name)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%d bytes: read %d, %v", n, len(got), err)
		}
	}
	if _, err := readFile(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing file: %v, want ErrNotExist", err)
	}
}
