package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/apcera/deployhook/migrate"
	"github.com/apcera/deployhook/validate"
)

func init() { registered = append(registered, waitCommand) }

func waitCommand() *cli.Command {
	return &cli.Command{
		Name:      "wait",
		Usage:     "block until every named component is migrated (0), one failed (5), or the timeout (4)",
		ArgsUsage: " ",
		Description: `Polls each component's migration keys in store3, so it works from any host.
A failure recorded before wait started is final at once when this host's
worker for the component has ended; otherwise (wait on another host) it
counts when no new attempt shows up within --stale-grace.
Exit codes: 0 all done, 2 usage, 3 invalid conf, 4 timed out, 5 a migration failed.`,
		Flags: []cli.Flag{
			confFlag,
			&cli.DurationFlag{Name: "timeout", Value: 10 * time.Minute, Usage: "give up (exit 4) after `D`"},
			&cli.DurationFlag{Name: "poll", Value: time.Second, Hidden: true},
			&cli.DurationFlag{Name: "stale-grace", Value: 15 * time.Second, Hidden: true},
		},
		Action: runWait,
	}
}

func runWait(c *cli.Context) error {
	comps, err := loadComponents(c)
	if err != nil {
		return err
	}
	start := time.Now()
	deadline := start.Add(c.Duration("timeout"))
	grace := c.Duration("stale-grace")
	out := c.App.Writer
	pending := map[string]*validate.Component{}
	for _, comp := range comps {
		pending[comp.Name] = comp
	}
	tick := time.NewTicker(c.Duration("poll"))
	defer tick.Stop()
	lastSeen := map[string]string{}
	for {
		for _, comp := range comps {
			if pending[comp.Name] == nil {
				continue
			}
			row, err := readComponentState(c, comp)
			if err != nil {
				report(out, lastSeen, comp.Name, fmt.Sprintf("%s: store3 not readable yet: %v", comp.Name, err))
				continue
			}
			switch row.State {
			case migrate.StateDone:
				d := row.Done
				fmt.Fprintf(out, "%s: done: migrated by %s at %s, %d records, took %s\n", comp.Name, d.Host, stamp(d.Finished.Time), d.RecordsMigrated, d.Took)
				delete(pending, comp.Name)
			case migrate.StateFailed:
				s := row.Status
				fresh := s.Finished.After(start) || s.Updated.After(start)
				if fresh || time.Since(start) > grace || localWorkerGone(comp.LogDir) {
					writeFailure(out, comp.Name, row)
					return silent(exitFailed)
				}
				report(out, lastSeen, comp.Name, fmt.Sprintf("%s: earlier attempt failed; waiting for the new one to start", comp.Name))
			case migrate.StateRunning:
				s := row.Status
				msg := fmt.Sprintf("%s: running on %s (pid %d)", comp.Name, s.Host, s.PID)
				if s.Phase != "" {
					msg += ": " + phaseText(s)
				}
				report(out, lastSeen, comp.Name, msg)
			default:
				msg := fmt.Sprintf("%s: not migrated yet", comp.Name)
				if row.Lock.Held {
					msg = fmt.Sprintf("%s: lock held, migration starting", comp.Name)
				}
				report(out, lastSeen, comp.Name, msg)
			}
		}
		if len(pending) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			var names []*validate.Component
			for _, comp := range comps {
				if pending[comp.Name] != nil {
					names = append(names, comp)
				}
			}
			return exitf(exitLock, "timed out after %v waiting for %s; `deployhook status` shows where they are", c.Duration("timeout"), componentNames(names))
		}
		select {
		case <-c.Context.Done():
			return exitf(exitInterrupted, "interrupted while waiting")
		case <-tick.C:
		}
	}
}

// report prints msg unless it is what was last printed for the component.
func report(w io.Writer, last map[string]string, name, msg string) {
	if last[name] == msg {
		return
	}
	last[name] = msg
	fmt.Fprintln(w, msg)
}

func writeFailure(w io.Writer, name string, row componentState) {
	s := row.Status
	why := s.Error
	if why == "" {
		why = "the worker stopped without finishing"
	}
	fmt.Fprintf(w, "%s: FAILED on %s (pid %d) at %s: %s\n", name, s.Host, s.PID, stamp(s.Finished.Time), why)
	for _, r := range s.FailedRecords {
		fmt.Fprintf(w, "  failed record: bucket %q key %q: %s\n", r.Bucket, r.Key, r.Reason)
	}
	fmt.Fprintf(w, "  fix the cause, then run the deploy again (or `deployhook migrate -f CONF` by hand)\n")
}

// localWorkerGone reports whether this host ran a worker for the component
// (its log directory exists) and none is alive now. `run` returns only once
// its worker has written its pid file, so after a local `run` the failure
// recorded in store3 is final: no new attempt is about to start here.
func localWorkerGone(logDir string) bool {
	if _, err := os.Stat(logDir); err != nil {
		return false
	}
	_, alive := runningWorker(logDir)
	return !alive
}
