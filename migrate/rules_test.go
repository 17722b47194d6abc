package migrate

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCheckPrefix(t *testing.T) {
	for _, tc := range []struct{ prefix, why string }{
		{"apcera/store3/jmdb/", ""},
		{"a/b/", ""},
		{"a-1/b_2.x/", ""},
		{"", "is empty"},
		{"/", `is "/"`},
		{"/apcera/store3/", `starts with "/"`},
		{"apcera/store3/jmdb", `does not end in "/"`},
		{"apcera/st ore/", "holds characters outside A-Z a-z 0-9 _ . - /"},
		{"apcera/störe/", "holds characters outside A-Z a-z 0-9 _ . - /"},
		{"apcera/a=b/", "holds characters outside A-Z a-z 0-9 _ . - /"},
		{"apcera//x/", `has an empty, "." or ".." segment`},
		{"apcera/../x/", `has an empty, "." or ".." segment`},
		{"apcera/./", `has an empty, "." or ".." segment`},
		{"apcera/", "has fewer than two segments"},
	} {
		err := CheckPrefix(tc.prefix)
		var pe *PrefixError
		switch {
		case tc.why == "" && err != nil:
			t.Errorf("CheckPrefix(%q) = %v, want nil", tc.prefix, err)
		case tc.why == "":
		case !errors.As(err, &pe) || !errors.Is(err, ErrDangerousPrefix):
			t.Errorf("CheckPrefix(%q) = %v, want a *PrefixError wrapping ErrDangerousPrefix", tc.prefix, err)
		case pe.Reason != tc.why || pe.Prefix != tc.prefix:
			t.Errorf("CheckPrefix(%q) reason %q, want %q", tc.prefix, pe.Reason, tc.why)
		}
	}
}

func TestCheckSettings(t *testing.T) {
	for _, tc := range []struct {
		kind     string
		migrate  bool
		want     error
		migrates bool
	}{
		{"store3", true, nil, true},
		{"store3", false, nil, false},
		{"store2", false, nil, false},
		{"store2", true, ErrStore2WithMigrate, false},
		{"", false, ErrKindMissing, false},
		{"", true, ErrKindMissing, false},
		{"Store3", false, ErrKindInvalid, false},
		{"store3 ", true, ErrKindInvalid, false},
		{"consul", false, ErrKindInvalid, false},
	} {
		err := CheckSettings(tc.kind, tc.migrate)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("CheckSettings(%q, %v) = %v, want %v", tc.kind, tc.migrate, err, tc.want)
		}
		if err == nil && Migrates(tc.kind, tc.migrate) != tc.migrates {
			t.Errorf("Migrates(%q, %v) = %v", tc.kind, tc.migrate, !tc.migrates)
		}
	}
}

func TestParseTable(t *testing.T) {
	long := strings.Repeat("a", 63)
	for _, tc := range []struct {
		in    string
		want  Table
		canon string
	}{
		{"store2_records", Table{Name: "store2_records"}, "store2_records"},
		{"Store2_Records", Table{Name: "store2_records"}, "store2_records"},
		{"public.store2_records", Table{Schema: "public", Name: "store2_records"}, "public.store2_records"},
		{`"My Table"`, Table{Name: "My Table"}, `"My Table"`},
		{`"s"."t"`, Table{Schema: "s", Name: "t"}, "s.t"},
		{`"a""b".x$1`, Table{Schema: `a"b`, Name: "x$1"}, `"a""b".x$1`},
		{`"select"`, Table{Name: "select"}, `"select"`},
		{"public.select", Table{Schema: "public", Name: "select"}, `public."select"`},
		{"role", Table{Name: "role"}, "role"}, // an unreserved key word
		{"_t", Table{Name: "_t"}, "_t"},
		{"tablé", Table{Name: "tablé"}, "tablé"},
		{"ÉTÉ", Table{Name: "ÉtÉ"}, "ÉtÉ"}, // PostgreSQL folds ASCII only
		{`"a.b"`, Table{Name: "a.b"}, `"a.b"`},
		{long, Table{Name: long}, long},
	} {
		got, err := ParseTable(tc.in)
		if err != nil {
			t.Errorf("ParseTable(%q): %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseTable(%q) (-want +got):\n%s", tc.in, diff)
		}
		if got.String() != tc.canon {
			t.Errorf("ParseTable(%q).String() = %q, want %q", tc.in, got.String(), tc.canon)
		}
		if back, err := ParseTable(got.String()); err != nil || back != got {
			t.Errorf("ParseTable(%q) = %+v, %v: the canonical form does not read back", got.String(), back, err)
		}
	}
	for _, tc := range []struct{ in, why string }{
		{"", "empty name"},
		{"a.b.c", "has 3 parts"},
		{"a.", "empty name"},
		{".a", "empty part"},
		{"a..b", "empty part"},
		{`""`, "empty quoted name"},
		{`"abc`, "never closed"},
		{`"a"b`, `unexpected "b"`},
		{"2019_records", "starts with a digit"},
		{"my table", `unexpected " "`},
		{" store2_records", "white space"},
		{"store2-records", `unexpected "-"`},
		{"select", "reserved word"},
		{"USER.t", "reserved word"},
		{"a;drop table x", `unexpected ";"`},
		{long + "a", "longer than 63 bytes"},
		{`"` + long + `a"`, "longer than 63 bytes"},
		{"\xff", "UTF-8"},
		{"\"a\x00\"", "NUL"},
	} {
		_, err := ParseTable(tc.in)
		if !errors.Is(err, ErrTableInvalid) || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("ParseTable(%q) = %v, want ErrTableInvalid saying %q", tc.in, err, tc.why)
		}
	}
}

