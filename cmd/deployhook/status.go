package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/apcera/deployhook/migrate"
	"github.com/apcera/deployhook/validate"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show, per component, whether it was migrated, by which host, when, and who holds the lock",
		ArgsUsage: " ",
		Description: `Reads the migration keys of each component from store3. With --format json,
one object per component per line (see the README's reference).
Exit codes: 0 read, 1 store3 unreachable, 2 usage, 3 invalid conf.`,
		Before: requireConf,
		Flags: []cli.Flag{
			confFlag, formatFlag("the status"), noColorFlag,
		},
		Action: runStatus,
	}
}

// componentState is one row of `status`, and its JSON object: the
// component's state and every field of .status and .done as store3 holds
// them, so fields added there show here too.
type componentState struct {
	Version   int             `json:"version"`
	Component string          `json:"component"`
	Prefix    string          `json:"prefix"`
	State     string          `json:"state"` // migrate.State.Current: not migrated, running, failed, done
	Phase     string          `json:"phase"` // copying, catching-up, cutover, done, failed; "" when not migrated
	Lock      lockState       `json:"lock"`
	Status    *migrate.Status `json:"status"` // null when no migration ever started
	Done      *migrate.Done   `json:"done"`   // null when not migrated
}

type lockState struct {
	Held    bool   `json:"held"`
	Session string `json:"session"`
}

func runStatus(c *cli.Context) error {
	format, err := outputFormat(c)
	if err != nil {
		return err
	}
	comps, err := loadComponents(c)
	if err != nil {
		return err
	}
	var rows []componentState
	for _, comp := range comps {
		if err := checkStore3(c.Context, comp); err != nil {
			return err
		}
		row, err := readComponentState(c.Context, comp)
		if err != nil {
			return withCode(errCode(c.Context, err), fmt.Errorf("%s: read store3 state: %w", comp.Name, err))
		}
		rows = append(rows, row)
	}
	if format == formatJSON {
		for _, r := range rows {
			if err := writeJSONLine(c.App.Writer, r); err != nil {
				return err
			}
		}
		return nil
	}
	writeStatusTable(c.App.Writer, rows)
	return nil
}

func readComponentState(ctx context.Context, comp *validate.Component) (componentState, error) {
	kv, err := newKV(comp)
	if err != nil {
		return componentState{}, err
	}
	st, err := migrate.ReadState(ctx, kv, comp.Consul.Prefix)
	if err != nil {
		return componentState{}, err
	}
	row := componentState{
		Version:   jsonVersion,
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
			detail = strings.TrimSuffix(lockHolder(r)+"; "+detail, "; ")
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
