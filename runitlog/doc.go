// Package runitlog writes the log directory of deployhook's background
// worker so that it is interchangeable with one kept by runit's svlogd, and
// formats log lines in the platform's format (see Formatter).
//
// # What svlogd does, and how it was checked
//
// Everything below was observed on the svlogd of Debian's runit 2.1.2-54,
// the one CI installs, by running it on scratch directories (`echo x | svlogd
// -v DIR`, a `config` with small "s" and "n", pre-made files, `stat -c %a`,
// /proc/locks while it ran, kill -9), and read against runit 2.1.2's
// svlogd.c (logdir_open, rotate, rmoldest, logdir_close). Dir does the same
// unless noted.
//
//   - The lock: "lock" in the directory, opened O_WRONLY|O_NDELAY|O_APPEND|
//     O_CREAT with mode 0600 (runit's open_append), then flock(LOCK_EX|
//     LOCK_NB) (runit's lock_exnb): /proc/locks shows "FLOCK ADVISORY WRITE"
//     on its inode. A second svlogd on a held directory gives up at once
//     ("unable to lock directory: temporary failure", exit 111); Open
//     returns ErrLocked.
//   - svlogd does not create a missing directory ("unable to open log
//     directory"); Open creates it 0755.
//   - current is created 0600 by open_append and then fchmod-ed 0644, also
//     when svlogd continues an existing one; it stays 0644 while written.
//     On a clean exit (end of input, SIGTERM) svlogd fsyncs it and sets
//     0744: the owner exec bit marks "closed cleanly".
//   - On start, a current that is non-empty and lacks S_IXUSR (only that
//     bit: 0700 counts as clean, 0654 as stale) is renamed, mode untouched,
//     to "@<now>.u"; an empty one, or one with the bit, is appended to. A
//     svlogd killed with SIGKILL leaves current 0644, so the next start
//     keeps its content in a .u file. svlogd appends to a clean current even
//     if its last line is unterminated; Open first adds the missing newline,
//     so that a fragment and our first line do not become one line.
//   - Rotation: fsync current, fchmod 0744, close, rename to
//     "@<tai64n>.s", open a new current 0644, then rmoldest. The name is "@",
//     24 lower-case hex digits (TAI64 label 2^62+10+Unix seconds, then the
//     nanoseconds; svlogd's clock has microseconds, so its names end in
//     ...500 ns) and ".s", 27 bytes. Dir fsyncs the directory after the
//     rename as well, which svlogd does not.
//   - svlogd rotates at exactly s bytes, cutting a line in two, or, after a
//     newline, once current has s minus the line limit (-l, 1000) bytes.
//     Dir never cuts a line: a line that would take current past MaxSize
//     starts the next file, and a longer line than MaxSize fills one alone.
//   - rmoldest, as the Debian binary behaves (it differs from the upstream
//     2.1.2 source, which counts ".u" too): among names of 27 bytes that
//     start with "@", a processor's leftover ending in "t" is deleted, one
//     ending in "u" is neither counted nor deleted, and every other one is
//     an old file; when more than n (default 10, "n0" unlimited) remain,
//     the lexically smallest is deleted: one per rotation. Dir deletes down
//     to MaxFiles at once, so a lowered limit applies at the next rotation.
//     svlogd runs rmoldest after its stale-current rename too; so does Open.
//   - svlogd reads its "config" from the directory when it opens it; so
//     does Open, for the two settings that apply to a writer without
//     patterns or a processor: "s" (rotation size; s0 never rotates) and
//     "n" (old files kept; n0 keeps all), each a run of digits right after
//     the letter (runit's scan_ulong: "s 10" is s0). Other lines are
//     ignored. Options set by the caller win over the config. Both default
//     to s1000000 and n10, so a takeover keeps the limits either way.
//
// The tests run the real svlogd: it continues a directory we wrote (no .u,
// current appended to) and we continue one it closed; Open is refused while
// a svlogd runs; a killed svlogd's current becomes our .u; our rotated names
// and svlogd's parse with ParseTAI64N to the wall clock and sort in time
// order; grep over DIR/* finds a line after rotations by both.
//
// Locked takes the lock and drops it at once. A svlogd starting at that
// instant fails its non-blocking lock and exits (runsv starts it again a
// second later): the probe is for a pre-flight check, not for polling.
package runitlog
