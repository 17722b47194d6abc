//go:build integration

package migratecli

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apcera/deployhook/integration/clitest"
	"github.com/apcera/deployhook/migrate"
)

// recordsFor makes n records of a component, with keys that need escaping
// and versions that differ, distinct per component.
func recordsFor(short string, n int) []migrate.Record {
	recs := clitest.Records(n)
	for i := range recs {
		recs[i].Data = append([]byte(short+":"), recs[i].Data...)
		recs[i].Version += int64(len(short) * 1000)
	}
	// Keys that stress the escaping: '.', '..', '=', a leading '/', bytes
	// outside ASCII, and binary data with NULs.
	recs = append(recs,
		migrate.Record{Bucket: "jobs", Key: ".", Version: 1, Data: []byte("dot")},
		migrate.Record{Bucket: "jobs", Key: "..", Version: 2, Data: []byte("dotdot")},
		migrate.Record{Bucket: "a=b", Key: "/lead/ing", Version: 1 << 40, Data: []byte{0, 1, 2, 0, 255}},
		migrate.Record{Bucket: "..", Key: "é=é", Version: 0, Data: []byte{}},
	)
	return recs
}

// Fresh migration of the three components: store3 equals store2, .done says
// who, how many and what.
func TestFreshMigration(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for i, c := range components {
		t.Run(c.name, func(t *testing.T) {
			recs := recordsFor(c.short, 300+i*50)
			conf := e.conf(c.name, c.short, recs, clitest.Conf{})
			host := "central-" + c.short
			start := time.Now().UTC()
			r := e.MustRun(0, "migrate", "-f", conf, "--hostname", host)
			mustLog(t, r, "INFO", regexp.QuoteMeta("Starting store2 -> store3 migration..."))
			mustLog(t, r, "INFO", migratedRE(len(recs), 0))
			if n := len(logLines(t, r.Stderr, "ERROR")); n != 0 {
				t.Errorf("%d error lines:\n%s", n, r)
			}
			p := e.prefix(c.short)
			e.AssertMigrated(p, recs)

			kv, _ := e.RawKV(p)
			var d doneJSON
			if !getJSON(t, kv, p+"migration/.done", &d) {
				t.Fatalf("no .done")
			}
			// tool_version is what --version prints: the build info's.
			version := strings.TrimPrefix(strings.TrimSpace(e.MustRun(0, "--version").Stdout), "deployhook version ")
			want := doneJSON{Component: c.name, Host: host, RecordsMigrated: int64(len(recs)),
				RecordsFailed: 0, Digest: clitest.Digest(recs), ToolVersion: version}
			got := d
			got.PID, got.Started, got.Finished, got.Took = 0, "", "", ""
			if got != want {
				t.Errorf(".done = %+v\nwant    %+v", got, want)
			}
			if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(d.Digest) {
				t.Errorf("digest %q not sha256:<64 hex>", d.Digest)
			}
			if d.PID <= 0 {
				t.Errorf("pid %d", d.PID)
			}
			st, err1 := time.Parse(time.RFC3339Nano, d.Started)
			fin, err2 := time.Parse(time.RFC3339Nano, d.Finished)
			if err1 != nil || err2 != nil || st.Before(start.Add(-time.Second)) || fin.Before(st) || !strings.HasSuffix(d.Finished, "Z") {
				t.Errorf("started %q finished %q (test started %v)", d.Started, d.Finished, start)
			}
			if _, err := time.ParseDuration(d.Took); err != nil {
				t.Errorf("took %q: %v", d.Took, err)
			}
			var s statusJSON
			if !getJSON(t, kv, p+"migration/.status", &s) || s.State != "done" || s.Host != host || s.RecordsDone != int64(len(recs)) {
				t.Errorf(".status = %+v", s)
			}

			// A rerun finds .done, takes no lock, writes nothing.
			_, before := e.RawKV(p)
			r = e.MustRun(0, "migrate", "-f", conf, "--hostname", "other-host")
			mustLog(t, r, "INFO", regexp.QuoteMeta(alreadyDoneMsg(p)))
			if strings.Contains(r.Stderr, "Starting store2") {
				t.Errorf("rerun started a migration:\n%s", r)
			}
			after, idx := e.RawKV(p)
			if idx != before {
				t.Errorf("X-Consul-Index under %q moved from %d to %d on a rerun", p, before, idx)
			}
			var d2 doneJSON
			getJSON(t, after, p+"migration/.done", &d2)
			if d2 != d {
				t.Errorf(".done changed on rerun: %+v -> %+v", d, d2)
			}
			e.AssertMigrated(p, recs)
		})
	}
}

