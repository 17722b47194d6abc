package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/apcera/deployhook/migrate"
	"github.com/apcera/deployhook/validate"
)

// dryRunJSON is the dry run's report with --format json.
type dryRunJSON struct {
	Version    int                    `json:"version"`
	Component  string                 `json:"component"`
	Prefix     string                 `json:"prefix"`
	Result     string                 `json:"result"` // "would succeed", "would fail", "already migrated"
	Error      string                 `json:"error"`
	Done       *migrate.Done          `json:"done"` // the done marker when present
	Limits     limitsJSON             `json:"limits"`
	Permission checkJSON              `json:"permission"`
	Session    checkJSON              `json:"session"`
	Online     bool                   `json:"online"` // false with --offline
	Freeze     checkJSON              `json:"freeze"` // the store2 role may freeze the table (ok when offline)
	Wipe       wipeJSON               `json:"wipe"`
	Buckets    []bucketJSON           `json:"buckets"`
	Records    int64                  `json:"records"`
	Failed     []migrate.FailedRecord `json:"failed_records"`
	Took       string                 `json:"took"`
}

type limitsJSON struct {
	MaxOps     int    `json:"max_ops"`
	MaxBody    int    `json:"max_body"`
	MaxValue   int    `json:"max_value"`
	FromServer bool   `json:"from_server"`
	Reason     string `json:"reason"`
}

type checkJSON struct {
	OK     bool   `json:"ok"`
	Reason string `json:"reason"`
}

type wipeJSON struct {
	Keys  int64    `json:"keys"`
	First []string `json:"first"`
}

type bucketJSON struct {
	Bucket  string `json:"bucket"`
	Records int64  `json:"records"`
	Bytes   int64  `json:"bytes"`
}

// dryRunResult says what a real run would do.
func dryRunResult(r *migrate.DryRunReport, err error) string {
	switch {
	case r.DoneExists:
		return "already migrated"
	case err == nil && len(r.Failed) == 0 && r.PermissionOK && r.SessionOK && (!r.Online || r.FreezeOK):
		return "would succeed"
	}
	return "would fail"
}

// freezeCheck is the dry run's freeze check: not needed offline.
func freezeCheck(r *migrate.DryRunReport) checkJSON {
	if !r.Online {
		return checkJSON{true, "not needed (--offline)"}
	}
	return checkJSON{r.FreezeOK, r.FreezeReason}
}

// writeDryRun prints what a dry run found, as text or JSON.
func writeDryRun(c *cli.Context, comp *validate.Component, r *migrate.DryRunReport, runErr error) error {
	w := c.App.Writer
	if c.String("format") != formatJSON {
		writeDryRunText(w, comp, r, runErr)
		return nil
	}
	j := dryRunJSON{
		Version: jsonVersion, Component: comp.Name, Prefix: r.Prefix,
		Result: dryRunResult(r, runErr), Done: r.Done,
		Limits:     limitsJSON{r.Limits.MaxOps, r.Limits.MaxBody, r.Limits.MaxValue, r.Limits.FromServer, r.Limits.ServerReason},
		Permission: checkJSON{r.PermissionOK, r.PermissionReason},
		Session:    checkJSON{r.SessionOK, r.SessionReason},
		Online:     r.Online,
		Freeze:     freezeCheck(r),
		Wipe:       wipeJSON{r.Wipe.Keys, r.Wipe.First},
		Buckets:    []bucketJSON{}, Records: r.Records, Failed: r.Failed, Took: r.Took.String(),
	}
	if runErr != nil {
		j.Error = runErr.Error()
	}
	if j.Wipe.First == nil {
		j.Wipe.First = []string{}
	}
	if j.Failed == nil {
		j.Failed = []migrate.FailedRecord{}
	}
	for _, b := range r.Buckets {
		j.Buckets = append(j.Buckets, bucketJSON(b))
	}
	return writeJSONLine(w, j)
}

