//go:build integration

package migratecli

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/apcera/deployhook/integration/clitest"
	"github.com/apcera/deployhook/migrate"
)

func dryRunRE(n, failed int) string {
	return fmt.Sprintf(`Dry run store2 -> store3 \(took: %s, records checked: %d, records failed: %d\)`, durRE, n, failed)
}

// A dry run writes nothing, reports records and bytes per bucket, and
// exits 0 when a real run would succeed, 5 when a record would fail.
func TestDryRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	recs := recordsFor("jm", 500)
	conf := e.conf("job_manager", "jm", recs, clitest.Conf{})
	p := e.prefix("jm")
	e.put(p+"jobs/leftover", []byte("x"), 1) // an earlier attempt's leftover
	_, before := e.RawKV(p)

	r := e.MustRun(0, "migrate", "-f", conf, "-dry_run_store_migration")
	mustLog(t, r, "INFO", regexp.QuoteMeta("Starting store2 -> store3 dry run..."))
	mustLog(t, r, "INFO", dryRunRE(len(recs), 0))
	if strings.Contains(r.Stderr, "Starting store2 -> store3 migration") {
		t.Errorf("dry run started a migration:\n%s", r)
	}
	// Records and bytes per bucket, counted here.
	type count struct{ n, bytes int }
	per := map[string]*count{}
	for _, rec := range recs {
		if per[rec.Bucket] == nil {
			per[rec.Bucket] = &count{}
		}
		per[rec.Bucket].n++
		per[rec.Bucket].bytes += len(rec.Data)
	}
	for b, c := range per {
		re := fmt.Sprintf(`(?m)^\s+%s\s+%d\s+%d\s*$`, regexp.QuoteMeta(b), c.n, c.bytes)
		if !regexp.MustCompile(re).MatchString(r.Stdout) {
			t.Errorf("report has no line for bucket %q with %d records and %d bytes:\n%s", b, c.n, c.bytes, r.Stdout)
		}
	}
	for _, want := range []string{"done marker:  absent", "the token may write under the prefix",
		fmt.Sprintf("records:      %d checked, 0 would fail", len(recs)), "a real run would succeed"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("report lacks %q:\n%s", want, r)
		}
	}
	kv, idx := e.RawKV(p)
	if idx != before || len(kv) != 1 {
		t.Errorf("dry run wrote: index %d -> %d, keys %q", before, idx, keysOf(kv))
	}

	// Now with records a real run could not store.
	bad := []migrate.Record{
		{Bucket: "migration", Key: "sneaky", Version: 1, Data: []byte("x")},
		{Bucket: "jobs", Key: "", Version: 1, Data: []byte("empty key")},
	}
	e.SeedDB(e.db("jm"), bad)
	r = e.MustRun(5, "migrate", "-f", conf, "-dry_run_store_migration")
	mustLog(t, r, "INFO", dryRunRE(len(recs)+2, 2))
	mustLog(t, r, "ERROR", `Record failure: bucket "migration", key "sneaky": .*reserved.*`)
	mustLog(t, r, "ERROR", `Record failure: bucket "jobs", key "": .*`)
	for _, want := range []string{`failing record: bucket "migration" key "sneaky"`, `failing record: bucket "jobs" key ""`, "a real run would FAIL"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("report lacks %q:\n%s", want, r)
		}
	}
	if _, idx := e.RawKV(p); idx != before {
		t.Errorf("failing dry run wrote: index %d -> %d", before, idx)
	}
}

// statusRow is one element of `status --format json`, decoded here.
type statusRow struct {
	Component string `json:"component"`
	Prefix    string `json:"prefix"`
	State     string `json:"state"`
	Lock      struct {
		Held bool `json:"held"`
	} `json:"lock"`
	Done *doneJSON `json:"done"`
}

func (e *env) status(t *testing.T, confs ...string) (string, []statusRow) {
	t.Helper()
	args := []string{"status"}
	for _, c := range confs {
		args = append(args, "-f", c)
	}
	text := e.MustRun(0, args...).Stdout
	r := e.MustRun(0, append(args, "--format", "json")...)
	// One JSON object per component per line.
	var rows []statusRow
	dec := json.NewDecoder(strings.NewReader(r.Stdout))
	for dec.More() {
		var row statusRow
		if err := dec.Decode(&row); err != nil {
			t.Fatalf("status json: %v\n%s", err, r)
		}
		rows = append(rows, row)
	}
	return text, rows
}

