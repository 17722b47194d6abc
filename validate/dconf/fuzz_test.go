package dconf

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse checks the promises that hold for any input: no panic, no
// endless loop, every range inside the source with start before end, and
// line:column that agree with the byte offset.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(fixtureDir, "*.conf"))
	for _, path := range files {
		if src, err := os.ReadFile(path); err == nil {
			f.Add(src)
		}
	}
	for _, tc := range spec13 {
		f.Add([]byte(tc.src))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		file, diags := Parse(src, "fuzz.conf")
		checkInvariants(t, src, file, diags)
	})
}
