package runitlog

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Defaults are svlogd's own (its "s" and "n" without a config file).
const (
	DefaultMaxSize  = 1_000_000
	DefaultMaxFiles = 10
)

// Modes as svlogd leaves them.
const (
	modeCurrent = 0o644 // current while it is being written
	modeDone    = 0o744 // current after a clean close, and every rotated file
	modeLock    = 0o600 // svlogd's open_append creates "lock" with 0600
	modeDir     = 0o755
)

// rename is os.Rename, replaced by tests to make a rotation fail.
var rename = os.Rename

// maxPartial bounds the unterminated tail Write holds back.
const maxPartial = 1 << 20

// ErrLocked is returned by Open when another process (svlogd or another
// deployhook) holds the directory's lock.
var ErrLocked = errors.New("log directory is locked")

// Options tune a Dir. Zero values take the directory's config file, else
// svlogd's defaults.
type Options struct {
	// MaxSize is the size past which current is rotated: a line that would
	// take current beyond it goes into a fresh current instead. 0 means
	// DefaultMaxSize; negative never rotates. A single line longer than
	// MaxSize is written whole, alone in its file.
	MaxSize int64
	// MaxFiles is the number of rotated files (@*.s) kept. 0 means
	// DefaultMaxFiles; negative keeps them all (svlogd's "n0").
	MaxFiles int
	// Now names rotated and stale files. nil means time.Now.
	Now func() time.Time
}

// Dir writes a runit (svlogd) log directory. It is safe for concurrent use.
// Writes are split into lines; a line is never split across two files, and
// an unterminated tail is held back until its newline arrives (or Close
// terminates it).
type Dir struct {
	mu      sync.Mutex
	path    string
	opts    Options
	lock    *os.File
	cur     *os.File // nil after a failed reopen; the next Write retries
	size    int64
	partial []byte
	closed  bool
}

// Open takes the directory's lock, as svlogd does, and opens its current file
// for appending. The directory is created (0755) if missing. A non-empty
// current without the owner's exec bit was left by a writer that did not
// close cleanly: it is renamed to @<now>.u, as svlogd does, and a new current
// is started.
//
// The directory's "config" file sets the options the caller leaves zero,
// as svlogd reads it: "s<bytes>" and "n<files>" (0: never rotate, keep all
// old files); without it, svlogd's defaults apply.
func Open(dir string, opts Options) (*Dir, error) {
	if err := makeDir(dir); err != nil {
		return nil, err
	}
	lock, err := takeLock(dir)
	if err != nil {
		return nil, err
	}
	cfg, err := readConfig(dir)
	if err != nil {
		lock.Close()
		return nil, err
	}
	cfg.apply(&opts)
	if opts.MaxSize == 0 {
		opts.MaxSize = DefaultMaxSize
	}
	if opts.MaxFiles == 0 {
		opts.MaxFiles = DefaultMaxFiles
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	d := &Dir{path: dir, opts: opts, lock: lock}
	if err := d.recoverStale(); err != nil {
		lock.Close()
		return nil, err
	}
	if err := d.openCurrent(); err != nil {
		lock.Close()
		return nil, err
	}
	return d, nil
}

func makeDir(dir string) error {
	_, err := os.Stat(dir)
	if err == nil {
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("open log directory: %w", err)
	}
	if err := os.MkdirAll(dir, modeDir); err != nil {
		return fmt.Errorf("create log directory: %w", err)
	}
	// MkdirAll's mode is filtered by the umask; svlogd directories are 0755.
	if err := os.Chmod(dir, modeDir); err != nil {
		return fmt.Errorf("create log directory: %w", err)
	}
	return nil
}

// takeLock does what svlogd's logdir_open does: open_append("lock"), that is
// O_WRONLY|O_NDELAY|O_APPEND|O_CREAT with mode 0600, then lock_exnb, which
// runit builds as flock(LOCK_EX|LOCK_NB).
func takeLock(dir string) (*os.File, error) {
	name := filepath.Join(dir, "lock")
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_NONBLOCK, modeLock)
	if err != nil {
		return nil, fmt.Errorf("open log directory lock: %w", err)
	}
	if err := flock(f, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, lockedError(dir)
		}
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	return f, nil
}

func lockedError(dir string) error {
	return fmt.Errorf("%w: another svlogd or deployhook holds %s (flock on %s); point log_dir elsewhere",
		ErrLocked, dir, filepath.Join(dir, "lock"))
}

func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			return err
		}
	}
}

