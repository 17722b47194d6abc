package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/urfave/cli/v2"

	"github.com/apcera/deployhook/migrate"
	"github.com/apcera/deployhook/migrate/consulkv"
	"github.com/apcera/deployhook/migrate/pgsource"
	"github.com/apcera/deployhook/validate"
	"github.com/apcera/deployhook/validate/dconf"
)

// Flags shared by the commands that read component confs. The single-dash
// spellings are the seed platform's; Go's flag parsing accepts both.
var (
	confFlag = &cli.StringSliceFlag{
		Name:  "f",
		Usage: "component conf `FILE` (required; repeat for several components)",
	}
	kindFlag = &cli.StringFlag{
		Name:  "db.kind",
		Usage: "override db.kind of the conf: store2 or store3",
	}
	migrateFlag = &cli.BoolFlag{
		Name:  "db.migrate_store2_to_store3",
		Usage: "override db.migrate_store2_to_store3 of the conf",
	}
	hostnameFlag = &cli.StringFlag{
		Name:  "hostname",
		Usage: "host name recorded in .status and .done (default: this machine's)",
	}
)

// loadComponents reads every -f conf, applies the command-line overrides and
// prints the diagnostics. Any error diagnostic is exit 3; an unreadable file
// is exit 2.
func loadComponents(c *cli.Context) ([]*validate.Component, error) {
	var comps []*validate.Component
	var diags hcl.Diagnostics
	printer := validate.NewPrinter(useColor(c, c.App.ErrWriter))
	var kind *string
	var mig *bool
	if c.IsSet(kindFlag.Name) {
		k := c.String(kindFlag.Name)
		kind = &k
	}
	if c.IsSet(migrateFlag.Name) {
		m := c.Bool(migrateFlag.Name)
		mig = &m
	}
	for _, path := range c.StringSlice("f") {
		src, err := os.ReadFile(path)
		if err != nil {
			return nil, exitf(exitUsage, "read component conf: %v", err)
		}
		comp, ds := validate.LoadComponent(src, path)
		printer.Add(path, src, nil)
		if kind != nil {
			// -db.kind supplies what the file may leave out.
			ds = dropCode(ds, "kind-missing")
		}
		diags = append(diags, ds...)
		if ds.HasErrors() {
			continue
		}
		diags = append(diags, comp.Override(kind, mig)...)
		comps = append(comps, comp)
	}
	if len(diags) > 0 {
		validate.Sort(diags)
		printer.WriteText(c.App.ErrWriter, diags)
	}
	if diags.HasErrors() {
		return nil, silent(exitInvalid)
	}
	return comps, nil
}

func dropCode(ds hcl.Diagnostics, code string) hcl.Diagnostics {
	var out hcl.Diagnostics
	for _, d := range ds {
		if dconf.CodeOf(d) != code {
			out = append(out, d)
		}
	}
	return out
}

// hostname is --hostname, or the machine's host name.
func hostname(c *cli.Context) string {
	if h := c.String(hostnameFlag.Name); h != "" {
		return h
	}
	h, err := os.Hostname()
	if err != nil {
		return "unknown"
	}
	return h
}

// stores connects to the component's store2 and store3. Neither call does
// I/O that can fail on an unreachable server: failures surface, retried, in
// the operations that follow.
func stores(ctx context.Context, comp *validate.Component) (*pgsource.Source, *consulkv.Store, error) {
	kv, err := newKV(comp)
	if err != nil {
		return nil, nil, err
	}
	src, err := pgsource.New(ctx, pgsource.Config{
		URL:      comp.Postgres.URL,
		Database: comp.Database,
		Table:    comp.Postgres.Table,
	})
	if err != nil {
		return nil, nil, withCode(exitInvalid, fmt.Errorf("%s: store2: %w", comp.File, err))
	}
	return src, kv, nil
}

func newKV(comp *validate.Component) (*consulkv.Store, error) {
	kv, err := consulkv.New(consulConfig(comp))
	if err != nil {
		return nil, withCode(exitInvalid, fmt.Errorf("%s: store3: %w", comp.File, err))
	}
	return kv, nil
}

func consulConfig(comp *validate.Component) consulkv.Config {
	return consulkv.Config{Address: comp.Consul.Address, TokenFile: comp.Consul.TokenFile}
}

// requireConf is the Before of the commands that read component confs:
// -f is required, and they take no positional argument.
func requireConf(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	return requireFlags(confFlag.Name)(c)
}

// storeCheckTimeout bounds the foreground configuration check.
const storeCheckTimeout = 2 * time.Second

// checkStores finds the configuration errors that no retry fixes before
// any work starts (exit 3, naming the file or setting): store2's connection
// settings, and store3's address, token and TLS files and certificates. A
// store that merely does not answer is no error here: the migration
// retries it.
func checkStores(ctx context.Context, comp *validate.Component) error {
	src, err := pgsource.New(ctx, pgsource.Config{URL: comp.Postgres.URL, Database: comp.Database, Table: comp.Postgres.Table})
	if err != nil {
		return withCode(exitInvalid, fmt.Errorf("%s: store2: %w", comp.File, err))
	}
	src.Close()
	return checkStore3(ctx, comp)
}

// checkStore3 is checkStores for store3 alone.
func checkStore3(ctx context.Context, comp *validate.Component) error {
	err := consulkv.Check(ctx, consulConfig(comp), storeCheckTimeout)
	if errors.Is(err, consulkv.ErrConfig) {
		return withCode(exitInvalid, fmt.Errorf("%s: %w", comp.File, err))
	}
	return nil
}

// errCode is the exit code of err: its own when it carries one, else the
// migration's mapping.
func errCode(ctx context.Context, err error) int {
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	return migrationCode(ctx, err)
}

// migrationCode maps an error of the migrate package to the exit codes of
// DESIGN.md.
func migrationCode(ctx context.Context, err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, migrate.ErrInterrupted), ctx.Err() != nil:
		return exitInterrupted
	case errors.Is(err, migrate.ErrNeverUsed), errors.Is(err, migrate.ErrDangerousPrefix), errors.Is(err, consulkv.ErrConfig), migrate.CertificateError(err),
		errors.Is(err, migrate.ErrMigrated), errors.Is(err, migrate.ErrFreezeInUse):
		return exitInvalid
	case errors.Is(err, migrate.ErrLockBusy):
		return exitLock
	case errors.Is(err, migrate.ErrRecordFailures), errors.Is(err, migrate.ErrMismatch), errors.Is(err, migrate.ErrDryRunFailed),
		errors.Is(err, migrate.ErrFailedElsewhere), errors.Is(err, migrate.ErrLockLost),
		errors.Is(err, migrate.ErrCannotFreeze), errors.Is(err, migrate.ErrStore2Changed):
		return exitFailed
	}
	return exitFailure
}

// componentNames lists the components for messages: "job_manager, auth_server".
func componentNames(comps []*validate.Component) string {
	var names []string
	for _, c := range comps {
		names = append(names, c.Name)
	}
	return strings.Join(names, ", ")
}