func TestCheckRecord(t *testing.T) {
	const prefix = "apcera/store3/jmdb/"
	b := SizingBatcher(DefaultLimits, prefix)
	fits := MaxRecordData(DefaultLimits, prefix+"jobs/web")
	for _, tc := range []struct {
		name string
		rec  Record
		key  string
		why  string
	}{
		{"plain", Record{Bucket: "jobs", Key: "job::/a", Version: 3, Data: []byte("x")}, prefix + "jobs/job=3A=3A=2Fa", ""},
		{"empty data", Record{Bucket: "jobs", Key: "web"}, prefix + "jobs/web", ""},
		{"at the size limit", Record{Bucket: "jobs", Key: "web", Version: 1, Data: make([]byte, fits)}, prefix + "jobs/web", ""},
		{"reserved bucket", Record{Bucket: "migration", Key: ".done"}, "", `bucket "migration" is reserved`},
		{"empty key", Record{Bucket: "jobs"}, "", "empty key segment"},
		{"empty bucket", Record{Key: "web"}, "", "empty key segment"},
		{"too large", Record{Bucket: "jobs", Key: "web", Data: make([]byte, DefaultLimits.MaxValue+1)}, "", "kv_max_value_size"},
		{"too large for a txn", Record{Bucket: "jobs", Key: "web", Data: make([]byte, DefaultLimits.MaxValue-100)}, "", "txn_max_req_len"},
	} {
		key, why := CheckRecord(prefix, &tc.rec, b)
		if key != tc.key || (tc.why == "") != (why == "") || !strings.Contains(why, tc.why) {
			t.Errorf("%s: CheckRecord = %q, %q; want %q, %q", tc.name, key, why, tc.key, tc.why)
		}
	}
}

func TestStateCurrent(t *testing.T) {
	running := &Status{State: StateRunning, Session: "s1"}
	failed := &Status{State: StateFailed}
	for _, tc := range []struct {
		name string
		st   State
		want string
	}{
		{"nothing", State{}, StateNotMigrated},
		{"lock held before .status", State{LockSession: "s1"}, StateNotMigrated},
		{"running, holder alive", State{Status: running, LockSession: "s1"}, StateRunning},
		{"running, another holder", State{Status: running, LockSession: "s2"}, StateRunning},
		{"running, no holder", State{Status: running}, StateFailed},
		{"failed", State{Status: failed}, StateFailed},
		{"failed, new attempt holds the lock", State{Status: failed, LockSession: "s2"}, StateFailed},
		{"done", State{Done: &Done{}, Status: running}, StateDone},
		{".done removed", State{Status: &Status{State: StateDone}}, StateNotMigrated},
		{"unknown state", State{Status: &Status{State: "paused"}, LockSession: "s1"}, StateNotMigrated},
	} {
		if got := tc.st.Current(); got != tc.want {
			t.Errorf("%s: Current() = %q, want %q", tc.name, got, tc.want)
		}
	}
}