// Locked reports whether another process holds dir's lock. It takes the lock
// and releases it at once: a svlogd that tries its own non-blocking lock in
// that instant fails (runsv restarts it a second later). A missing directory
// or lock file is not locked; Locked creates nothing.
func Locked(dir string) (bool, error) {
	name := filepath.Join(dir, "lock")
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("probe log directory lock: %w", err)
	}
	defer f.Close()
	err = flock(f, unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("probe lock %s: %w", name, err)
	}
	return false, flock(f, unix.LOCK_UN)
}

func (d *Dir) file(name string) string { return filepath.Join(d.path, name) }

// recoverStale is svlogd's check on start: a non-empty current whose owner
// exec bit is clear becomes @<now>.u. Only S_IXUSR is tested, like svlogd.
func (d *Dir) recoverStale() error {
	st, err := os.Stat(d.file("current"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat current: %w", err)
	}
	if st.Size() == 0 || st.Mode().Perm()&0o100 != 0 {
		return nil
	}
	name, err := d.freeName(".u")
	if err != nil {
		return err
	}
	if err := os.Rename(d.file("current"), d.file(name)); err != nil {
		return fmt.Errorf("rename stale current: %w", err)
	}
	return d.prune()
}

// openCurrent opens current for appending the way svlogd does (created 0600
// by open_append, then fchmod 0644 whatever its mode was). If the file does
// not end in a newline (a writer died mid-line), one is added so that our
// first line is not glued to that fragment.
func (d *Dir) openCurrent() error {
	f, err := os.OpenFile(d.file("current"), os.O_RDWR|os.O_APPEND|os.O_CREATE|unix.O_NONBLOCK, 0o600)
	if err != nil {
		return fmt.Errorf("open current: %w", err)
	}
	if err := f.Chmod(modeCurrent); err != nil {
		f.Close()
		return fmt.Errorf("set mode of current: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("stat current: %w", err)
	}
	size := st.Size()
	if size > 0 {
		var last [1]byte
		if _, err := f.ReadAt(last[:], size-1); err != nil {
			f.Close()
			return fmt.Errorf("read end of current: %w", err)
		}
		if last[0] != '\n' {
			if _, err := f.Write([]byte{'\n'}); err != nil {
				f.Close()
				return fmt.Errorf("terminate last line of current: %w", err)
			}
			size++
		}
	}
	d.cur, d.size = f, size
	return nil
}

// freeName returns "@<tai64n>"+suffix for Now, moved on by a nanosecond
// while such a file exists (svlogd rereads the clock instead).
func (d *Dir) freeName(suffix string) (string, error) {
	t := d.opts.Now()
	for {
		name := TAI64N(t) + suffix
		_, err := os.Lstat(d.file(name))
		if errors.Is(err, fs.ErrNotExist) {
			return name, nil
		}
		if err != nil {
			return "", fmt.Errorf("stat %s: %w", name, err)
		}
		t = t.Add(time.Nanosecond)
	}
}

// Write appends p. Complete lines are written at once; a trailing fragment
// without a newline is kept until the rest of its line arrives.
func (d *Dir) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0, fmt.Errorf("write log directory %s: %w", d.path, os.ErrClosed)
	}
	end := bytes.LastIndexByte(p, '\n') + 1
	if end == 0 {
		d.partial = append(d.partial, p...)
		if len(d.partial) > maxPartial {
			// A writer that never ends its line must not grow memory
			// without bound: cut the fragment into a line of its own.
			_, err := d.writeLines(append(d.partial, '\n'))
			d.partial = d.partial[:0]
			if err != nil {
				return 0, err
			}
		}
		return len(p), nil
	}
	lines := p[:end]
	held := len(d.partial)
	if held > 0 {
		lines = append(d.partial, lines...)
		d.partial = d.partial[:0]
	}
	done, err := d.writeLines(lines)
	if done < len(lines) {
		return max(done-held, 0), err
	}
	d.partial = append(d.partial, p[end:]...)
	return len(p), err
}

// writeLines writes b, which ends in a newline, rotating between lines. A
// rotation that fails with current still open does not cost the lines: they
// go on into current, past MaxSize, the error is returned, and the next
// Write tries to rotate again.
func (d *Dir) writeLines(b []byte) (int, error) {
	var rotateErr error
	done := 0
	for done < len(b) {
		if d.cur == nil {
			if err := d.openCurrent(); err != nil {
				return done, errors.Join(rotateErr, err)
			}
		}
		rest := b[done:]
		n := len(rest)
		if rotateErr == nil {
			n = d.fit(rest)
		}
		if n == 0 {
			if d.size > 0 {
				rotateErr = d.rotate()
				continue
			}
			n = bytes.IndexByte(rest, '\n') + 1 // longer than MaxSize: alone
		}
		w, err := d.cur.Write(rest[:n])
		d.size += int64(w)
		done += w
		if err != nil {
			return done, errors.Join(rotateErr, fmt.Errorf("write %s: %w", d.file("current"), err))
		}
	}
	return done, rotateErr
}

