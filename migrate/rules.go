package migrate

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// This file is the store contract: the rules about settings, prefixes,
// table names, records and states that validate, the command layer and the
// drivers call instead of writing their own copies. Each rule returns its
// verdict and a reason; callers turn the reason into a diagnostic, an exit
// code or a record failure.

// Sentinels of the settings and name rules; each error of this file wraps
// one of them (or ErrDangerousPrefix).
var (
	ErrKindMissing       = errors.New("db.kind is not set")
	ErrKindInvalid       = errors.New("not a store kind")
	ErrStore2WithMigrate = errors.New("kind store2 with migrate_store2_to_store3 true")
	ErrTableInvalid      = errors.New("invalid store2 table name")
)

// The store kinds of DESIGN.md: PostgreSQL and Consul KV.
const (
	KindStore2 = "store2"
	KindStore3 = "store3"
)

// Kinds lists the store kinds, for messages and suggestions.
var Kinds = []string{KindStore2, KindStore3}

// DefaultTable is the store2 record table when the conf names none.
const DefaultTable = "store2_records"

// ReservedBucket is the store2 bucket name the migration keeps for its own
// keys (<prefix>migration/.lock, .status, .done): a record in it is a record
// failure.
const ReservedBucket = "migration"

// CheckKind returns nil when kind is a store kind (exactly, case matters),
// else an error wrapping ErrKindMissing or ErrKindInvalid.
func CheckKind(kind string) error {
	switch {
	case kind == "":
		return ErrKindMissing
	case !slices.Contains(Kinds, kind):
		return fmt.Errorf("%w: %q: use %s or %s", ErrKindInvalid, kind, KindStore2, KindStore3)
	}
	return nil
}

// CheckSettings applies the settings rule of DESIGN.md: the kind is a store
// kind, and kind store2 with the migrate flag on is invalid (components
// refuse to start). The error wraps ErrKindMissing, ErrKindInvalid or
// ErrStore2WithMigrate.
func CheckSettings(kind string, migrate bool) error {
	if err := CheckKind(kind); err != nil {
		return err
	}
	if kind == KindStore2 && migrate {
		return fmt.Errorf("%w: to migrate, set kind to %s; to stay on %s, set migrate_store2_to_store3 to false",
			ErrStore2WithMigrate, KindStore3, KindStore2)
	}
	return nil
}

// Migrates reports whether valid settings ask for the migration: kind
// store3 with the migrate flag on.
func Migrates(kind string, migrate bool) bool { return kind == KindStore3 && migrate }

// PrefixError is a store3 prefix CheckPrefix refuses; it wraps
// ErrDangerousPrefix. Reason completes a sentence about the prefix
// (`does not end in "/"`).
type PrefixError struct {
	Prefix string
	Reason string
}

func (e *PrefixError) Error() string {
	return fmt.Sprintf("%v %q: it %s", ErrDangerousPrefix, e.Prefix, e.Reason)
}

func (e *PrefixError) Unwrap() error { return ErrDangerousPrefix }

// CheckPrefix refuses a prefix that could wipe foreign data or is not a
// valid Consul key under the strictest rules: empty, "/", starting with "/",
// not ending in "/", with a byte outside A-Z a-z 0-9 _ . - /, with an empty,
// "." or ".." segment, or with fewer than two segments. The error is a
// *PrefixError.
func CheckPrefix(prefix string) error {
	why := ""
	switch {
	case prefix == "":
		why = "is empty"
	case prefix == "/":
		why = `is "/"`
	case strings.HasPrefix(prefix, "/"):
		why = `starts with "/"`
	case !strings.HasSuffix(prefix, "/"):
		why = `does not end in "/"`
	case strings.ContainsFunc(prefix, func(r rune) bool { return r >= utf8.RuneSelf || r != '/' && !safe[r] }):
		why = "holds characters outside A-Z a-z 0-9 _ . - /"
	}
	if why == "" {
		segs := strings.Split(strings.TrimSuffix(prefix, "/"), "/")
		if slices.ContainsFunc(segs, func(s string) bool { return s == "" || s == "." || s == ".." }) {
			why = `has an empty, "." or ".." segment`
		} else if len(segs) < 2 {
			why = "has fewer than two segments"
		}
	}
	if why != "" {
		return &PrefixError{Prefix: prefix, Reason: why}
	}
	return nil
}

