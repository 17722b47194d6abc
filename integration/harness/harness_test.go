//go:build integration

package harness_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/consul/api"

	"github.com/apcera/deployhook/integration/harness"
	"github.com/apcera/deployhook/migrate"
)

func TestPostgres(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pg := harness.StartPostgres(t)

	if strings.Contains(pg.URLWithoutPassword("jmdb"), pg.Password()) {
		t.Fatalf("URLWithoutPassword has the password: %s", pg.URLWithoutPassword("jmdb"))
	}
	if err := pg.CreateComponentDB(ctx, "jmdb", "store2_records"); err != nil {
		t.Fatal(err)
	}
	want := []migrate.Record{
		{Bucket: "jobs", Key: "job::/sandbox/admin::web", Version: 3, Data: []byte{0, 1, 2}},
		{Bucket: "routes", Key: "é", Version: 1, Data: nil},
	}
	if err := pg.Seed(ctx, "jmdb", "store2_records", want); err != nil {
		t.Fatal(err)
	}

	// A password login works, and a wrong password is refused.
	c, err := pg.Connect(ctx, "jmdb")
	if err != nil {
		t.Fatal(err)
	}
	var got []migrate.Record
	rows, _ := c.Query(ctx, `SELECT bucket, key, version, data FROM store2_records ORDER BY bucket, key`)
	for rows.Next() {
		var r migrate.Record
		if err := rows.Scan(&r.Bucket, &r.Key, &r.Version, &r.Data); err != nil {
			t.Fatal(err)
		}
		if len(r.Data) == 0 {
			r.Data = nil
		}
		got = append(got, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("records (-want +got):\n%s", d)
	}
	bad := strings.Replace(pg.URL("jmdb"), pg.Password(), "wrong", 1)
	if c2, err := pgxConnect(ctx, bad); err == nil {
		c2.Close(ctx)
		t.Error("a wrong password was accepted")
	}

	// A child process logs in with the URL without password plus Env.
	if psql, err := exec.LookPath(pg.BinDir() + "/psql"); err == nil {
		cmd := exec.CommandContext(ctx, psql, "-tAc", "SELECT count(*) FROM store2_records", pg.URLWithoutPassword("jmdb"))
		cmd.Env = append(cmd.Environ(), pg.Env()...)
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "2" {
			t.Errorf("psql with Env: %v: %s", err, out)
		}
	}

	n, err := pg.TerminateBackends(ctx, "jmdb")
	if err != nil || n != 1 {
		t.Errorf("TerminateBackends = %d, %v; want 1 (our connection)", n, err)
	}
	if err := c.Ping(ctx); err == nil {
		t.Error("a terminated connection still answers")
	}
	if err := pg.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := pg.Exec(ctx, "jmdb", "SELECT 1"); err != nil {
		t.Errorf("after restart: %v", err)
	}
}

func TestConsul(t *testing.T) {
	t.Parallel()
	c := harness.StartConsul(t, harness.WithACL())
	kv := c.Client().KV()
	if _, err := kv.Put(&api.KVPair{Key: "apcera/store3/jmdb/x", Value: []byte("1")}, nil); err != nil {
		t.Fatal(err)
	}
	tok, err := c.CreateToken(`key_prefix "apcera/store3/jmdb/" { policy = "read" }`)
	if err != nil {
		t.Fatal(err)
	}
	cfg := api.DefaultConfig()
	cfg.Address, cfg.Token = c.Addr(), tok
	ro, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p, _, err := ro.KV().Get("apcera/store3/jmdb/x", nil); err != nil || p == nil {
		t.Errorf("read with a read-only token: %v, %v", p, err)
	}
	if _, err := ro.KV().Put(&api.KVPair{Key: "apcera/store3/jmdb/y"}, nil); err == nil || !strings.Contains(err.Error(), "Permission denied") {
		t.Errorf("write with a read-only token: %v, want permission denied", err)
	}
	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(); err != nil {
		t.Fatal(err)
	}
	if p, _, err := kv.Get("apcera/store3/jmdb/x", nil); err != nil || p == nil {
		t.Errorf("after restart (raft on disk): %v, %v", p, err)
	}
	if err := c.Stop(); err != nil {
		t.Error(err)
	}
}

func TestConsulCluster(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("three servers")
	}
	cl := harness.StartConsulCluster(t, 3)
	old, err := cl.KillLeader()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := cl.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l == old {
		t.Fatalf("leader is still the killed %s", old.Name)
	}
	if _, err := l.Client().KV().Put(&api.KVPair{Key: "k", Value: []byte("v")}, nil); err != nil {
		t.Errorf("write after failover: %v", err)
	}
}

// Two servers started apart never merge: each cluster gossips under its
// own key, so a join of one to the other's serf port fails. Without it the
// join succeeds, and a cluster of parallel tests whose server joined
// another's port (taken between picking and binding) never elected a leader.
func TestConsulServersDoNotMerge(t *testing.T) {
	t.Parallel()
	a, b := harness.StartConsul(t), harness.StartConsul(t)
	self, err := a.Client().Agent().Self()
	if err != nil {
		t.Fatal(err)
	}
	port, ok := self["Member"]["Port"].(float64)
	if !ok {
		t.Fatalf("no serf port in %v", self["Member"])
	}
	if err := b.Client().Agent().Join(fmt.Sprintf("127.0.0.1:%d", int(port)), false); err == nil {
		t.Errorf("a server of another cluster joined %s's serf pool", a.Name)
	}
	if members, err := a.Client().Agent().Members(false); err != nil || len(members) != 1 {
		t.Errorf("%s's members: %d, %v; want itself alone", a.Name, len(members), err)
	}
}