// A partial earlier attempt (keys under the prefix, no .done) is wiped and
// redone; keys under migration/ and outside the prefix survive.
func TestPartialAttemptWiped(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	recs := recordsFor("jm", 200)
	conf := e.conf("job_manager", "jm", recs, clitest.Conf{})
	p := e.prefix("jm")
	bare := strings.TrimSuffix(p, "/")
	stray := []string{
		p,                        // the prefix itself as a key
		p + "jobs/",              // a key equal to a bare bucket dir
		p + "jobs",               // the bucket name without its slash
		p + "jobs/stale=20one",   // a record no longer in store2
		p + "jobs/y",             // another stale record
		p + "routes/deep/er/key", // nested below a bucket
		p + "zzz",                // a top-level key
		p + "unknown-bucket/k",
	}
	// Also a stale copy of a real record with another value.
	stray = append(stray, clitest.ExpectedKey(p, recs[0].Bucket, recs[0].Key))
	keep := map[string]string{
		p + "migration/keepme":         "operator note",
		p + "migration/sub/also":       "kept",
		bare:                           "the prefix without its slash",
		bare + "x/sibling":             "a sibling prefix",
		"t/" + e.name + "/other/key":   "another component",
		"t/" + e.name + "-elsewhere/k": "elsewhere",
	}
	for _, k := range stray {
		e.put(k, []byte("stale"), 99)
	}
	for k, v := range keep {
		e.put(k, []byte(v), 7)
	}
	r := e.MustRun(0, "migrate", "-f", conf, "--hostname", "h1")
	mustLog(t, r, "INFO", regexp.QuoteMeta("Starting store2 -> store3 migration..."))
	mustLog(t, r, "INFO", migratedRE(len(recs), 0))
	e.AssertMigrated(p, recs)
	all, _ := e.RawKV("t/" + e.name)
	for k, v := range keep {
		if got, ok := all[k]; !ok || string(got.Value) != v || got.Flags != 7 {
			t.Errorf("key %q: want %q kept, got %+v (present %t)", k, v, got, ok)
		}
	}
	for _, k := range stray[:len(stray)-1] {
		if _, ok := all[k]; ok {
			t.Errorf("stray key %q survived", k)
		}
	}
}

// Five migrate processes per component, fifteen at once: exactly one copies
// each component; the others find .done.
func TestConcurrentMigrate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	type job struct {
		comp, short, conf string
		r                 clitest.Result
	}
	var jobs []*job
	want := map[string][]migrate.Record{}
	for i, c := range components {
		recs := recordsFor(c.short, 2000+i*500)
		want[c.short] = recs
		conf := e.conf(c.name, c.short, recs, clitest.Conf{})
		for range 5 {
			jobs = append(jobs, &job{comp: c.name, short: c.short, conf: conf})
		}
	}
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Go(func() {
			j.r = e.Run("migrate", "-f", j.conf, "--hostname", fmt.Sprintf("central-%d", i%5))
		})
	}
	wg.Wait()
	for _, c := range components {
		p := e.prefix(c.short)
		starts, already, migrated := 0, 0, 0
		for _, j := range jobs {
			if j.short != c.short {
				continue
			}
			if j.r.Code != 0 {
				t.Errorf("%s: exit %d:\n%s", c.name, j.r.Code, j.r)
			}
			starts += countLog(j.r.Stderr, "Starting store2 -> store3 migration...")
			already += countLog(j.r.Stderr, alreadyDoneMsg(p))
			if hasLog(t, j.r.Stderr, "INFO", migratedRE(len(want[c.short]), 0)) {
				migrated++
			}
		}
		if starts != 1 || migrated != 1 || already != 4 {
			t.Errorf("%s: %d Starting lines, %d Migrated lines, %d already-performed lines; want 1, 1, 4", c.name, starts, migrated, already)
		}
		e.AssertMigrated(p, want[c.short])
	}
}
