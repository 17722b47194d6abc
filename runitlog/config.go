package runitlog

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// config is what Dir takes from the directory's "config" file: svlogd's
// "s" (rotate current past this size; 0 never) and "n" (keep this many
// old files; 0 all). Every other line (comments, patterns, "N", "t", "!",
// "u", "p") is left to svlogd: Dir neither selects lines nor runs a
// processor.
type config struct {
	size, files       int64
	sizeSet, filesSet bool
}

// readConfig reads dir/config as svlogd's logdir_open does: line by line,
// the first byte names the setting, and the number is the run of decimal
// digits right after it (runit's scan_ulong), so "s" alone or "s 10" is 0.
// A missing file is no config.
func readConfig(dir string) (config, error) {
	var c config
	b, err := os.ReadFile(filepath.Join(dir, "config"))
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("read log directory config: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" {
			continue
		}
		switch line[0] {
		case 's':
			c.size, c.sizeSet = scanUlong(line[1:]), true
		case 'n':
			c.files, c.filesSet = scanUlong(line[1:]), true
		}
	}
	return c, nil
}

// scanUlong is runit's scan_ulong: the leading decimal digits of s, 0 when
// there are none; it saturates rather than wraps.
func scanUlong(s string) int64 {
	var n int64
	for i := 0; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		d := int64(s[i] - '0')
		if n > (1<<63-1-d)/10 {
			return 1<<63 - 1
		}
		n = n*10 + d
	}
	return n
}

// apply fills the options the caller left zero from the config, with
// svlogd's meaning of 0: no rotation, no limit on old files.
func (c config) apply(o *Options) {
	if o.MaxSize == 0 && c.sizeSet {
		o.MaxSize = c.size
		if c.size == 0 {
			o.MaxSize = -1
		}
	}
	if o.MaxFiles == 0 && c.filesSet {
		o.MaxFiles = int(min(c.files, 1<<31-1))
		if c.files == 0 {
			o.MaxFiles = -1
		}
	}
}
