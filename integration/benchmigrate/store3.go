package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/apcera/deployhook/integration/harness"
	"github.com/apcera/deployhook/migrate"
)

// topology is store3 as one measurement sees it: a single server or a
// three-server cluster, the address the ceiling and deployhook both talk
// to, and what was measured on it.
type topology struct {
	servers   int
	cluster   *harness.ConsulCluster
	addr      string // HTTP API of the server the ceiling and deployhook use
	leader    bool   // whether addr is the raft leader's
	client    *api.Client
	conf      string // the component conf pointing at addr
	confDir   string
	pg        *harness.Postgres
	freelist  float64
	reelected int // measurements repeated after a leader change
	runs      []runSample
}

func (t *topology) name() string {
	if t.servers == 1 {
		return "1 server"
	}
	return fmt.Sprintf("%d servers", t.servers)
}

func (t *topology) describe() string {
	if t.servers == 1 {
		return t.addr
	}
	role := "a follower, which forwards every write to the leader"
	if t.leader {
		role = "the leader"
	}
	return fmt.Sprintf("%s, measured through %s (%s)", strings.Join(t.cluster.Addrs(), " "), t.addr, role)
}

// start starts the servers in dir. The cluster is measured through its
// leader: every commit then costs the quorum round trip and nothing else.
func (t *topology) start(dir string, logw io.Writer) error {
	opts := []harness.ConsulOption{harness.WithLogLevel("warn")}
	if *flagServerProf != "" {
		opts = append(opts, harness.WithHCL("enable_debug = true"))
	}
	cl, err := harness.StartConsulClusterDir(dir, t.servers, logw, opts...)
	t.cluster = cl
	if err != nil {
		return err
	}
	s := cl.Servers[0]
	if t.servers > 1 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if s, err = cl.WaitLeader(ctx); err != nil {
			return err
		}
		t.leader = true
	}
	t.addr, t.client = s.Addr(), s.Client()
	return nil
}