// writeDryRunText prints the limits the dry run checked against, the
// token's permissions, what step 5 would wipe, records and bytes per
// bucket, and every record a real run could not store.
func writeDryRunText(w io.Writer, comp *validate.Component, r *migrate.DryRunReport, runErr error) {
	fmt.Fprintf(w, "Dry run of %s: store2 database %s -> store3 prefix %q\n", comp.Name, comp.Database, r.Prefix)
	if r.DoneExists && r.Done != nil {
		fmt.Fprintf(w, "  done marker:  present (migrated by %s at %s); a real run would do nothing\n", r.Done.Host, stamp(r.Done.Finished.Time))
	} else if r.DoneExists {
		fmt.Fprintf(w, "  done marker:  present; a real run would do nothing\n")
	} else {
		fmt.Fprintf(w, "  done marker:  absent; a real run would migrate\n")
	}
	src := "read from the agent"
	if !r.Limits.FromServer {
		src = "Consul's defaults assumed"
		if r.Limits.ServerReason != "" {
			src += " (" + r.Limits.ServerReason + ")"
		}
	}
	fmt.Fprintf(w, "  limits:       %d ops and %d bytes per transaction, %d bytes per value (%s)\n", r.Limits.MaxOps, r.Limits.MaxBody, r.Limits.MaxValue, src)
	if r.PermissionOK {
		fmt.Fprintf(w, "  permission:   the token may write under the prefix\n")
	} else {
		fmt.Fprintf(w, "  permission:   DENIED: %s\n", r.PermissionReason)
	}
	if r.SessionOK {
		fmt.Fprintf(w, "  session:      %s\n", r.SessionReason)
	} else {
		fmt.Fprintf(w, "  session:      DENIED: %s\n", r.SessionReason)
	}
	switch {
	case !r.Online:
		fmt.Fprintf(w, "  freeze:       not needed (--offline): stop the components before migrating\n")
	case r.FreezeOK:
		fmt.Fprintf(w, "  freeze:       the store2 role may freeze the table for the cutover\n")
	default:
		fmt.Fprintf(w, "  freeze:       DENIED: %s\n", r.FreezeReason)
	}
	if r.Wipe.Keys == 0 {
		fmt.Fprintf(w, "  wipe:         nothing under the prefix to wipe\n")
	} else {
		fmt.Fprintf(w, "  wipe:         %d keys under %q left by an earlier attempt would be deleted, first:\n", r.Wipe.Keys, r.Prefix)
		for _, k := range r.Wipe.First {
			fmt.Fprintf(w, "                  %s\n", k)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  \tbucket\trecords\tbytes\t")
	for _, b := range r.Buckets {
		fmt.Fprintf(tw, "  \t%s\t%d\t%d\t\n", b.Bucket, b.Records, b.Bytes)
	}
	tw.Flush()
	fmt.Fprintf(w, "  records:      %d checked, %d would fail\n", r.Records, len(r.Failed))
	for _, f := range r.Failed {
		fmt.Fprintf(w, "  failing record: bucket %q key %q: %s\n", f.Bucket, f.Key, f.Reason)
	}
	switch dryRunResult(r, runErr) {
	case "would succeed":
		fmt.Fprintf(w, "  result:       a real run would succeed\n")
	case "already migrated":
		fmt.Fprintf(w, "  result:       already migrated\n")
	default:
		fmt.Fprintf(w, "  result:       a real run would FAIL; fix the records or settings above first\n")
	}
}

// verifyJSON is verify's result for one component with --format json.
type verifyJSON struct {
	Version     int        `json:"version"`
	Component   string     `json:"component"`
	Prefix      string     `json:"prefix"`
	Equal       bool       `json:"equal"`
	Store2      tallyJSON  `json:"store2"`
	Store3      tallyJSON  `json:"store3"`
	Differences []diffJSON `json:"differences"`
	Omitted     int        `json:"omitted"` // differences beyond --max of their kind
	MaxPerKind  int        `json:"max_per_kind"`
}

type tallyJSON struct {
	Records int64  `json:"records"`
	Digest  string `json:"digest"`
}

type diffJSON struct {
	Kind     string `json:"kind"` // missing, extra, different
	Bucket   string `json:"bucket"`
	Key      string `json:"key"`
	StoreKey string `json:"store_key"`
	Detail   string `json:"detail"`
}

// writeDiff prints the result of verify for one component.
func writeDiff(w io.Writer, format, name string, d *migrate.Diff, max int) error {
	if format == formatJSON {
		j := verifyJSON{
			Version: jsonVersion, Component: name, Prefix: d.Prefix, Equal: d.Equal(),
			Store2:      tallyJSON{d.Source.Count, d.Source.Digest.String()},
			Store3:      tallyJSON{d.Store.Count, d.Store.Digest.String()},
			Differences: []diffJSON{}, Omitted: d.Omitted, MaxPerKind: max,
		}
		for _, e := range d.Entries {
			j.Differences = append(j.Differences, diffJSON(e))
		}
		return writeJSONLine(w, j)
	}
	fmt.Fprintf(w, "%s: store2 %d records (%s), store3 %d records (%s)\n", name,
		d.Source.Count, d.Source.Digest, d.Store.Count, d.Store.Digest)
	for _, e := range d.Entries {
		switch {
		case e.Bucket == "" && e.Key == "":
			fmt.Fprintf(w, "  %s: key %q: %s\n", e.Kind, e.StoreKey, e.Detail)
		default:
			fmt.Fprintf(w, "  %s: bucket %q key %q: %s\n", e.Kind, e.Bucket, e.Key, e.Detail)
		}
	}
	if d.Omitted > 0 {
		fmt.Fprintf(w, "  ... and %d more differences (raise --max to list them)\n", d.Omitted)
	}
	if d.Equal() {
		fmt.Fprintf(w, "%s: identical\n", name)
	} else {
		fmt.Fprintf(w, "%s: DIFFERENT\n", name)
	}
	return nil
}
