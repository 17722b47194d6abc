package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/apcera/deployhook/migrate"
	"github.com/apcera/deployhook/validate"
)

// writeDryRun prints what a dry run found: the limits it checked against,
// the token's permission, records and bytes per bucket, and every record a
// real run could not store.
func writeDryRun(w io.Writer, comp *validate.Component, r *migrate.DryRunReport) {
	fmt.Fprintf(w, "Dry run of %s: store2 database %s -> store3 prefix %q\n", comp.Name, comp.Database, r.Prefix)
	if r.DoneExists && r.Done != nil {
		fmt.Fprintf(w, "  done marker:  present (migrated by %s at %s); a real run would do nothing\n", r.Done.Host, stamp(r.Done.Finished.Time))
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
	switch {
	case !r.Online:
		fmt.Fprintf(w, "  freeze:       not needed (--offline): stop the components before migrating\n")
	case r.FreezeOK:
		fmt.Fprintf(w, "  freeze:       the store2 role may freeze the table for the cutover\n")
	default:
		fmt.Fprintf(w, "  freeze:       DENIED: %s\n", r.FreezeReason)
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
	if len(r.Failed) == 0 && r.PermissionOK && (!r.Online || r.FreezeOK) {
		fmt.Fprintf(w, "  result:       a real run would succeed\n")
	} else {
		fmt.Fprintf(w, "  result:       a real run would FAIL; fix the records or settings above first\n")
	}
}

// writeDiff prints the result of verify for one component.
func writeDiff(w io.Writer, name string, d *migrate.Diff) {
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
}
