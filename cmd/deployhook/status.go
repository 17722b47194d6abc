package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/apcera/deployhook/migrate"
	"github.com/apcera/deployhook/validate"
)

func init() { registered = append(registered, statusCommand) }

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show, per component, whether it was migrated, by which host, when, and who holds the lock",
		ArgsUsage: " ",
		Description: `Reads the migration keys of each component from store3.
Exit codes: 0 read, 1 store3 unreachable, 2 usage, 3 invalid conf.`,
		Flags: []cli.Flag{
			confFlag,
			&cli.StringFlag{Name: "format", Value: "text", Usage: "`text` or json"},
		},
		Action: runStatus,
	}
}

// componentState is one row of `status`, and one element of its JSON.
type componentState struct {
	Component string          `json:"component"`
	Prefix    string          `json:"prefix"`
	State     string          `json:"state"` // migrate.State.Current: not migrated, running, failed, done
	Phase     string          `json:"phase"` // copying, catching-up, cutover, done, failed; "" when not migrated
	Lock      lockState       `json:"lock"`
	Status    *migrate.Status `json:"status,omitempty"`
	Done      *migrate.Done   `json:"done,omitempty"`
}

type lockState struct {
	Held    bool   `json:"held"`
	Session string `json:"session,omitempty"`
}

func runStatus(c *cli.Context) error {
	format := c.String("format")
	if format != "text" && format != "json" {
		return exitf(exitUsage, "--format must be text or json, got %q", format)
	}
	comps, err := loadComponents(c)
	if err != nil {
		return err
	}
	var rows []componentState
	for _, comp := range comps {
		row, err := readComponentState(c, comp)
		if err != nil {
			return withCode(exitFailure, fmt.Errorf("%s: read store3 state: %w", comp.Name, err))
		}
		rows = append(rows, row)
	}
	if format == "json" {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	writeStatusTable(c.App.Writer, rows)
	return nil
}

func readComponentState(c *cli.Context, comp *validate.Component) (componentState, error) {
	kv, err := newKV(comp)
	if err != nil {
		return componentState{}, err
	}
	st, err := migrate.ReadState(c.Context, kv, comp.Consul.Prefix)
	if err != nil {
		return componentState{}, err
	}
	row := componentState{
		Component: comp.Name,
		Prefix:    comp.Consul.Prefix,
		State:     st.Current(),
		Lock:      lockState{Held: st.LockSession != "", Session: st.LockSession},
		Status:    st.Status,
		Done:      st.Done,
	}
	if st.Status != nil {
		row.Phase = st.Status.Phase
	}
	if st.Done != nil {
		row.Phase = migrate.PhaseDone
	}
	return row, nil
}

func writeStatusTable(w io.Writer, rows []componentState) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "COMPONENT\tSTATE\tHOST\tWHEN\tRECORDS\tDETAIL")
	for _, r := range rows {
		host, when, records, detail := "-", "-", "-", ""
		switch {
		case r.Done != nil:
			d := r.Done
			host, when = fmt.Sprintf("%s (pid %d)", d.Host, d.PID), stamp(d.Finished.Time)
			records = fmt.Sprintf("%d", d.RecordsMigrated)
			detail = "took " + d.Took
			if d.FrozenFor != "" {
				detail += ", store2 frozen for " + d.FrozenFor + " (it stays frozen)"
			}
		case r.Status != nil:
			s := r.Status
			host, when = fmt.Sprintf("%s (pid %d)", s.Host, s.PID), stamp(s.Updated.Time)
			records = fmt.Sprintf("%d/%d", s.RecordsDone, s.RecordsTotal)
			if s.Error != "" {
				detail = s.Error
			}
			if r.State == migrate.StateFailed && s.Error == "" {
				detail = "the worker stopped without finishing (status " + s.State + ", lock free); run again"
			}

		}
		if r.Lock.Held && r.Done == nil {
			detail = lockHolder(r) + "; " + detail
		}
		state := r.State
		if r.State == "running" && r.Status != nil && r.Status.Phase != "" {
			state += " (" + phaseText(r.Status) + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Component, state, host, when, records, detail)
	}
	tw.Flush()
	for _, r := range rows {
		if r.Done != nil || r.Status == nil {
			continue
		}
		for _, f := range r.Status.FailedRecords {
			fmt.Fprintf(w, "%s: failed record: bucket %q key %q: %s\n", r.Component, f.Bucket, f.Key, f.Reason)
		}
	}
}

// phaseText says where a running migration is: "copying", "catching-up,
// round 2: 37 changed", "cutover, store2 frozen".
func phaseText(s *migrate.Status) string {
	switch {
	case s.Phase == migrate.PhaseCatchingUp && s.Round > 0:
		return fmt.Sprintf("%s, round %d: %d changed", s.Phase, s.Round, s.Delta)
	case s.Phase == migrate.PhaseCutover:
		return s.Phase + ", store2 frozen"
	}
	return s.Phase
}

// stamp formats a time for the table: UTC, to the second.
func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// lockHolder says who holds the lock: the host and pid .status names when
// its session is the lock's, else just the session.
func lockHolder(r componentState) string {
	if s := r.Status; s != nil && s.Session == r.Lock.Session {
		return fmt.Sprintf("lock held by %s pid %d", s.Host, s.PID)
	}
	return "lock held by session " + r.Lock.Session
}
