package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/apcera/deployhook/migrate"
	"github.com/apcera/deployhook/migrate/memkv"
)

// The timeline of a real online migration (on the in-memory stores) has
// every event its split needs, in order, and its stretches add up to the
// whole run.
func TestTimelineSplitsAnOnlineMigration(t *testing.T) {
	var recs []migrate.Record
	for i := range 3000 {
		recs = append(recs, record(i, []byte("value")))
	}
	kv := memkv.New()
	m := &migrate.Migrator{Source: memkv.NewSource(recs), KV: kv, Locker: kv, Opts: migrate.Options{
		Component: component, Prefix: prefix, Hostname: "bench-test", ToolVersion: "test", InFlight: 4,
	}}
	tl := newTimeline(prefix)
	tl.wrap(m)
	tl.begin()
	res, err := m.Run(context.Background())
	tl.finish()
	if err != nil {
		t.Fatal(err)
	}
	if res.Migrated != int64(len(recs)) {
		t.Fatalf("migrated %d records, want %d", res.Migrated, len(recs))
	}

	d, err := tl.split()
	if err != nil {
		t.Fatal(err)
	}
	if len(d) != len(segments) {
		t.Fatalf("%d stretches, want %d", len(d), len(segments))
	}
	var sum time.Duration
	for i, x := range d {
		if x < 0 {
			t.Errorf("stretch %q is %v: its events are out of order", segments[i], x)
		}
		sum += x
	}
	if sum != tl.end {
		t.Errorf("the stretches add up to %v, the run took %v", sum, tl.end)
	}

	var out strings.Builder
	tl.print(&out)
	for _, want := range []string{
		"lock " + migrate.LockKey(prefix),
		"log store2 frozen for writes",
		"done 2 ops, the last set " + migrate.DoneKey(prefix),
		"transactions of sets outside migration/ (the copy's, the catch-up's): ",
		"listings of " + prefix + "jobs/: ",
		"unlock",
		"returned",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the printed timeline lacks %q:\n%s", want, out.String())
		}
	}
}

// A timeline without a freeze (an offline migration, or one that failed)
// says what it lacks instead of splitting.
func TestTimelineWithoutAFreezeSaysSo(t *testing.T) {
	tl := newTimeline(prefix)
	tl.begin()
	tl.add(time.Now(), "stored", "1 of 1 records")
	tl.finish()
	if _, err := tl.split(); err == nil || !strings.Contains(err.Error(), "freeze") {
		t.Fatalf("split = %v, want an error naming the freeze", err)
	}
}

func TestTxnKind(t *testing.T) {
	set := func(k string) migrate.Op { return migrate.Op{Verb: migrate.VerbSet, Key: k} }
	for _, c := range []struct {
		ops  []migrate.Op
		want string
	}{
		{[]migrate.Op{set(prefix + "jobs/a"), set(prefix + "routes/b")}, "copy"},
		{[]migrate.Op{set(prefix + "jobs/a"), {Verb: migrate.VerbDelete, Key: prefix + "jobs/b"}}, "txn"},
		{[]migrate.Op{set(migrate.StatusKey(prefix))}, "txn"},
		{[]migrate.Op{{Verb: migrate.VerbCheckNotExists, Key: migrate.DoneKey(prefix)}, set(migrate.DoneKey(prefix))}, "done"},
		{[]migrate.Op{{Verb: migrate.VerbCheckNotExists, Key: migrate.DoneKey(prefix)}}, "txn"},
	} {
		if got := txnKind(prefix, c.ops); got != c.want {
			t.Errorf("txnKind(%s) = %q, want %q", fmt.Sprint(c.ops), got, c.want)
		}
	}
}