// CheckRecord is the record rule of steps 6 and 7: it returns the store3
// key of rec under prefix, or the reason rec is a record failure (the
// reserved bucket, an empty bucket or key, data too large for b's
// transactions). The copy passes its own batcher; the dry run and verify
// pass SizingBatcher's.
func CheckRecord(prefix string, rec *Record, b *Batcher) (key, reason string) {
	if rec.Bucket == ReservedBucket {
		return "", fmt.Sprintf("bucket %q is reserved for the migration's own keys", ReservedBucket)
	}
	key, err := StoreKey(prefix, rec.Bucket, rec.Key)
	if err != nil {
		return "", "cannot escape: " + err.Error()
	}
	if max := b.MaxData(key, uint64(rec.Version)); len(rec.Data) > max {
		return "", sizeFailure(b.limits, len(rec.Data), max)
	}
	return key, ""
}

// SizingBatcher sizes records as a real run under prefix would: behind a
// fence on the lock key with a session id of a real session's length. It is
// for checks that hold no lock (the dry run, verify).
func SizingBatcher(l Limits, prefix string) *Batcher {
	return NewBatcher(l, Fence{LockKey: LockKey(prefix), Session: strings.Repeat("0", sessionLen)}, 0)
}

// Current says where the migration stands. StateDone when .done exists,
// whatever .status says: its presence is what means migrated. Else
// .status's failed or running, except that a running .status whose lock no
// session holds is StateFailed: the worker died before it could say so, and
// Consul's session TTL released its lock. StateNotMigrated otherwise: no
// .status, or one that says done while .done is gone (removed to migrate
// again).
func (st *State) Current() string {
	switch {
	case st.Done != nil:
		return StateDone
	case st.Status == nil:
		return StateNotMigrated
	case st.Status.State == StateRunning && st.LockSession == "":
		return StateFailed
	case st.Status.State == StateRunning, st.Status.State == StateFailed:
		return st.Status.State
	}
	return StateNotMigrated
}

// Table is a store2 table name, as PostgreSQL resolves it: unquoted parts
// folded to lower case, quoted parts kept as written.
type Table struct {
	Schema string // "" when unqualified: the search_path decides
	Name   string
}

// TableError is a table name ParseTable refuses; it wraps ErrTableInvalid.
type TableError struct {
	Table  string
	Reason string
}

func (e *TableError) Error() string {
	return fmt.Sprintf("%v %q: %s", ErrTableInvalid, e.Table, e.Reason)
}

func (e *TableError) Unwrap() error { return ErrTableInvalid }

// maxIdentLen is NAMEDATALEN-1: PostgreSQL truncates longer identifiers.
const maxIdentLen = 63

// ParseTable parses a table name the way PostgreSQL's parser reads one in
// FROM: `store2_records`, `public.store2_records`, `"My Table"`, `"s"."t"`.
// Unquoted parts are identifiers (a letter, _ or non-ASCII byte, then also
// digits and $), folded to lower case, and the first may not be a reserved
// key word; quoted parts keep their case and write " as "". It refuses what
// PostgreSQL would not accept, and also white space outside quotes, more
// than two parts, and parts longer than 63 bytes (which PostgreSQL would
// silently truncate). The error is a *TableError.
func ParseTable(s string) (Table, error) {
	bad := func(format string, args ...any) (Table, error) {
		return Table{}, &TableError{Table: s, Reason: fmt.Sprintf(format, args...)}
	}
	if !utf8.ValidString(s) {
		return bad("not valid UTF-8")
	}
	var parts []string
	rest := s
	for {
		part, n, why := scanIdent(rest, len(parts) == 0)
		if why != "" {
			return bad("%s", why)
		}
		parts = append(parts, part)
		rest = rest[n:]
		if rest == "" {
			break
		}
		if rest[0] != '.' {
			return bad("unexpected %q after %q: write schema.table, quoting a part with double quotes", rest[:1], s[:len(s)-len(rest)])
		}
		rest = rest[1:]
	}
	switch len(parts) {
	case 1:
		return Table{Name: parts[0]}, nil
	case 2:
		return Table{Schema: parts[0], Name: parts[1]}, nil
	}
	return bad("has %d parts: write table or schema.table", len(parts))
}

