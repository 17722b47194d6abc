package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"
)

// serverProfiles profiles the single Consul server's CPU (its
// /debug/pprof/profile, served with enable_debug) while, in turn, the
// ceiling with 8 in flight and the default `deployhook migrate` write the
// records, and writes the two profiles to prefix.ceiling.prof and
// prefix.migrate.prof: where the server's CPU goes in each, which the
// ratio of the two wall clocks does not say. The profile runs a fixed
// number of seconds, started just before the work, so the two compare in
// samples.
func (b *bencher) serverProfiles(ctx context.Context, t *topology, prefix string) error {
	secs := 6
	work := []struct {
		name string
		do   func() error
	}{
		{"ceiling", func() error {
			defer wipe(t.client, ceilPre)
			_, err := ceiling(ctx, t.client, b.n, 8, ceilRecords)
			return err
		}},
		{"migrate", func() error {
			defer b.reset(ctx, t)
			_, err := b.migrate(ctx, t, nil, int64(b.n))
			return err
		}},
	}
	for _, w := range work {
		waitQuiet("server profile, " + w.name)
		path := fmt.Sprintf("%s.%s.prof", prefix, w.name)
		var wg sync.WaitGroup
		var perr error
		wg.Go(func() { perr = fetchProfile(ctx, t.addr, secs, path) })
		// The profile starts when the server reads the request, which
		// may be a moment after the work started: the first samples of
		// either can be missed, alike.
		start := time.Now()
		err := w.do()
		took := time.Since(start)
		wg.Wait()
		if err != nil {
			return fmt.Errorf("server profile, %s: %w", w.name, err)
		}
		if perr != nil {
			return fmt.Errorf("server profile, %s: %w", w.name, perr)
		}
		if took > time.Duration(secs)*time.Second {
			logf("server profile, %s: the work took %v, longer than the %d s profile", w.name, took.Round(time.Millisecond), secs)
		}
		logf("server profile, %s (%v): go tool pprof -top %s", w.name, took.Round(time.Millisecond), path)
	}
	return nil
}

func fetchProfile(ctx context.Context, addr string, secs int, path string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: %s", resp.Status, body)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