// status before and after, then verify: identical, and every kind of
// difference made by hand on either side.
func TestStatusAndVerify(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var confs []string
	want := map[string][]migrate.Record{}
	for _, c := range components[:2] {
		want[c.short] = recordsFor(c.short, 120)
		confs = append(confs, e.conf(c.name, c.short, want[c.short], clitest.Conf{}))
	}
	text, rows := e.status(t, confs...)
	if len(rows) != 2 {
		t.Fatalf("status rows: %+v", rows)
	}
	for i, c := range components[:2] {
		if rows[i].Component != c.name || rows[i].State != "not migrated" || rows[i].Prefix != e.prefix(c.short) || rows[i].Done != nil || rows[i].Lock.Held {
			t.Errorf("before: row %d = %+v", i, rows[i])
		}
		if !regexp.MustCompile(`(?m)^` + c.name + `\s+not migrated\s+-\s+-\s+-`).MatchString(text) {
			t.Errorf("before: text lacks a not-migrated row for %s:\n%s", c.name, text)
		}
	}

	e.MustRun(0, "migrate", "-f", confs[0], "--hostname", "central-7")
	text, rows = e.status(t, confs...)
	if rows[0].State != "done" || rows[0].Done == nil || rows[0].Done.Host != "central-7" ||
		rows[0].Done.RecordsMigrated != int64(len(want["jm"])) || rows[1].State != "not migrated" {
		t.Errorf("after: rows = %+v", rows)
	}
	if !regexp.MustCompile(fmt.Sprintf(`(?m)^job_manager\s+done\s+central-7 \(pid \d+\)\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\s+%d\s+took `, len(want["jm"]))).MatchString(text) ||
		!regexp.MustCompile(`(?m)^package_manager\s+not migrated`).MatchString(text) {
		t.Errorf("after: text:\n%s", text)
	}

	r := e.MustRun(0, "verify", "-f", confs[0])
	if !strings.Contains(r.Stdout, "job_manager: identical") {
		t.Errorf("verify:\n%s", r)
	}
	// verify of a component not migrated: everything missing.
	r = e.MustRun(5, "verify", "-f", confs[1])
	if !strings.Contains(r.Stdout, "package_manager: DIFFERENT") || !strings.Contains(r.Stdout, "missing: bucket") {
		t.Errorf("verify of an unmigrated component:\n%s", r)
	}

	// Differences, each made through raw HTTP or SQL.
	p := e.prefix("jm")
	recs := want["jm"]
	changed, deleted, reflagged := recs[1], recs[2], recs[3]
	e.put(clitest.ExpectedKey(p, changed.Bucket, changed.Key), []byte("tampered"), uint64(changed.Version))
	e.del(clitest.ExpectedKey(p, deleted.Bucket, deleted.Key))
	e.put(clitest.ExpectedKey(p, "routes", "extra route/1"), []byte("extra"), 3)
	e.put(clitest.ExpectedKey(p, reflagged.Bucket, reflagged.Key), reflagged.Data, uint64(reflagged.Version)+100)
	// The online migration left store2 frozen behind .done: unfreezing it
	// is refused without the flag that names the risk.
	if r := e.MustRun(3, "unfreeze", "-f", confs[0]); !strings.Contains(r.Stderr, "--accept-store2-revert") {
		t.Errorf("unfreeze behind .done:\n%s", r)
	}
	if r := e.MustRun(0, "unfreeze", "-f", confs[0], "--accept-store2-revert"); !strings.Contains(r.Stderr, "store2 unfrozen: deployhook unfreeze (although the migration is done: --accept-store2-revert)") {
		t.Errorf("unfreeze --accept-store2-revert:\n%s", r)
	}
	if err := e.PG.Exec(context.Background(), e.db("jm"),
		`INSERT INTO store2_records (bucket, key, version, data) VALUES ('policies', 'new::policy x', 9, '\x00ff')`); err != nil {
		t.Fatal(err)
	}
	r = e.MustRun(5, "verify", "-f", confs[0])
	wantLines := []string{
		fmt.Sprintf(`  different: bucket %q key %q: data differs: %d bytes in store2, 8 in store3`, changed.Bucket, changed.Key, len(changed.Data)),
		fmt.Sprintf(`  missing: bucket %q key %q: version %d, %d bytes`, deleted.Bucket, deleted.Key, deleted.Version, len(deleted.Data)),
		`  extra: bucket "routes" key "extra route/1": version 3, 5 bytes`,
		fmt.Sprintf(`  different: bucket %q key %q: version %d in store2, %d in store3`, reflagged.Bucket, reflagged.Key, reflagged.Version, reflagged.Version+100),
		`  missing: bucket "policies" key "new::policy x": version 9, 2 bytes`,
		"job_manager: DIFFERENT",
	}
	got := strings.Split(strings.TrimRight(r.Stdout, "\n"), "\n")
	for _, w := range wantLines {
		found := false
		for _, g := range got {
			found = found || g == w
		}
		if !found {
			t.Errorf("verify output lacks line %q", w)
		}
	}
	// Five differences and the two summary lines, nothing else.
	if len(got) != 7 {
		sort.Strings(got)
		t.Errorf("verify printed %d lines, want 7:\n%s", len(got), r)
	}
}