// scanIdent reads one identifier at the start of s: quoted, or unquoted
// and folded. It returns the identifier, the bytes read, or why s does not
// start with one.
func scanIdent(s string, first bool) (ident string, n int, why string) {
	if s == "" {
		return "", 0, "empty name: write table or schema.table"
	}
	if s[0] == '"' {
		var b strings.Builder
		for i := 1; i < len(s); i++ {
			switch {
			case s[i] == 0:
				return "", 0, "a NUL byte"
			case s[i] != '"':
				b.WriteByte(s[i])
			case i+1 < len(s) && s[i+1] == '"':
				b.WriteByte('"')
				i++
			case b.Len() == 0:
				return "", 0, `an empty quoted name ""`
			case b.Len() > maxIdentLen:
				return "", 0, fmt.Sprintf("%q is longer than %d bytes: PostgreSQL would truncate it", b.String(), maxIdentLen)
			default:
				return b.String(), i + 1, ""
			}
		}
		return "", 0, `a double quote that is never closed`
	}
	i := 0
	for i < len(s) && identByte(s[i], i == 0) {
		i++
	}
	word := s[:i]
	switch {
	case i == 0 && s[0] == '.':
		return "", 0, "an empty part before or after a dot"
	case i == 0 && (s[0] == ' ' || s[0] == '\t' || s[0] == '\n' || s[0] == '\r'):
		return "", 0, "white space outside double quotes"
	case i == 0 && '0' <= s[0] && s[0] <= '9':
		return "", 0, `starts with a digit: quote it, as in "2019_records"`
	case i == 0:
		return "", 0, fmt.Sprintf("%q cannot start an unquoted name: quote it with double quotes", s[:1])
	case len(word) > maxIdentLen:
		return "", 0, fmt.Sprintf("%q is longer than %d bytes: PostgreSQL would truncate it", word, maxIdentLen)
	}
	folded := strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, word)
	if first && reservedWord(folded) {
		return "", 0, fmt.Sprintf("%q is a reserved word in PostgreSQL: quote it, as in \"%s\"", word, folded)
	}
	return folded, i, ""
}

// identByte reports whether c may stand in an unquoted identifier (at its
// start when start): PostgreSQL's ident_start and ident_cont.
func identByte(c byte, start bool) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', c == '_', c >= 0x80:
		return true
	case '0' <= c && c <= '9', c == '$':
		return !start
	}
	return false
}

// reservedWords are PostgreSQL 15's key words that cannot name a table
// unquoted (pg_get_keywords() catcode R and T); other key words can.
var reservedWords = strings.Fields(`all analyse analyze and any array as asc asymmetric both case cast check
	collate column constraint create current_catalog current_date current_role current_time
	current_timestamp current_user default deferrable desc distinct do else end except false fetch for
	foreign from grant group having in initially intersect into lateral leading limit localtime
	localtimestamp not null offset on only or order placing primary references returning select
	session_user some symmetric table then to trailing true union unique user using variadic when where
	window with
	authorization binary collation concurrently cross current_schema freeze full ilike inner is isnull
	join left like natural notnull outer overlaps right similar tablesample verbose`)

func reservedWord(w string) bool { return slices.Contains(reservedWords, w) }

// Parts are the identifiers of the table, schema first when there is one:
// what a driver quotes (pgx.Identifier).
func (t Table) Parts() []string {
	if t.Schema == "" {
		return []string{t.Name}
	}
	return []string{t.Schema, t.Name}
}

// String is the canonical spelling: each part bare when PostgreSQL reads
// it back unchanged, else double-quoted. ParseTable(t.String()) == t.
func (t Table) String() string {
	var b strings.Builder
	for i, p := range t.Parts() {
		if i > 0 {
			b.WriteByte('.')
		}
		if plainIdent(p) {
			b.WriteString(p)
			continue
		}
		b.WriteByte('"')
		b.WriteString(strings.ReplaceAll(p, `"`, `""`))
		b.WriteByte('"')
	}
	return b.String()
}

// plainIdent reports whether p reads back as itself unquoted.
func plainIdent(p string) bool {
	for i := 0; i < len(p); i++ {
		if c := p[i]; !identByte(c, i == 0) || 'A' <= c && c <= 'Z' {
			return false
		}
	}
	return p != "" && !reservedWord(p)
}
