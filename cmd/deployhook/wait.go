package main

import (
	"fmt"
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/apcera/deployhook/migrate"
	"github.com/apcera/deployhook/validate"
)

func waitCommand() *cli.Command {
	return &cli.Command{
		Name:      "wait",
		Usage:     "block until every named component is migrated (0), one failed (5), or the timeout (4)",
		ArgsUsage: " ",
		Description: `Polls each component's migration keys in store3, so it works from any host.
A failure recorded before wait started is final at once when this host's
worker for the component has ended; otherwise (wait on another host) it
counts when no new attempt shows up within --stale-grace. A worker on this
host that ended without a result (killed, crashed, or refused its
configuration) fails the wait at once (--hostname as given to run), with its reason and the last lines
of its log. With --format json, one object per component per line, printed
as each component settles.
Exit codes: 0 all done, 2 usage, 3 invalid conf (or a store3 configuration no
retry fixes), 4 timed out, 5 a migration failed, 6 interrupted.`,
		Before: requireConf,
		Flags: []cli.Flag{
			confFlag, hostnameFlag,
			&cli.DurationFlag{Name: "timeout", Value: 10 * time.Minute, Usage: "give up (exit 4) after `D`"},
			formatFlag("the results"), noColorFlag,
			&cli.DurationFlag{Name: "poll", Value: time.Second, Hidden: true},
			&cli.DurationFlag{Name: "stale-grace", Value: 15 * time.Second, Hidden: true},
		},
		Action: runWait,
	}
}

// The results of wait.
const (
	waitDone        = "done"
	waitFailed      = "failed"
	waitTimedOut    = "timed out"
	waitInterrupted = "interrupted"
)

// logTailLines is how many lines of a dead worker's log wait shows.
const logTailLines = 10

// waitResult is how one component settled: wait's JSON object.
type waitResult struct {
	componentState
	Result  string       `json:"result"` // done, failed, timed out, interrupted
	Reason  string       `json:"reason"`
	Worker  *localWorker `json:"worker"`   // this host's worker; null when none ran here
	LogTail []string     `json:"log_tail"` // the end of a dead worker's log
}

func runWait(c *cli.Context) error {
	format, err := outputFormat(c)
	if err != nil {
		return err
	}
	comps, err := loadComponents(c)
	if err != nil {
		return err
	}
	// A configuration no retry fixes would have wait poll until its
	// timeout: refuse it now.
	for _, comp := range comps {
		if err := checkStore3(c.Context, comp); err != nil {
			return err
		}
	}
	w := &waiter{c: c, json: format == formatJSON, start: time.Now(), last: map[string]string{}}
	deadline := w.start.Add(c.Duration("timeout"))
	pending := map[string]bool{}
	for _, comp := range comps {
		pending[comp.Name] = true
	}
	tick := time.NewTicker(c.Duration("poll"))
	defer tick.Stop()
	for {
		for _, comp := range comps {
			if !pending[comp.Name] {
				continue
			}
			res := w.check(comp)
			switch {
			case res == nil:
				continue
			case res.Result == waitDone:
				delete(pending, comp.Name)
				if err := w.emit(res); err != nil {
					return err
				}
			default:
				if err := w.emit(res); err != nil {
					return err
				}
				return silent(exitFailed)
			}
		}
		if len(pending) == 0 {
			return nil
		}
		stopped := ""
		select {
		case <-c.Context.Done():
			stopped = waitInterrupted
		case <-tick.C:
			if time.Now().After(deadline) {
				stopped = waitTimedOut
			}
		}
		if stopped != "" {
			return w.stop(comps, pending, stopped)
		}
	}
}

// waiter is one wait's state.
type waiter struct {
	c     *cli.Context
	json  bool
	start time.Time
	last  map[string]string // the last progress line per component
}