// fit returns the length of the longest run of whole lines at the start of b
// that current can take without passing MaxSize.
func (d *Dir) fit(b []byte) int {
	if d.opts.MaxSize < 0 {
		return len(b)
	}
	room := d.opts.MaxSize - d.size
	if room >= int64(len(b)) {
		return len(b)
	}
	if room <= 0 {
		return 0
	}
	return bytes.LastIndexByte(b[:room], '\n') + 1
}

// rotate is svlogd's rotate(): fsync current, chmod 0744, rename it to
// @<tai64n>.s, start a new current 0644, drop the oldest old files. The
// directory is fsynced as well, which svlogd does not do, so that the rename
// survives a crash.
func (d *Dir) rotate() error {
	if err := d.cur.Sync(); err != nil {
		return fmt.Errorf("rotate %s: fsync current: %w", d.path, err)
	}
	if err := d.cur.Chmod(modeDone); err != nil {
		return fmt.Errorf("rotate %s: set mode of current: %w", d.path, err)
	}
	name, err := d.freeName(".s")
	if err != nil {
		d.cur.Chmod(modeCurrent)
		return fmt.Errorf("rotate %s: %w", d.path, err)
	}
	if err := rename(d.file("current"), d.file(name)); err != nil {
		d.cur.Chmod(modeCurrent)
		return fmt.Errorf("rotate %s: %w", d.path, err)
	}
	old := d.cur
	d.cur, d.size = nil, 0
	if err := old.Close(); err != nil {
		return fmt.Errorf("rotate %s: close %s: %w", d.path, name, err)
	}
	if err := d.openCurrent(); err != nil {
		return fmt.Errorf("rotate %s: %w", d.path, err)
	}
	if err := syncDir(d.path); err != nil {
		return fmt.Errorf("rotate %s: %w", d.path, err)
	}
	return d.prune()
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync directory: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync directory: %w", err)
	}
	return nil
}

// prune follows the svlogd of Debian's runit 2.1.2 (rmoldest): among names
// of 27 bytes that start with "@", processor leftovers ending in "t" are
// deleted, names ending in "u" are neither counted nor deleted, and all the
// others count as old files, the lexically smallest being the oldest.
// svlogd deletes one file per rotation; we delete down to MaxFiles, so a
// directory that held more (a lowered limit) is brought back at once.
func (d *Dir) prune() error {
	entries, err := os.ReadDir(d.path)
	if err != nil {
		return fmt.Errorf("prune %s: %w", d.path, err)
	}
	var old []string
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if len(name) != 27 || name[0] != '@' {
			continue
		}
		switch name[26] {
		case 't':
			if err := os.Remove(d.file(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		case 'u':
		default:
			old = append(old, name)
		}
	}
	if d.opts.MaxFiles > 0 && len(old) > d.opts.MaxFiles {
		sort.Strings(old)
		for _, name := range old[:len(old)-d.opts.MaxFiles] {
			if err := os.Remove(d.file(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("prune %s: %w", d.path, err)
	}
	return nil
}

// Sync flushes current to disk. A held-back fragment is not written.
func (d *Dir) Sync() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || d.cur == nil {
		return nil
	}
	if err := d.cur.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", d.file("current"), err)
	}
	return nil
}

// Close writes a held-back fragment as a line of its own, fsyncs current,
// sets its exec bit (0744, as svlogd's logdir_close leaves it, which tells
// the next svlogd or Open to continue it), and releases the lock. Closing
// twice is a no-op.
func (d *Dir) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	var errs []error
	if len(d.partial) > 0 {
		_, err := d.writeLines(append(d.partial, '\n'))
		errs = append(errs, err)
		d.partial = nil
	}
	if d.cur != nil {
		if err := d.cur.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("fsync current: %w", err))
		} else if err := d.cur.Chmod(modeDone); err != nil {
			errs = append(errs, fmt.Errorf("set mode of current: %w", err))
		}
		errs = append(errs, d.cur.Close())
		d.cur = nil
	}
	errs = append(errs, d.lock.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close log directory %s: %w", d.path, err)
	}
	return nil
}