// measure runs f, and once more (after clean) through the new leader when
// the cluster changed leaders under it (a loaded machine can delay
// heartbeats past the election timeout): a measurement across an election
// is not one.
func (t *topology) measure(what string, clean, f func() error) error {
	waitQuiet(what)
	err := f()
	if err == nil || t.servers == 1 {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, lerr := t.cluster.WaitLeader(ctx)
	if lerr != nil {
		return errors.Join(err, lerr)
	}
	logf("%s: %s failed (%v): measuring it again through the leader, %s", t.name(), what, err, l.Addr())
	t.addr, t.client = l.Addr(), l.Client()
	if werr := t.writeConf(); werr != nil {
		return errors.Join(err, werr)
	}
	t.reelected++
	if err := clean(); err != nil {
		return err
	}
	return f()
}

func (t *topology) stop() {
	if t.cluster != nil {
		t.cluster.Stop()
	}
}

// ceilingData is what a ceiling writes.
type ceilingData int

const (
	// ceilRecords: the benchmark's records (record i with values[i%26]), in
	// the order they were seeded (the table's), under a prefix as long as
	// the migration's, each key escaped as the migration escapes it, the
	// version as flags: the migration's own work, done the obvious way.
	ceilRecords ceilingData = iota
	// ceilSequential: the first round's ceiling, kept as a reference:
	// short keys in ascending order, one value, the index as flags. Consul
	// writes it faster than the records (shorter keys, inserted in order).
	ceilSequential
)

// ceilRecordsPre is where ceilRecords writes: as long as prefix.
const ceilRecordsPre = ceilPre + "jmdb/"

// ceiling writes n records in fenced transactions of 128 ops (a
// check-session op and 127 sets) from inflight goroutines, and returns
// records/s.
func ceiling(ctx context.Context, cl *api.Client, n, inflight int, data ceilingData) (float64, error) {
	lockKey := ceilPre + "migration/.lock"
	sid, _, err := cl.Session().Create(&api.SessionEntry{TTL: "30s", LockDelay: time.Second, Behavior: api.SessionBehaviorRelease}, nil)
	if err != nil {
		return 0, fmt.Errorf("create session: %w", err)
	}
	defer cl.Session().Destroy(sid, nil)
	renew := make(chan struct{})
	defer close(renew)
	go cl.Session().RenewPeriodic("30s", sid, nil, renew)
	ok, _, err := cl.KV().Acquire(&api.KVPair{Key: lockKey, Session: sid}, nil)
	if err != nil || !ok {
		return 0, fmt.Errorf("acquire %q: %v (acquired %t)", lockKey, err, ok)
	}
	// Released before the session is destroyed: a destroy would start the
	// lock delay on the key, and the next measurement takes it again.
	defer cl.KV().Release(&api.KVPair{Key: lockKey, Session: sid}, nil)
	// The ops are built before the clock starts, as the records ceiling's
	// keys take escaping: the ceiling measures Consul and the client library.
	const per = opsPerTxn - 1
	sets := make([]*api.TxnOp, n)
	vals, seqVal := values(), value(0, *flagValue)
	for i := range sets {
		op := &api.KVTxnOp{Verb: api.KVSet}
		switch data {
		case ceilRecords:
			r := record(i, vals[i%len(vals)])
			if op.Key, err = migrate.StoreKey(ceilRecordsPre, r.Bucket, r.Key); err != nil {
				return 0, err
			}
			op.Value, op.Flags = r.Data, uint64(r.Version)
		case ceilSequential:
			op.Key, op.Value, op.Flags = fmt.Sprintf("%sjobs/rec-%08d", ceilPre, i), seqVal, uint64(i)
		}
		sets[i] = &api.TxnOp{KV: op}
	}
	fence := &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVCheckSession, Key: lockKey, Session: sid}}
	txns := (n + per - 1) / per
	var next atomic.Int64
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var firstErr error
	start := time.Now()
	for range inflight {
		wg.Go(func() {
			ops := make(api.TxnOps, 0, opsPerTxn)
			for {
				t := int(next.Add(1) - 1)
				if t >= txns {
					return
				}
				ops = append(append(ops[:0], fence), sets[t*per:min((t+1)*per, n)]...)
				okTxn, resp, _, err := cl.Txn().Txn(ops, (&api.QueryOptions{}).WithContext(ctx))
				if err == nil && !okTxn {
					err = fmt.Errorf("transaction %d rolled back: %+v", t, resp.Errors)
				}
				if err != nil {
					errMu.Lock()
					firstErr = errors.Join(firstErr, err)
					errMu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	if firstErr != nil {
		return 0, firstErr
	}
	return float64(n) / took.Seconds(), nil
}

// wipe deletes everything under p.
func wipe(cl *api.Client, p string) error {
	if _, err := cl.KV().DeleteTree(p, nil); err != nil {
		return fmt.Errorf("delete %q: %w", p, err)
	}
	return nil
}

// kvImport imports k records with `consul kv import` (one PUT per key) and
// returns records/s.
func kvImport(consulBin, addr string, k int) (float64, error) {
	type entry struct {
		Key   string `json:"key"`
		Flags uint64 `json:"flags"`
		Value string `json:"value"`
	}
	entries := make([]entry, k)
	for i := range entries {
		r := record(i, value(i%26, *flagValue))
		entries[i] = entry{Key: fmt.Sprintf("%s%s/rec-%08d", importPre, r.Bucket, i), Flags: uint64(r.Version), Value: base64.StdEncoding.EncodeToString(r.Data)}
	}
	in, err := json.Marshal(entries)
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(consulBin, "kv", "import", "-http-addr="+addr, "-")
	cmd.Stdin = bytes.NewReader(in)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("consul kv import: %w\n%s", err, harness.Tail(out.String(), 20))
	}
	return float64(k) / time.Since(start).Seconds(), nil
}

// freelistBytes reads the consul.raft.boltdb.freelistBytes gauge, -1 when
// absent.
func freelistBytes(cl *api.Client) float64 {
	m, err := cl.Agent().Metrics()
	if err != nil {
		return -1
	}
	for _, g := range m.Gauges {
		if strings.HasSuffix(g.Name, "raft.boltdb.freelistBytes") {
			return float64(g.Value)
		}
	}
	return -1
}