// check reads one component's state; nil while it is still on its way.
func (w *waiter) check(comp *validate.Component) *waitResult {
	worker := readWorker(comp.LogDir)
	row, err := readComponentState(w.c.Context, comp)
	res := &waitResult{componentState: row}
	if worker.Ran {
		res.Worker = &worker
	}
	if err != nil {
		if worker.Died {
			return w.died(comp, res, worker)
		}
		w.progress(comp.Name, fmt.Sprintf("%s: store3 not readable yet: %v", comp.Name, err))
		return nil
	}
	switch row.State {
	case migrate.StateDone:
		res.Result = waitDone
		return res
	case migrate.StateFailed:
		s := row.Status
		fresh := s.Finished.After(w.start) || s.Updated.After(w.start)
		// An old failure is final once this host's worker has ended:
		// `run` returns only once its worker has written its pid file,
		// so no new attempt is about to start here.
		if fresh || time.Since(w.start) > w.c.Duration("stale-grace") || (worker.Ran && !worker.Alive) {
			res.Result, res.Reason = waitFailed, s.Error
			if res.Reason == "" {
				res.Reason = "the worker stopped without finishing"
			}
			if worker.Died {
				res.LogTail = logTail(comp.LogDir, logTailLines)
			}
			return res
		}
		w.progress(comp.Name, fmt.Sprintf("%s: earlier attempt failed; waiting for the new one to start", comp.Name))
	case migrate.StateRunning:
		s := row.Status
		if worker.Died && s.PID == worker.PID && s.Host == hostname(w.c) {
			// Store3 still shows it running until its session's TTL runs
			// out, but this host's worker that holds it is gone.
			return w.died(comp, res, worker)
		}
		msg := fmt.Sprintf("%s: running on %s (pid %d)", comp.Name, s.Host, s.PID)
		if s.Phase != "" {
			msg += ": " + phaseText(s)
		}
		w.progress(comp.Name, msg)
	default:
		if worker.Died {
			return w.died(comp, res, worker)
		}
		msg := fmt.Sprintf("%s: not migrated yet", comp.Name)
		if row.Lock.Held {
			msg = fmt.Sprintf("%s: lock held, migration starting", comp.Name)
		}
		w.progress(comp.Name, msg)
	}
	return nil
}

// died is the result for a worker on this host that ended without a
// result in store3.
func (w *waiter) died(comp *validate.Component, res *waitResult, worker localWorker) *waitResult {
	res.Component, res.Prefix, res.Version = comp.Name, comp.Consul.Prefix, jsonVersion
	if res.State == "" {
		res.State = migrate.StateNotMigrated
	}
	res.Result, res.Reason = waitFailed, worker.Why
	res.LogTail = logTail(comp.LogDir, logTailLines)
	return res
}

// progress prints msg (text only) unless it is what was last printed for
// the component.
func (w *waiter) progress(name, msg string) {
	if w.json || w.last[name] == msg {
		return
	}
	w.last[name] = msg
	fmt.Fprintln(w.c.App.Writer, msg)
}

// emit prints a settled component.
func (w *waiter) emit(r *waitResult) error {
	out := w.c.App.Writer
	if w.json {
		if r.LogTail == nil {
			r.LogTail = []string{}
		}
		return writeJSONLine(out, r)
	}
	switch r.Result {
	case waitDone:
		d := r.Done
		fmt.Fprintf(out, "%s: done: migrated by %s at %s, %d records, took %s\n", r.Component, d.Host, stamp(d.Finished.Time), d.RecordsMigrated, d.Took)
	case waitFailed:
		writeFailure(out, r)
	}
	return nil
}

// stop ends a wait cut short by its timeout or a signal.
func (w *waiter) stop(comps []*validate.Component, pending map[string]bool, why string) error {
	var names []*validate.Component
	for _, comp := range comps {
		if pending[comp.Name] {
			names = append(names, comp)
		}
	}
	if w.json {
		for _, comp := range names {
			res := &waitResult{componentState: componentState{Version: jsonVersion, Component: comp.Name, Prefix: comp.Consul.Prefix, State: migrate.StateNotMigrated}, Result: why, LogTail: []string{}}
			if row, err := readComponentState(w.c.Context, comp); err == nil {
				res.componentState = row
			}
			if err := writeJSONLine(w.c.App.Writer, res); err != nil {
				return err
			}
		}
	}
	if why == waitInterrupted {
		return exitf(exitInterrupted, "interrupted while waiting for %s", componentNames(names))
	}
	return exitf(exitLock, "timed out after %v waiting for %s; `deployhook status` shows where they are", w.c.Duration("timeout"), componentNames(names))
}

func writeFailure(w io.Writer, r *waitResult) {
	where := "on this host"
	if s := r.Status; s != nil && r.State == migrate.StateFailed {
		where = fmt.Sprintf("on %s (pid %d) at %s", s.Host, s.PID, stamp(s.Finished.Time))
	}
	fmt.Fprintf(w, "%s: FAILED %s: %s\n", r.Component, where, r.Reason)
	if s := r.Status; s != nil && r.State == migrate.StateFailed {
		for _, f := range s.FailedRecords {
			fmt.Fprintf(w, "  failed record: bucket %q key %q: %s\n", f.Bucket, f.Key, f.Reason)
		}
	}
	if len(r.LogTail) > 0 {
		fmt.Fprintf(w, "  the last lines of its log:\n")
		for _, l := range r.LogTail {
			fmt.Fprintf(w, "    %s\n", l)
		}
	}
	fmt.Fprintf(w, "  fix the cause, then run the deploy again (or `deployhook migrate -f CONF` by hand)\n")
}
