package migrate

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestStatusJSON(t *testing.T) {
	started := time.Date(2026, 11, 25, 21, 0, 0, 123456789, time.FixedZone("x", 3600))
	s := Status{State: StateRunning, Phase: PhaseCatchingUp, Round: 2, Delta: 37, Component: "job_manager", Host: "central-2", PID: 4242, Session: "sid",
		Started: Time{started}, Updated: Time{started}, RecordsDone: 1200, RecordsTotal: 5000}
	got := string(encodeJSON(s))
	want := `{"state":"running","phase":"catching-up","round":2,"delta":37,"component":"job_manager","host":"central-2","pid":4242,"session":"sid",` +
		`"started":"2026-11-25T20:00:00.123456789Z","updated":"2026-11-25T20:00:00.123456789Z","finished":"",` +
		`"records_done":1200,"records_total":5000,"error":"","failed_records":[]}`
	if got != want {
		t.Fatalf("status JSON\n got %s\nwant %s", got, want)
	}
	var back Status
	if err := json.Unmarshal([]byte(got), &back); err != nil {
		t.Fatal(err)
	}
	s.FailedRecords = []FailedRecord{}
	if diff := cmp.Diff(s, back, cmp.Comparer(func(a, b Time) bool { return a.Equal(b.Time) })); diff != "" {
		t.Fatalf("round trip (-want +got):\n%s", diff)
	}
	for i := range 150 {
		s.FailedRecords = append(s.FailedRecords, FailedRecord{Bucket: "b", Key: fmt.Sprint(i), Reason: "r"})
	}
	if err := json.Unmarshal(encodeJSON(s), &back); err != nil || len(back.FailedRecords) != MaxFailedRecords {
		t.Fatalf("failed_records capped to %d, %v", len(back.FailedRecords), err)
	}
}

func TestDoneJSON(t *testing.T) {
	ts := time.Date(2026, 11, 25, 21, 0, 0, 0, time.UTC)
	d := Done{Component: "job_manager", Host: "central-2", PID: 4242, Started: Time{ts}, Finished: Time{ts.Add(time.Second)},
		Took: "1s", RecordsMigrated: 281, Digest: "sha256:00", ToolVersion: "0.1.0", FrozenFor: "350ms"}
	want := `{"component":"job_manager","host":"central-2","pid":4242,"started":"2026-11-25T21:00:00Z",` +
		`"finished":"2026-11-25T21:00:01Z","took":"1s","records_migrated":281,"records_failed":0,` +
		`"digest":"sha256:00","tool_version":"0.1.0","frozen_for":"350ms"}`
	if got := string(encodeJSON(d)); got != want {
		t.Fatalf("done JSON\n got %s\nwant %s", got, want)
	}
}
